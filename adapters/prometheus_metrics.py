"""The service's Prometheus metrics (prometheus-client).

Under gunicorn every worker is its own process. When the environment names
``PROMETHEUS_MULTIPROC_DIR`` (``wxpay serve`` sets it), each worker writes
its samples there and :func:`exposition` merges them, so a scrape sees the
sum over all workers, not whichever worker answered.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter(
    "wxpay_http_requests_total",
    "HTTP requests answered, by route and outcome.",
    ["endpoint", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "wxpay_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
NOTIFY_VERDICTS = Counter(
    "wxpay_notify_verdicts_total",
    "Payment notifies by verdict (accepted, duplicate, bad_sign, ...).",
    ["verdict"],
)
CALLBACK_OUTCOMES = Counter(
    "wxpay_callback_outcomes_total",
    "Mode-1 scan callbacks by the reply given.",
    ["outcome"],
)
WECHAT_CALLS = Counter(
    "wxpay_wechat_calls_total",
    "Calls to WeChat's API, by API and result (SUCCESS or err_code).",
    ["api", "result"],
)
WECHAT_LATENCY = Histogram(
    "wxpay_wechat_call_duration_seconds",
    "Time spent on one WeChat API call, retries included.",
    ["api"],
    buckets=LATENCY_BUCKETS,
)


def exposition() -> tuple[bytes, str]:
    """Render every metric for a scrape; returns (body, content type)."""
    if os.environ.get(MULTIPROC_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """Let a dead worker's live gauges go (gunicorn's ``child_exit``)."""
    if os.environ.get(MULTIPROC_VARIABLE):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
