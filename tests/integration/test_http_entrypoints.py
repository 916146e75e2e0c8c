"""The service over HTTP: the JSON API, the pages and WeChat's two URLs.

Falcon's test client drives ``create_app`` over the in-memory store, a
fake gateway and a fixed clock; every signature is checked with the
independent rule in ``tests/support/rule.py``.
"""

from datetime import timedelta
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import falcon
import pytest
from falcon import testing

from adapters.memory import InMemoryStore
from adapters.memory import InMemoryUnitOfWork
from adapters.xml_codec import XmlLimits
from domain.model import Order
from domain.model import Product
from domain.model import TradeState
from domain.money import Fen
from entrypoints.app import create_app
from entrypoints.bootstrap import Service
from tests.support import cases
from tests.support import rule
from tests.support.cases import merchant
from tests.support.fakes import BrokenUnitOfWork
from tests.support.fakes import FakeGateway
from tests.support.fakes import FixedClock
from tests.support.hostile import HOSTILE

NOTIFY_OK = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
    b"<return_msg><![CDATA[OK]]></return_msg></xml>"
)
CHECKOUT_KEYS = {
    "id",
    "mode",
    "status",
    "qr_content",
    "out_trade_no",
    "total_fee",
    "product_id",
    "product_name",
    "expires_at",
    "paid_at",
}


# --- the service under test -----------------------------------------------


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def store(clock):
    store = InMemoryStore()
    with InMemoryUnitOfWork(store) as uow:
        uow.products.save(Product("P001", "Green tea", Fen(100)))
        uow.products.save(Product("P002", "Oolong", Fen(2590)))
        uow.products.save(Product("P009", "Sold out", Fen(50), available=False))
        order = Order(
            out_trade_no=cases.OTN,
            product_id="P001",
            body="Green tea",
            total_fee=Fen(100),
            created_at=clock.now(),
        )
        uow.orders.add(order)
        uow.commit()
    return store


@pytest.fixture
def gateway():
    return FakeGateway()


def make_service(store, gateway, clock, uow_factory=None):
    return Service(
        merchant=merchant(),
        uow_factory=uow_factory or (lambda: InMemoryUnitOfWork(store)),
        gateway=gateway,
        clock=clock,
        xml_limits=XmlLimits(max_bytes=16 * 1024),
    )


@pytest.fixture
def client(store, gateway, clock):
    return testing.TestClient(create_app(make_service(store, gateway, clock)))


@pytest.fixture
def broken_client(store, gateway, clock):
    service = make_service(store, gateway, clock, uow_factory=BrokenUnitOfWork)
    return testing.TestClient(create_app(service))


def stored_order(store, out_trade_no=cases.OTN):
    with InMemoryUnitOfWork(store) as uow:
        return uow.orders.get(out_trade_no)


def start(client, product_id="P001", mode=2):
    return client.simulate_post(
        "/api/checkouts", json={"product_id": product_id, "mode": mode}
    )


def post_xml(client, path, body):
    return client.simulate_post(path, body=body, headers={"Content-Type": "text/xml"})


def signed_xml(fields, key=cases.KEY):
    return rule.to_xml(rule.with_sign(fields, key))


def assert_signed_by_merchant(reply):
    assert reply["sign"] == rule.sign_md5(reply, cases.KEY)


# --- products and checkouts -------------------------------------------------


def test_products_are_listed_with_their_price_in_fen(client):
    result = client.simulate_get("/api/products")

    assert result.status_code == 200
    assert result.json == [
        {"id": "P001", "name": "Green tea", "price_fen": 100},
        {"id": "P002", "name": "Oolong", "price_fen": 2590},
        {"id": "P009", "name": "Sold out", "price_fen": 50},
    ]


def test_a_mode_1_checkout_shows_a_signed_bizpayurl(client, gateway):
    result = start(client, mode=1)

    assert result.status_code == 201
    body = result.json
    assert set(body) == CHECKOUT_KEYS
    assert result.headers["Location"] == f"/api/checkouts/{body['id']}"
    assert (body["mode"], body["status"]) == (1, "NOTPAY")
    assert (body["product_id"], body["total_fee"]) == ("P001", 100)
    link = urlsplit(body["qr_content"])
    assert f"{link.scheme}://{link.netloc}{link.path}" == ("weixin://wxpay/bizpayurl")
    fields = dict(parse_qsl(link.query, keep_blank_values=True))
    assert set(fields) == {
        "sign",
        "appid",
        "mch_id",
        "nonce_str",
        "product_id",
        "time_stamp",
    }
    assert fields["sign"] == rule.sign_md5(fields, cases.KEY)
    assert len(fields["time_stamp"]) == 10 and fields["time_stamp"].isdigit()
    assert (fields["appid"], fields["mch_id"]) == (cases.APPID, cases.MCH_ID)
    assert fields["product_id"] == body["id"]
    assert gateway.requests == []


def test_a_mode_2_checkout_shows_wechats_code_url(client, gateway, clock):
    result = start(client, mode=2)

    body = result.json
    assert result.status_code == 201
    assert body["qr_content"] == "weixin://wxpay/bizpayurl?pr=fake1"
    assert body["status"] == "NOTPAY"
    assert body["expires_at"] == (clock.now() + timedelta(hours=2)).isoformat()
    assert body["paid_at"] is None
    assert body["out_trade_no"] == gateway.requests[0].out_trade_no
    assert gateway.requests[0].total_fee == Fen(100)


def test_a_checkout_reads_back_as_it_was_made(client):
    made = start(client, product_id="P002").json

    result = client.simulate_get(f"/api/checkouts/{made['id']}")

    assert result.status_code == 200
    assert result.json == made
    assert result.json["product_name"] == "Oolong"
    assert "no-store" in result.headers["Cache-Control"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'"P001"',
        b'{"mode": 2}',
        b'{"product_id": "P001"}',
        b'{"product_id": "", "mode": 2}',
        b'{"product_id": 1, "mode": 2}',
        b'{"product_id": "P001", "mode": 3}',
        b'{"product_id": "P001", "mode": "1"}',
        b'{"product_id": "P001", "mode": true}',
        b'{"product_id": "P001", "mode": 2.0}',
        b'{"product_id": "P001", "mode": null}',
        b"[" * 2000 + b"]" * 2000,
    ],
)
def test_a_bad_checkout_request_is_a_400_with_a_json_reason(client, gateway, body):
    result = client.simulate_post(
        "/api/checkouts",
        body=body,
        headers={"Content-Type": "application/json"},
    )

    assert result.status_code == 400
    assert result.headers["Content-Type"].startswith("application/json")
    assert set(result.json) == {"title", "description"}
    assert gateway.requests == []


def test_a_checkout_for_an_impossible_product_id_is_a_404(client, gateway):
    result = client.simulate_post(
        "/api/checkouts",
        body=b'{"product_id": "\\ud800", "mode": 2}',
        headers={"Content-Type": "application/json"},
    )

    assert result.status_code == 404
    assert gateway.requests == []


def test_a_checkout_request_that_is_not_json_is_refused(client):
    result = client.simulate_post(
        "/api/checkouts",
        body="product_id=P001&mode=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert result.status_code == 415
    assert "title" in result.json


def test_an_oversized_checkout_request_is_refused(client):
    result = client.simulate_post(
        "/api/checkouts",
        body=b'{"product_id": "' + b"P" * 10_000 + b'", "mode": 2}',
        headers={"Content-Type": "application/json"},
    )

    assert result.status_code == 413


def test_an_unknown_product_is_a_404(client):
    result = start(client, product_id="P404")

    assert result.status_code == 404
    assert result.json["title"] == "Unknown product"


def test_a_sold_out_product_is_a_409(client):
    result = start(client, product_id="P009")

    assert result.status_code == 409


def test_a_checkout_wechat_would_not_order_is_a_503_to_retry(client, gateway):
    gateway.fail_with()

    result = start(client, mode=2)

    assert result.status_code == 503
    assert result.headers["Retry-After"].isdigit()
    assert set(result.json) == {"title", "description"}


def test_storage_down_is_a_503_not_a_500(broken_client):
    result = start(broken_client)

    assert result.status_code == 503
    assert "Retry-After" in result.headers


def test_an_unknown_checkout_is_a_404(client):
    result = client.simulate_get("/api/checkouts/ckdoesnotexist")

    assert result.status_code == 404
    assert set(result.json) == {"title", "description"}


@pytest.mark.parametrize(
    ("suffix", "content_type"),
    [("qr.svg", "image/svg+xml"), ("qr.png", "image/png")],
)
def test_the_qr_code_is_an_image(client, suffix, content_type):
    made = start(client).json

    result = client.simulate_get(f"/api/checkouts/{made['id']}/{suffix}")

    assert result.status_code == 200
    assert result.headers["Content-Type"] == content_type
    assert "private" in result.headers["Cache-Control"]
    if suffix == "qr.png":
        assert result.content.startswith(b"\x89PNG\r\n\x1a\n")
    else:
        assert b"<svg" in result.content[:200]


def test_the_qr_code_of_an_unknown_checkout_is_a_404(client):
    result = client.simulate_get("/api/checkouts/ckdoesnotexist/qr.png")

    assert result.status_code == 404


def test_health_answers_ok(client):
    result = client.simulate_get("/healthz")

    assert result.status_code == 200
    assert result.json == {"status": "ok"}


# --- pages ----------------------------------------------------------------


def test_the_shop_page_offers_both_ways_to_pay(client):
    result = client.simulate_get("/")

    page = result.text
    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("text/html")
    assert "Green tea" in page and "¥1.00" in page and "¥25.90" in page
    assert 'id="pay-2-P001"' in page and 'id="pay-1-P001"' in page
    assert "Content-Security-Policy" in result.headers


def test_the_checkout_page_shows_the_code_and_follows_the_status(client):
    made = start(client).json

    result = client.simulate_get(f"/checkout/{made['id']}")

    page = result.text
    assert result.status_code == 200
    assert 'id="status"' in page and 'data-status="NOTPAY"' in page
    assert f'id="qr-content">{made["qr_content"]}<' in page
    assert f'src="/api/checkouts/{made["id"]}/qr.svg"' in page
    assert "¥1.00" in page
    assert f'data-expires-at="{made["expires_at"]}"' in page


def test_the_checkout_page_says_paid_once_paid(client, store):
    made = start(client).json
    notify = cases.paid_notify(out_trade_no=made["out_trade_no"])
    post_xml(client, "/wechatpay/notify", signed_xml(notify))

    page = client.simulate_get(f"/checkout/{made['id']}").text

    assert 'data-status="SUCCESS"' in page
    assert '<strong id="status">Paid</strong>' in page
    assert client.simulate_get(f"/api/checkouts/{made['id']}").json["status"] == (
        "SUCCESS"
    )


def test_an_unknown_checkout_page_is_a_404_page(client):
    result = client.simulate_get(
        "/checkout/ckdoesnotexist", headers={"Accept": "text/html"}
    )

    assert result.status_code == 404
    assert result.headers["Content-Type"].startswith("text/html")


def test_page_values_are_escaped(client, store):
    with InMemoryUnitOfWork(store) as uow:
        uow.products.save(Product("P666", "<script>x()</script>", Fen(1)))
        uow.commit()

    page = client.simulate_get("/").text

    assert "<script>x()" not in page
    assert "&lt;script&gt;x()" in page


def test_the_static_files_are_served_and_nothing_else(client):
    assert client.simulate_get("/static/app.js").status_code == 200
    assert client.simulate_get("/static/app.css").status_code == 200
    assert client.simulate_get("/static/..%2Fapp.py").status_code == 404


# --- the mode-1 scan callback ---------------------------------------------


def callback(client, fields, key=cases.KEY):
    result = post_xml(client, "/wechatpay/callback", signed_xml(fields, key))
    return result, rule.parse(result.content)


def test_a_scan_gets_a_signed_prepay_reply(client, gateway):
    result, reply = callback(client, cases.scan_callback("P001"))

    assert result.status_code == 200
    assert result.headers["Content-Type"] == "text/xml"
    assert set(reply) == {
        "return_code",
        "appid",
        "mch_id",
        "nonce_str",
        "prepay_id",
        "result_code",
        "sign",
    }
    assert (reply["return_code"], reply["result_code"]) == ("SUCCESS", "SUCCESS")
    assert (reply["appid"], reply["mch_id"]) == (cases.APPID, cases.MCH_ID)
    assert reply["prepay_id"] == "wx_fake_prepay_1"
    assert reply["nonce_str"] != cases.NONCE
    assert_signed_by_merchant(reply)
    (request,) = gateway.requests
    assert (request.product_id, request.openid) == ("P001", cases.OPENID)


def test_a_scan_of_a_checkouts_code_pays_that_checkout(client, gateway):
    made = start(client, mode=1).json

    _, reply = callback(client, cases.scan_callback(made["id"]))

    assert reply["result_code"] == "SUCCESS"
    assert gateway.requests[0].product_id == made["id"]
    view = client.simulate_get(f"/api/checkouts/{made['id']}").json
    assert view["out_trade_no"] == gateway.requests[0].out_trade_no


def test_a_scan_of_an_unknown_product_is_a_signed_business_failure(client, gateway):
    result, reply = callback(client, cases.scan_callback("P404"))

    assert result.status_code == 200
    assert reply["return_code"] == "SUCCESS"
    assert reply["result_code"] == "FAIL"
    assert reply["err_code_des"]
    assert_signed_by_merchant(reply)
    assert gateway.requests == []


def test_a_scan_with_a_bad_sign_is_refused_without_ordering(client, gateway):
    result, reply = callback(client, cases.scan_callback(), key=cases.WRONG_KEY)

    assert result.status_code == 200
    assert reply["return_code"] == "FAIL"
    assert_signed_by_merchant(reply)
    assert gateway.requests == []


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_scan_gets_a_signed_fail(client, gateway, body):
    result = post_xml(client, "/wechatpay/callback", body)

    reply = rule.parse(result.content)
    assert result.status_code == 200
    assert reply["return_code"] == "FAIL"
    assert_signed_by_merchant(reply)
    assert gateway.requests == []


@pytest.mark.parametrize("body", [b"", b"not xml", b"<xml>" + b"a" * 20_000])
def test_an_unusable_scan_body_gets_a_signed_fail(client, body):
    result = post_xml(client, "/wechatpay/callback", body)

    reply = rule.parse(result.content)
    assert result.status_code == 200
    assert reply["return_code"] == "FAIL"
    assert_signed_by_merchant(reply)


def test_a_scan_while_wechat_fails_gets_result_code_fail(client, gateway):
    gateway.fail_with()

    result, reply = callback(client, cases.scan_callback())

    assert result.status_code == 200
    assert (reply["return_code"], reply["result_code"]) == ("SUCCESS", "FAIL")
    assert reply["err_code_des"]
    assert_signed_by_merchant(reply)


def test_a_scan_while_wechat_hangs_answers_when_the_deadline_passes(client, gateway):
    gateway.hang(0.2)

    result, reply = callback(client, cases.scan_callback())

    assert result.status_code == 200
    assert reply["result_code"] == "FAIL"
    assert_signed_by_merchant(reply)


def test_a_scan_while_storage_is_down_still_gets_a_signed_answer(broken_client, caplog):
    result, reply = callback(broken_client, cases.scan_callback())

    assert result.status_code == 200
    assert result.headers["Content-Type"] == "text/xml"
    assert (reply["return_code"], reply["result_code"]) == ("SUCCESS", "FAIL")
    assert reply["err_code_des"] == "系统繁忙，请稍后再试"
    assert_signed_by_merchant(reply)
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)


# --- the payment notify -----------------------------------------------------


def notify(client, fields, key=cases.KEY):
    return post_xml(client, "/wechatpay/notify", signed_xml(fields, key))


def assert_fail(result):
    assert result.status_code == 200
    assert result.headers["Content-Type"] == "text/xml"
    reply = rule.parse(result.content)
    assert set(reply) == {"return_code", "return_msg"}
    assert reply["return_code"] == "FAIL"
    return reply


def test_a_valid_notify_is_answered_exactly_as_wechat_expects(client, store):
    result = notify(client, cases.paid_notify())

    assert result.status_code == 200
    assert result.content == NOTIFY_OK
    assert result.headers["Content-Type"] == "text/xml"
    order = stored_order(store)
    assert order.state is TradeState.SUCCESS
    assert order.transaction_id == cases.TXN


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><out_trade_no>T202401010001</out_trade_no>"
        b"<total_fee>100</total_fee></xml>",
        b"<xml><out_trade_no>T202401010001</out_trade_no>"
        b"<total_fee>100</total_fee><result_code>SUCCESS</result_code></xml>",
        rule.to_xml({**cases.paid_notify(), "sign": ""}),
    ],
    ids=["C11a unsigned", "C11b no sign", "C11c empty sign"],
)
def test_a_forged_notify_is_refused_and_changes_nothing(client, store, body):
    result = post_xml(client, "/wechatpay/notify", body)

    assert_fail(result)
    assert stored_order(store).state is TradeState.NOTPAY


@pytest.mark.parametrize(
    "fields",
    [
        cases.paid_notify(total_fee="1", cash_fee="1"),
        cases.paid_notify(appid="wx0000000000fake99"),
    ],
    ids=["C12a amount", "C12b appid"],
)
def test_a_signed_but_mismatching_notify_is_refused(client, store, fields):
    result = notify(client, fields)

    assert_fail(result)
    assert stored_order(store).state is TradeState.NOTPAY


def test_a_notify_signed_with_another_key_is_refused(client, store):
    result = notify(client, cases.paid_notify(), key=cases.WRONG_KEY)

    assert rule.parse(result.content)["return_msg"] == "bad_sign"
    assert stored_order(store).state is TradeState.NOTPAY


def test_a_duplicate_notify_is_acknowledged_and_changes_nothing(client, store, clock):
    notify(client, cases.paid_notify())
    first = stored_order(store)
    clock.moment += timedelta(minutes=5)

    result = notify(client, cases.paid_notify())

    assert result.status_code == 200
    assert result.content == NOTIFY_OK
    assert stored_order(store) == first


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_notify_is_refused(client, store, body):
    result = post_xml(client, "/wechatpay/notify", body)

    assert_fail(result)
    assert stored_order(store).state is TradeState.NOTPAY


def test_an_empty_notify_is_refused(client):
    assert_fail(post_xml(client, "/wechatpay/notify", b""))


def test_an_oversized_notify_is_refused_without_reading_it_all(client):
    body = b"<xml><a>" + b"x" * 100_000 + b"</a></xml>"

    assert_fail(post_xml(client, "/wechatpay/notify", body))


def test_a_notify_while_storage_is_down_is_failed_so_wechat_retries(
    broken_client, caplog
):
    result = notify(broken_client, cases.paid_notify())

    assert_fail(result)
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_the_fail_reason_never_echoes_what_the_sender_wrote(client):
    fields = cases.paid_notify(out_trade_no="]]><evil/>", total_fee="1")

    reply = assert_fail(notify(client, fields))

    assert "evil" not in reply["return_msg"]


@pytest.mark.parametrize("path", ["/wechatpay/notify", "/wechatpay/callback"])
def test_wechat_urls_take_only_post(client, path):
    result = client.simulate_get(path)

    assert result.status_code == 405
    assert result.status == falcon.HTTP_405


def chunked(client, path, body):
    # As gunicorn hands over a chunked body: no Content-Length, and the
    # input stream ends where the body ends.
    return client.simulate_post(
        path,
        body=body,
        headers={"Content-Type": "text/xml"},
        extras={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )


def test_a_chunked_notify_is_read_too(client, store):
    result = chunked(client, "/wechatpay/notify", signed_xml(cases.paid_notify()))

    assert result.content == NOTIFY_OK
    assert stored_order(store).state is TradeState.SUCCESS


def test_a_chunked_notify_over_the_limit_is_refused(client, store):
    body = b"<xml><a>" + b"x" * 100_000 + b"</a></xml>"

    assert_fail(chunked(client, "/wechatpay/notify", body))
