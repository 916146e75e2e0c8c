"""``/metrics``: requests, notify verdicts, callback outcomes, WeChat calls
and latencies; summed over gunicorn's workers."""

import os
import runpy
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from falcon import testing
from prometheus_client import REGISTRY
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from domain.ports import OrderNotFound
from domain.ports import WeChatUnavailable
from entrypoints.app import create_app
from entrypoints.app import production_stack
from tests.integration.test_wechat_http import FakeWeChat
from tests.integration.test_wechat_http import business_fail
from tests.integration.test_wechat_http import gateway_for
from tests.integration.test_wechat_http import order_request
from tests.integration.test_wechat_http import prepay_ok
from tests.support import cases
from tests.support.checkout_app import seeded_store
from tests.support.checkout_app import service_over
from tests.support.checkout_app import signed_xml
from tests.support.fakes import FakeGateway
from tests.support.fakes import FixedClock
from tests.support.processes import REPO
from tests.support.service import checkout_service
from tests.support.service import merchant_env
from tests.support.service import prepare_database

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")),
    reason="in-process samples are read from the default registry",
)


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Read samples before and after, as the registry is process-wide."""

    def __init__(self, *keys):
        self.keys = keys
        self.before = [sample(name, **labels) for name, labels in keys]

    def after(self):
        return [
            sample(name, **labels) - before
            for (name, labels), before in zip(self.keys, self.before, strict=True)
        ]


@pytest.fixture
def client():
    clock = FixedClock()
    service = service_over(seeded_store(clock), FakeGateway(), clock)
    app = production_stack(create_app(service), {"WXPAY_TRUSTED_PROXIES": ""})
    return testing.TestClient(app)


def post_xml(client, path, body):
    return client.simulate_post(path, body=body, headers={"Content-Type": "text/xml"})


def test_requests_are_counted_and_timed_by_route_and_status(client):
    delta = Delta(
        (
            "wxpay_http_requests_total",
            {"endpoint": "/healthz", "method": "GET", "status": "200"},
        ),
        (
            "wxpay_http_requests_total",
            {"endpoint": "unmatched", "method": "GET", "status": "404"},
        ),
        ("wxpay_http_request_duration_seconds_count", {"endpoint": "/healthz"}),
    )

    client.simulate_get("/healthz")
    client.simulate_get("/healthz")
    client.simulate_get("/no/such/page/1")

    assert delta.after() == [2, 1, 2]


def test_notify_verdicts_are_counted(client):
    verdicts = ("accepted", "duplicate", "bad_sign", "mismatch", "xml_rejected")
    delta = Delta(*[("wxpay_notify_verdicts_total", {"verdict": v}) for v in verdicts])

    post_xml(client, "/wechatpay/notify", signed_xml(cases.paid_notify()))
    post_xml(client, "/wechatpay/notify", signed_xml(cases.paid_notify()))
    post_xml(
        client,
        "/wechatpay/notify",
        signed_xml(cases.paid_notify(), cases.WRONG_KEY),
    )
    post_xml(
        client,
        "/wechatpay/notify",
        signed_xml(cases.paid_notify(total_fee="1", cash_fee="1")),
    )
    post_xml(client, "/wechatpay/notify", b"not xml")

    assert delta.after() == [1, 1, 1, 1, 1]


def test_callback_outcomes_are_counted(client):
    outcomes = ("prepay", "unknown_product", "bad_sign")
    delta = Delta(
        *[("wxpay_callback_outcomes_total", {"outcome": o}) for o in outcomes]
    )

    post_xml(client, "/wechatpay/callback", signed_xml(cases.scan_callback()))
    post_xml(client, "/wechatpay/callback", signed_xml(cases.scan_callback("P404")))
    post_xml(
        client,
        "/wechatpay/callback",
        signed_xml(cases.scan_callback(), cases.WRONG_KEY),
    )

    assert delta.after() == [1, 1, 1]


def test_the_scrape_shows_every_family(client):
    client.simulate_get("/healthz")

    result = client.simulate_get("/metrics")

    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("text/plain")
    for family in (
        "wxpay_http_requests_total",
        "wxpay_http_request_duration_seconds_bucket",
        "wxpay_notify_verdicts_total",
        "wxpay_callback_outcomes_total",
        "wxpay_wechat_calls_total",
        "wxpay_wechat_call_duration_seconds",
    ):
        assert f"# TYPE {family.removesuffix('_bucket')}" in result.text


# --- the gateway ----------------------------------------------------------


def test_each_wechat_call_is_counted_once_by_api_and_result():
    calls = "wxpay_wechat_calls_total"
    delta = Delta(
        (calls, {"api": "unifiedorder", "result": "SUCCESS"}),
        (calls, {"api": "orderquery", "result": "ORDERNOTEXIST"}),
        (calls, {"api": "closeorder", "result": "SYSTEMERROR"}),
        ("wxpay_wechat_call_duration_seconds_count", {"api": "unifiedorder"}),
    )

    with FakeWeChat() as wechat:
        gateway = gateway_for(wechat.url)
        wechat.replies = [prepay_ok(), business_fail("ORDERNOTEXIST")]
        gateway.unified_order(order_request())
        with pytest.raises(OrderNotFound):
            gateway.query_order(cases.OTN)
        # Three attempts, one call.
        wechat.replies = [business_fail("SYSTEMERROR")] * 3
        with pytest.raises(WeChatUnavailable):
            gateway.close_order(cases.OTN)

    assert delta.after() == [1, 1, 1, 1]


# --- several gunicorn workers ---------------------------------------------


def scraped(url, name, **labels):
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(
                found.labels.get(k) == v for k, v in labels.items()
            ):
                total += found.value
    return total


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


@pytest.mark.e2e
def test_a_scrape_sums_the_counters_of_every_worker(tmp_path):
    metrics_dir = tmp_path / "metrics"
    env = merchant_env(
        api_base="http://127.0.0.1:9",
        public_url="http://127.0.0.1:8000",
        database_url=f"sqlite:///{tmp_path}/wxpay.sqlite3",
    )
    prepare_database(env)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    labels = {"endpoint": "/healthz", "method": "GET", "status": "200"}

    with checkout_service(env, tmp_path, workers=3) as (url, _):
        before = scraped(url, "wxpay_http_requests_total", **labels)
        # Workers load the app after the fork, so the first ones up take
        # every request for a while; send until two or more have answered
        # (each writes its own samples file), counting what was sent.
        sent, writers = 0, set()
        deadline = time.monotonic() + 30
        while len(writers) < 2 and time.monotonic() < deadline:
            with ThreadPoolExecutor(max_workers=9) as pool:
                statuses = list(pool.map(get, [url + "/healthz"] * 30))
            assert statuses == [200] * 30
            sent += 30
            writers = {path.name for path in metrics_dir.glob("counter_*.db")}
        after = scraped(url, "wxpay_http_requests_total", **labels)

    assert len(writers) >= 2, writers
    assert after - before == sent


def test_gunicorn_lets_a_dead_workers_samples_go(monkeypatch, tmp_path):
    dead = []
    monkeypatch.setattr(multiprocess, "mark_process_dead", dead.append)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    config = runpy.run_path(str(REPO / "gunicorn.conf.py"))

    config["child_exit"](None, SimpleNamespace(pid=4242))

    assert dead == [4242]
