"""What operators and their tools ask: liveness, readiness and metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable

import falcon

from adapters.prometheus_metrics import exposition

log = logging.getLogger(__name__)


class HealthResource:
    """``GET /healthz``: the process answers; nothing else is checked.

    NOTE(ops): a liveness probe that also checked the database would get
    every worker restarted while the database is down, which helps no one.
    """

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.cache_control = ["no-store"]
        resp.media = {"status": "ok"}


class ReadinessResource:
    """``GET /readyz``: whether this process should be sent traffic.

    200 ``{"status": "ready"}`` when the database answers and its schema
    is the one the code expects; otherwise 503 with ``problems``, one
    line per failed check. Never a 500: a probe that crashes says "not
    ready" too.

    SECURITY(ops): the problems name the check and the fix, never the
    database's address or the driver's message; those go to the log.

    Args:
        probe: returns the problems, an empty list when ready
            (``Service.readiness``).
    """

    def __init__(self, probe: Callable[[], list[str]]) -> None:
        self._probe = probe

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            problems = self._probe()
        except Exception:
            log.exception("readiness probe failed")
            problems = ["probe: the readiness check itself failed; see the log"]

        resp.cache_control = ["no-store"]
        if problems:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "not ready", "problems": problems}
        else:
            resp.media = {"status": "ready"}


class MetricsResource:
    """``GET /metrics``: Prometheus' text format, summed over workers.

    SECURITY(ops): served to anyone who reaches the port; deploy/nginx
    lets only the local scraper through.
    """

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        body, content_type = exposition()
        resp.content_type = content_type
        resp.cache_control = ["no-store"]
        resp.data = body
