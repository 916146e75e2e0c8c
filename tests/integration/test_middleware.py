"""``WeChatPayMiddleware`` in front of a plain WSGI app and a Flask app.

In-process tests use in-memory storage and a fake gateway; the last one
runs a real server (wsgiref) with the simulator paying into the Flask
app through the middleware.
"""

import json
import logging
import threading
import time
import urllib.request
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import WSGIServer
from wsgiref.simple_server import make_server

import flask
import pytest
from werkzeug.test import Client

from adapters import alembic_migrations
from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from adapters.sqlalchemy_store import create_engine_for
from domain.model import TradeState
from domain.signature import ApiKey
from entrypoints.middleware import WeChatPayMiddleware
from entrypoints.settings import ConfigError
from entrypoints.settings import Settings
from tests.support import cases
from tests.support import rule
from tests.support.checkout_app import NOTIFY_OK
from tests.support.checkout_app import audit_trail
from tests.support.checkout_app import merchant
from tests.support.checkout_app import seed
from tests.support.checkout_app import seeded_store
from tests.support.checkout_app import service_over
from tests.support.checkout_app import signed_xml
from tests.support.checkout_app import stored_order
from tests.support.fakes import FakeGateway
from tests.support.fakes import FixedClock
from tests.support.processes import free_port
from tests.support.simulator import running_simulator

PREFIX = "/pay"
MERCHANT_VARIABLES = (
    "WXPAY_APPID",
    "WXPAY_MCH_ID",
    "WXPAY_API_KEY",
    "WXPAY_CONFIG",
)


# --- the host apps ----------------------------------------------------------


def plain_app(environ, start_response):
    """A host app that says what it was given."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    answer = json.dumps(
        {
            "host": "plain",
            "path": environ["PATH_INFO"],
            "script_name": environ.get("SCRIPT_NAME", ""),
            "method": environ["REQUEST_METHOD"],
            "body": body.decode(),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [answer]


def flask_app():
    app = flask.Flask("shop")

    @app.get("/")
    def home():
        return "the host's home page"

    @app.get("/wechatpay-not-ours")
    def lookalike():
        return "the host's look-alike"

    @app.post("/orders")
    def orders():
        return {"got": flask.request.get_json()}, 201

    @app.get("/pay-later")
    def pay_later():
        return "the host's pay-later page"

    return app


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def store(clock):
    return seeded_store(clock)


@pytest.fixture
def gateway():
    return FakeGateway()


@pytest.fixture
def service(store, gateway, clock):
    notify_url = "https://shop.example/pay/wechatpay/notify"
    return service_over(store, gateway, clock, merchant=merchant(notify_url=notify_url))


@pytest.fixture
def shop(service):
    """A Flask shop with the checkout service mounted under /pay."""
    app = flask_app()
    app.wsgi_app = WeChatPayMiddleware(
        app.wsgi_app, service=service, prefix=PREFIX, shop=True
    )
    return app.test_client()


def xml_post(client, path, body):
    return client.post(path, data=body, headers={"Content-Type": "text/xml"})


# --- the fast path ----------------------------------------------------------


def test_a_request_that_is_not_ours_reaches_the_app_untouched(service):
    seen = []

    def host(environ, start_response):
        seen.append((environ, start_response))
        return [b"host"]

    middleware = WeChatPayMiddleware(host, service=service, prefix=PREFIX)
    environ = {"PATH_INFO": "/pay/api/products", "SCRIPT_NAME": ""}
    before = dict(environ)

    def start_response(status, headers, exc_info=None):
        pass

    assert middleware(environ, start_response) == [b"host"]
    ((got_environ, got_start),) = seen
    assert got_environ is environ and got_start is start_response
    assert environ == before


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/wechatpay-not-ours",
        "/wechatpay/notify",
        "/pay/wechatpay",
        "/pay/wechatpayx/notify",
        "/payments/wechatpay/notify",
        "/pay/api/products",
        "/pay/healthz",
    ],
)
def test_only_the_wechat_urls_are_taken_by_default(service, path):
    client = Client(WeChatPayMiddleware(plain_app, service=service, prefix=PREFIX))

    answer = client.get(path).get_json()

    assert answer["host"] == "plain"
    assert answer["path"] == path
    assert answer["script_name"] == ""


def test_a_post_to_the_host_keeps_its_body(service):
    client = Client(WeChatPayMiddleware(plain_app, service=service, prefix=PREFIX))

    answer = client.post("/wechatpay-not-ours", data=b"<xml>mine</xml>").get_json()

    assert answer == {
        "host": "plain",
        "path": "/wechatpay-not-ours",
        "script_name": "",
        "method": "POST",
        "body": "<xml>mine</xml>",
    }


def test_the_notify_under_the_prefix_is_ours(service, store):
    client = Client(WeChatPayMiddleware(plain_app, service=service, prefix=PREFIX))

    result = client.post("/pay/wechatpay/notify", data=signed_xml(cases.paid_notify()))

    assert result.data == NOTIFY_OK
    assert result.headers["X-Request-ID"]
    assert stored_order(store).state is TradeState.SUCCESS


def test_a_mount_inside_a_script_name_keeps_both(service):
    seen = []
    middleware = WeChatPayMiddleware(plain_app, service=service, prefix=PREFIX)
    middleware.checkout = lambda environ, start: seen.append(environ) or []

    middleware(
        {"PATH_INFO": "/pay/wechatpay/notify", "SCRIPT_NAME": "/shop"},
        lambda *a: None,
    )

    assert (seen[0]["SCRIPT_NAME"], seen[0]["PATH_INFO"]) == (
        "/shop/pay",
        "/wechatpay/notify",
    )


# --- in front of Flask, with the shop -----------------------------------------


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/", "the host's home page"),
        ("/wechatpay-not-ours", "the host's look-alike"),
        ("/pay-later", "the host's pay-later page"),
    ],
)
def test_the_flask_routes_work_unchanged(shop, path, text):
    result = shop.get(path)

    assert result.status_code == 200
    assert result.text == text
    assert "X-Request-ID" not in result.headers


def test_a_flask_post_keeps_its_json_body(shop):
    result = shop.post("/orders", json={"sku": "A1", "qty": 2})

    assert result.status_code == 201
    assert result.get_json() == {"got": {"sku": "A1", "qty": 2}}


def test_a_flask_404_stays_flasks(shop):
    result = shop.get("/pay/nothing-here")

    assert result.status_code == 404
    assert "X-Request-ID" not in result.headers


def test_a_full_payment_through_the_middleware(shop, store):
    made = shop.post("/pay/api/checkouts", json={"product_id": "P001", "mode": 2})
    checkout = made.get_json()
    assert made.status_code == 201
    assert made.headers["Location"] == f"/pay/api/checkouts/{checkout['id']}"

    fields = cases.paid_notify(out_trade_no=checkout["out_trade_no"])
    result = xml_post(shop, "/pay/wechatpay/notify", signed_xml(fields))

    assert result.status_code == 200
    assert result.data == NOTIFY_OK
    view = shop.get(f"/pay/api/checkouts/{checkout['id']}").get_json()
    assert view["status"] == "SUCCESS"
    order = stored_order(store, checkout["out_trade_no"])
    assert order.state is TradeState.SUCCESS
    (record,) = audit_trail(store, kind="notify")
    assert record.verdict == "accepted"


def test_a_mode_1_callback_through_the_middleware_is_answered_signed(shop, gateway):
    body = signed_xml(cases.scan_callback("P001"))

    result = xml_post(shop, "/pay/wechatpay/callback", body)

    reply = rule.parse(result.data)
    assert result.status_code == 200
    assert (reply["return_code"], reply["result_code"]) == ("SUCCESS", "SUCCESS")
    assert reply["sign"] == rule.sign_md5(reply, cases.KEY)
    assert reply["prepay_id"] == "wx_fake_prepay_1"


def test_the_pages_build_their_urls_under_the_prefix(shop):
    made = shop.post("/pay/api/checkouts", json={"product_id": "P001", "mode": 2})
    checkout_id = made.get_json()["id"]

    index = shop.get("/pay/").text
    page = shop.get(f"/pay/checkout/{checkout_id}").text

    for html in (index, page):
        assert 'data-base="/pay"' in html
        assert 'href="/pay/static/app.css"' in html
        assert 'src="/pay/static/app.js"' in html
        assert 'href="/static/' not in html and 'src="/static/' not in html
    assert f'src="/pay/api/checkouts/{checkout_id}/qr.svg"' in page
    assert 'href="/pay/"' in page
    assert shop.get(f"/pay/api/checkouts/{checkout_id}/qr.svg").status_code == 200


def test_the_script_uses_the_pages_base_for_every_url(shop):
    script = shop.get("/pay/static/app.js").text

    assert 'fetch("/' not in script and 'assign("/' not in script
    assert script.count("base() +") == 3


@pytest.mark.parametrize(
    ("path", "status"),
    [("/pay", 200), ("/pay/healthz", 200), ("/pay/readyz", 200), ("/pay/metrics", 200)],
)
def test_the_shop_and_ops_urls_are_served_under_the_prefix(shop, path, status):
    assert shop.get(path).status_code == status


def test_an_error_page_under_the_prefix_links_back_under_it(shop):
    result = shop.get("/pay/checkout/ckmissing", headers={"Accept": "text/html"})

    assert result.status_code == 404
    assert 'href="/pay/"' in result.text


def test_mounted_at_the_root_with_the_shop_the_host_keeps_the_rest(service):
    client = Client(WeChatPayMiddleware(plain_app, service=service, shop=True))

    assert client.get("/").headers["Content-Type"].startswith("text/html")
    assert client.get("/api/products").status_code == 200
    assert client.get("/about").get_json()["path"] == "/about"
    assert client.get("/healthzz").get_json()["host"] == "plain"


# --- configuration ------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["pay", "/pay/", "/pay?x=1", "/p ay", "/支付"])
def test_a_malformed_prefix_is_refused_with_the_expected_shape(service, prefix):
    with pytest.raises(ValueError, match="like '/pay'"):
        WeChatPayMiddleware(plain_app, service=service, prefix=prefix)


def test_without_settings_the_error_says_which_variable_to_set(monkeypatch):
    for name in MERCHANT_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(ConfigError) as caught:
        WeChatPayMiddleware(plain_app)

    message = str(caught.value)
    assert "WXPAY_APPID" in message and "WXPAY_API_KEY" in message
    assert "settings=" in message


def test_settings_from_the_environment_are_used(monkeypatch, tmp_path):
    monkeypatch.setenv("WXPAY_APPID", cases.APPID)
    monkeypatch.setenv("WXPAY_MCH_ID", cases.MCH_ID)
    monkeypatch.setenv("WXPAY_API_KEY", cases.KEY)
    monkeypatch.setenv("WXPAY_PUBLIC_URL", "https://shop.example/pay")
    monkeypatch.setenv("WXPAY_DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite3")

    middleware = WeChatPayMiddleware(plain_app, prefix=PREFIX)

    assert middleware.service.merchant.notify_url == (
        "https://shop.example/pay/wechatpay/notify"
    )


def test_a_notify_url_outside_the_prefix_is_warned_about(store, gateway, clock, caplog):
    service = service_over(store, gateway, clock)  # notify at /wechatpay/notify

    with caplog.at_level(logging.WARNING):
        WeChatPayMiddleware(plain_app, service=service, prefix=PREFIX)

    assert any("WXPAY_PUBLIC_URL" in r.getMessage() for r in caplog.records)


# --- a real server, a real payment ----------------------------------------------


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def wait_for_status(url, wanted, deadline=15.0):
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        _, view = http("GET", url)
        if view["status"] == wanted:
            return view
        time.sleep(0.1)
    raise AssertionError(f"{url} never reached {wanted}: {view}")


def notify_log(simulator, deadline=5.0):
    """The simulator's notify deliveries, once it has logged one.

    It logs a delivery when the merchant's reply is in, which is after
    the merchant has recorded the payment: a page can read SUCCESS a
    moment before the log has the entry.
    """
    until = time.monotonic() + deadline
    while True:
        entries = simulator.control("GET", "/control/log?kind=notify")["entries"]
        if entries or time.monotonic() > until:
            return entries
        time.sleep(0.05)


@pytest.fixture
def database_url(tmp_path):
    url = f"sqlite:///{tmp_path}/wxpay.sqlite3"
    engine = create_engine_for(url)
    alembic_migrations.upgrade(engine)
    with SqlAlchemyUnitOfWork(engine) as uow:
        seed(uow, FixedClock())
    engine.dispose()
    return url


@pytest.mark.e2e
def test_the_simulator_pays_into_a_flask_shop_through_the_middleware(database_url):
    port = free_port()
    public_url = f"http://127.0.0.1:{port}{PREFIX}"
    env = {
        "WXPAY_APPID": cases.APPID,
        "WXPAY_MCH_ID": cases.MCH_ID,
        "WXPAY_API_KEY": cases.KEY,
        "WXPAY_SIGN_TYPE": "MD5",
        "WXPAY_CALLBACK_URL": public_url + "/wechatpay/callback",
    }
    with running_simulator(env, time_scale=0.01) as simulator:
        settings = Settings(
            appid=cases.APPID,
            mch_id=cases.MCH_ID,
            api_key=ApiKey(cases.KEY),
            api_base=simulator.url,
            database_url=database_url,
            public_url=public_url,
        )
        app = flask_app()
        app.wsgi_app = WeChatPayMiddleware(
            app.wsgi_app, settings=settings, prefix=PREFIX, shop=True
        )
        server = make_server(
            "127.0.0.1",
            port,
            app,
            server_class=ThreadingServer,
            handler_class=QuietHandler,
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{port}"
            status, made = http(
                "POST", base + "/pay/api/checkouts", {"product_id": "P002", "mode": 2}
            )
            assert status == 201

            scan = simulator.control(
                "POST", "/control/scan", {"qr": made["qr_content"], "pay": True}
            )
            assert scan["ok"], scan

            view = wait_for_status(base + f"/pay/api/checkouts/{made['id']}", "SUCCESS")
            assert view["out_trade_no"] == made["out_trade_no"]
            log = notify_log(simulator)
            assert log[-1]["url"] == public_url + "/wechatpay/notify"
            assert log[-1]["accepted"] is True
            with urllib.request.urlopen(base + "/", timeout=10) as home:
                assert home.read() == b"the host's home page"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
