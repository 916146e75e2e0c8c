"""The urllib3 gateway against a real HTTP server on 127.0.0.1 playing WeChat.

The fake WeChat checks every request's signature with ``tests.support.rule``
(the rule written out again, independently of ``domain``) and signs its
scripted answers the same way; no signature is ever pasted in.
"""

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest

from adapters.wechat_http import Urllib3WeChatGateway
from domain.merchant import Merchant
from domain.money import Fen
from domain.ports import BadResponseSignature
from domain.ports import OrderAlreadyPaid
from domain.ports import OrderClosed
from domain.ports import OrderNotFound
from domain.ports import UnexpectedResponse
from domain.ports import UnifiedOrderRequest
from domain.ports import WeChatRejected
from domain.ports import WeChatUnavailable
from domain.signature import ApiKey
from domain.signature import SignType
from tests.support import rule
from tests.support.cases import APPID
from tests.support.cases import KEY
from tests.support.cases import MCH_ID
from tests.support.cases import OTN
from tests.support.cases import TXN
from tests.support.cases import WRONG_KEY

NOTIFY_URL = "https://shop.example/wechatpay/notify"
CODE_URL = "weixin://wxpay/bizpayurl?pr=fake0001"
PREPAY_ID = "wx20240101100000fake0000000000000001"


# --- the fake WeChat --------------------------------------------------------


class FakeWeChat:
    """Answers POSTs with scripted replies and records what it received."""

    def __init__(self):
        self.replies = []
        self.received = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                fields = rule.parse(body)
                fake.received.append(
                    {
                        "path": self.path,
                        "content_type": self.headers["Content-Type"],
                        "body": body,
                        "fields": fields,
                        "sign_ok": _request_sign_holds(fields),
                    }
                )
                reply = fake.replies.pop(0) if fake.replies else ok()
                status, answer, delay = reply(fields)
                if delay:
                    fake.release.wait(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up waiting, as it should

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _request_sign_holds(fields):
    algorithm = fields.get("sign_type", "MD5")
    signer = rule.sign_md5 if algorithm == "MD5" else rule.sign_hmac
    return fields.get("sign") == signer(fields, KEY)


def signed_answer(request, key=KEY, **extra):
    """A return_code=SUCCESS answer signed as WeChat would sign it."""
    fields = {
        "return_code": "SUCCESS",
        "return_msg": "OK",
        "appid": APPID,
        "mch_id": MCH_ID,
        "nonce_str": "answernonce0000000000000000000AA",
        "result_code": "SUCCESS",
    }
    fields.update(extra)
    fields = {k: v for k, v in fields.items() if v is not None}
    return rule.with_sign(fields, key, request.get("sign_type", "MD5"))


def ok(**extra):
    def reply(request):
        return 200, rule.to_xml(signed_answer(request, **extra)), 0

    return reply


def prepay_ok():
    return ok(trade_type="NATIVE", prepay_id=PREPAY_ID, code_url=CODE_URL)


def business_fail(err_code, description="fake description"):
    return ok(result_code="FAIL", err_code=err_code, err_code_des=description)


def raw(status, body, delay=0):
    def reply(request):
        return status, body, delay

    return reply


# --- fixtures -----------------------------------------------------------------


def merchant(sign_type=SignType.MD5):
    return Merchant(
        appid=APPID,
        mch_id=MCH_ID,
        api_key=ApiKey(KEY),
        sign_type=sign_type,
        notify_url=NOTIFY_URL,
        server_ip="10.0.0.7",
    )


def order_request(**overrides):
    values = {
        "out_trade_no": OTN,
        "body": "Fake shop-Green tea",
        "total_fee": Fen(100),
        "product_id": "P001",
        "notify_url": NOTIFY_URL,
        "client_ip": "10.0.0.7",
    }
    values.update(overrides)
    return UnifiedOrderRequest(**values)


@pytest.fixture
def wechat():
    with FakeWeChat() as fake:
        yield fake


def gateway_for(url, sign_type=SignType.MD5, **options):
    options.setdefault("connect_timeout", 0.5)
    options.setdefault("read_timeout", 0.5)
    options.setdefault("deadline", 2.0)
    return Urllib3WeChatGateway(merchant(sign_type), url, **options)


# --- unifiedorder -------------------------------------------------------------


def test_unifiedorder_sends_exactly_the_signed_native_fields(wechat):
    wechat.replies = [prepay_ok()]
    gateway = gateway_for(wechat.url)

    prepay = gateway.unified_order(order_request())

    assert prepay.prepay_id == PREPAY_ID
    assert prepay.code_url == CODE_URL
    [seen] = wechat.received
    assert seen["path"] == "/pay/unifiedorder"
    assert seen["content_type"] == "text/xml; charset=utf-8"
    assert seen["sign_ok"]
    fields = dict(seen["fields"])
    nonce = fields.pop("nonce_str")
    sign = fields.pop("sign")
    assert fields == {
        "appid": APPID,
        "mch_id": MCH_ID,
        "body": "Fake shop-Green tea",
        "out_trade_no": OTN,
        "total_fee": "100",
        "spbill_create_ip": "10.0.0.7",
        "notify_url": NOTIFY_URL,
        "trade_type": "NATIVE",
        "product_id": "P001",
    }
    assert 16 <= len(nonce) <= 32
    assert len(sign) == 32
    assert sign == rule.sign_md5(seen["fields"], KEY)


def test_optional_fields_are_sent_only_when_given_and_never_as_null(wechat):
    wechat.replies = [prepay_ok(), prepay_ok()]
    gateway = gateway_for(wechat.url)

    gateway.unified_order(order_request(openid="", time_expire=""))
    gateway.unified_order(order_request(openid="oFAKE", time_expire="20240101120000"))

    without, with_them = (seen["fields"] for seen in wechat.received)
    assert "openid" not in without and "time_expire" not in without
    assert with_them["openid"] == "oFAKE"
    assert with_them["time_expire"] == "20240101120000"
    for seen in wechat.received:
        assert b"null" not in seen["body"].lower()
        assert all(value != "" for value in seen["fields"].values())
        assert seen["sign_ok"]


def test_an_hmac_merchant_sends_sign_type_and_accepts_a_64_hex_answer(wechat):
    wechat.replies = [prepay_ok()]
    gateway = gateway_for(wechat.url, SignType.HMAC_SHA256)

    prepay = gateway.unified_order(order_request())

    assert prepay.code_url == CODE_URL
    [seen] = wechat.received
    assert seen["fields"]["sign_type"] == "HMAC-SHA256"
    assert seen["fields"]["sign"] == rule.sign_hmac(seen["fields"], KEY)
    assert seen["sign_ok"]


def test_an_md5_merchant_sends_no_sign_type(wechat):
    wechat.replies = [prepay_ok()]

    gateway_for(wechat.url).unified_order(order_request())

    assert "sign_type" not in wechat.received[0]["fields"]


def test_a_tampered_answer_is_refused(wechat):
    def tampered(request):
        answer = signed_answer(
            request, trade_type="NATIVE", prepay_id=PREPAY_ID, code_url=CODE_URL
        )
        answer["code_url"] = "weixin://wxpay/bizpayurl?pr=attacker"
        return 200, rule.to_xml(answer), 0

    wechat.replies = [tampered]

    with pytest.raises(BadResponseSignature) as caught:
        gateway_for(wechat.url).unified_order(order_request())

    assert caught.value.api == "unifiedorder"
    assert caught.value.out_trade_no == OTN
    assert len(wechat.received) == 1


def test_an_unsigned_success_answer_is_refused(wechat):
    def unsigned(request):
        answer = signed_answer(request, prepay_id=PREPAY_ID, code_url=CODE_URL)
        del answer["sign"]
        return 200, rule.to_xml(answer), 0

    wechat.replies = [unsigned]

    with pytest.raises(BadResponseSignature):
        gateway_for(wechat.url).unified_order(order_request())


def test_an_answer_signed_with_another_key_is_refused(wechat):
    def wrong_key(request):
        answer = signed_answer(
            request, key=WRONG_KEY, prepay_id=PREPAY_ID, code_url=CODE_URL
        )
        return 200, rule.to_xml(answer), 0

    wechat.replies = [wrong_key]

    with pytest.raises(BadResponseSignature):
        gateway_for(wechat.url).unified_order(order_request())


def test_an_hmac_merchant_refuses_an_answer_downgraded_to_md5(wechat):
    def downgraded(request):
        fields = signed_answer(request, prepay_id=PREPAY_ID, code_url=CODE_URL)
        del fields["sign"]
        fields["sign_type"] = "MD5"
        return 200, rule.to_xml(rule.with_sign(fields, KEY, "MD5")), 0

    wechat.replies = [downgraded]
    gateway = gateway_for(wechat.url, SignType.HMAC_SHA256)

    with pytest.raises(BadResponseSignature):
        gateway.unified_order(order_request())


@pytest.mark.parametrize(
    ("err_code", "error_type"),
    [
        ("ORDERPAID", OrderAlreadyPaid),
        ("ORDERCLOSED", OrderClosed),
        ("OUT_TRADE_NO_USED", WeChatRejected),
        ("INVALID_REQUEST", WeChatRejected),
    ],
)
def test_a_business_refusal_becomes_its_typed_error(wechat, err_code, error_type):
    wechat.replies = [business_fail(err_code, "said no")]

    with pytest.raises(error_type) as caught:
        gateway_for(wechat.url).unified_order(order_request())

    assert type(caught.value) is error_type
    assert caught.value.err_code == err_code
    assert "said no" in str(caught.value)
    assert len(wechat.received) == 1


def test_systemerror_is_retried_with_the_identical_body(wechat):
    wechat.replies = [
        business_fail("SYSTEMERROR"),
        business_fail("BIZERR_NEED_RETRY"),
        prepay_ok(),
    ]

    prepay = gateway_for(wechat.url).unified_order(order_request())

    assert prepay.prepay_id == PREPAY_ID
    assert len(wechat.received) == 3
    bodies = {seen["body"] for seen in wechat.received}
    assert len(bodies) == 1
    assert all(seen["fields"]["out_trade_no"] == OTN for seen in wechat.received)


def test_systemerror_on_every_attempt_ends_as_unavailable(wechat):
    wechat.replies = [business_fail("SYSTEMERROR")] * 3

    with pytest.raises(WeChatUnavailable) as caught:
        gateway_for(wechat.url).unified_order(order_request())

    assert caught.value.err_code == "SYSTEMERROR"
    assert len(wechat.received) == 3


def test_a_server_slower_than_the_deadline_ends_within_the_deadline(wechat):
    deadline = 1.0
    wechat.replies = [raw(200, b"", delay=5)] * 5
    # The read timeout alone would outlast the deadline: the deadline wins.
    gateway = gateway_for(wechat.url, read_timeout=3.0, deadline=deadline)

    started = time.monotonic()
    with pytest.raises(WeChatUnavailable):
        gateway.unified_order(order_request())
    elapsed = time.monotonic() - started

    assert elapsed < deadline + 1.5
    assert 1 <= len(wechat.received) <= 3


def test_connection_refused_is_retried_then_unavailable(caplog):
    caplog.set_level(logging.INFO, logger="adapters.wechat_http")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        gateway = gateway_for(url)

        with pytest.raises(WeChatUnavailable) as caught:
            gateway.unified_order(order_request())

    assert caught.value.http_status is None
    assert isinstance(caught.value.__cause__, Exception)
    [line] = [r.getMessage() for r in caplog.records]
    assert "result=NewConnectionError attempts=3 " in line


def test_http_500_is_retried_then_unavailable(wechat):
    wechat.replies = [raw(500, b"<html>busy</html>")] * 3

    with pytest.raises(WeChatUnavailable) as caught:
        gateway_for(wechat.url).unified_order(order_request())

    assert caught.value.http_status == 500
    assert len(wechat.received) == 3
    assert len({seen["body"] for seen in wechat.received}) == 1


def test_return_code_fail_is_a_rejection_and_not_retried(wechat):
    answer = {"return_code": "FAIL", "return_msg": "签名错误"}
    wechat.replies = [raw(200, rule.to_xml(answer))]

    with pytest.raises(WeChatRejected) as caught:
        gateway_for(wechat.url).unified_order(order_request())

    assert "签名错误" in str(caught.value)
    assert caught.value.err_code == ""
    assert len(wechat.received) == 1


@pytest.mark.parametrize("field", ["appid", "mch_id"])
def test_a_signed_answer_for_another_merchant_is_refused(wechat, field):
    other = {"appid": "wx0000000000fake99", "mch_id": "9990000099"}[field]
    wechat.replies = [ok(prepay_id=PREPAY_ID, code_url=CODE_URL, **{field: other})]

    with pytest.raises(UnexpectedResponse) as caught:
        gateway_for(wechat.url).unified_order(order_request())

    assert field in str(caught.value)


def test_a_success_answer_without_code_url_is_refused(wechat):
    wechat.replies = [ok(prepay_id=PREPAY_ID)]

    with pytest.raises(UnexpectedResponse, match="code_url"):
        gateway_for(wechat.url).unified_order(order_request())


def test_a_body_that_is_not_a_wechat_message_is_refused_once(wechat):
    wechat.replies = [raw(200, b"<html>proxy login</html>")]

    with pytest.raises(UnexpectedResponse):
        gateway_for(wechat.url).unified_order(order_request())

    assert len(wechat.received) == 1


# --- orderquery and closeorder --------------------------------------------------


def test_query_order_reads_the_state_amount_and_transaction(wechat):
    wechat.replies = [
        ok(
            out_trade_no=OTN,
            trade_state="SUCCESS",
            total_fee="100",
            transaction_id=TXN,
            time_end="20240101100000",
            attach="",
        )
    ]

    status = gateway_for(wechat.url).query_order(OTN)

    assert status.trade_state == "SUCCESS"
    assert status.total_fee == Fen(100)
    assert status.transaction_id == TXN
    assert status.time_end == "20240101100000"
    [seen] = wechat.received
    assert seen["path"] == "/pay/orderquery"
    assert seen["sign_ok"]
    assert set(seen["fields"]) == {
        "appid",
        "mch_id",
        "nonce_str",
        "out_trade_no",
        "sign",
    }


def test_query_order_of_an_unpaid_order_has_no_amount(wechat):
    wechat.replies = [ok(out_trade_no=OTN, trade_state="NOTPAY")]

    status = gateway_for(wechat.url).query_order(OTN)

    assert status.trade_state == "NOTPAY"
    assert status.total_fee is None


def test_query_order_refuses_an_answer_about_another_order(wechat):
    wechat.replies = [ok(out_trade_no="T999", trade_state="SUCCESS")]

    with pytest.raises(UnexpectedResponse):
        gateway_for(wechat.url).query_order(OTN)


def test_query_order_of_an_unknown_order_is_order_not_found(wechat):
    wechat.replies = [business_fail("ORDERNOTEXIST")]

    with pytest.raises(OrderNotFound) as caught:
        gateway_for(wechat.url).query_order(OTN)

    assert caught.value.err_code == "ORDERNOTEXIST"
    assert caught.value.api == "orderquery"


def test_close_order_posts_to_closeorder(wechat):
    wechat.replies = [ok()]

    gateway_for(wechat.url).close_order(OTN)

    [seen] = wechat.received
    assert seen["path"] == "/pay/closeorder"
    assert seen["fields"]["out_trade_no"] == OTN
    assert seen["sign_ok"]


def test_closing_a_paid_order_says_it_is_paid(wechat):
    wechat.replies = [business_fail("ORDERPAID")]

    with pytest.raises(OrderAlreadyPaid):
        gateway_for(wechat.url).close_order(OTN)


# --- logging ---------------------------------------------------------------------


def test_each_call_logs_one_info_line_and_never_the_key(wechat, caplog):
    wechat.replies = [business_fail("SYSTEMERROR"), prepay_ok()]
    caplog.set_level(logging.DEBUG, logger="adapters.wechat_http")

    gateway_for(wechat.url).unified_order(order_request())

    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert infos[0].startswith(
        f"wechat call api=unifiedorder out_trade_no={OTN} result=SUCCESS"
        " attempts=2 elapsed_ms="
    )
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert any("body=<xml>" in r.getMessage() for r in caplog.records)
