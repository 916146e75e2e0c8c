"""The payer's side: mode-1 scans judged as WeChat judges them, payment
notifies delivered on WeChat's schedule, and the control API's log."""

import json
import time

import pytest

from domain.signature import SignType
from tests.simulator.conftest import SUCCESS_REPLY
from tests.simulator.conftest import WeChat
from tests.simulator.conftest import assert_signed
from tests.simulator.conftest import make_merchant
from tests.simulator.conftest import wait_for
from tests.support import cases
from tests.support import rule

NOTIFY = "/wechatpay/notify"


def _bizpayurl(product_id="P001", key=cases.KEY, time_stamp="1704074400", **extra):
    fields = {
        "appid": cases.APPID,
        "mch_id": cases.MCH_ID,
        "nonce_str": cases.NONCE,
        "product_id": product_id,
        "time_stamp": time_stamp,
    }
    signed = rule.with_sign(fields, key)
    signed.update(extra)
    query = "&".join(f"{k}={v}" for k, v in signed.items())
    return "weixin://wxpay/bizpayurl?" + query


def _callback_reply(prepay_id, key=cases.KEY, **overrides):
    fields = {
        "return_code": "SUCCESS",
        "appid": cases.APPID,
        "mch_id": cases.MCH_ID,
        "nonce_str": "reply0nonce",
        "prepay_id": prepay_id,
        "result_code": "SUCCESS",
        **overrides,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    return rule.to_xml(rule.with_sign(fields, key))


def _answer_callback(stub, reply, status=200, delay=0.0):
    stub.answer = lambda path, body: (
        (status, reply, delay) if path == "/callback" else (200, SUCCESS_REPLY, 0.0)
    )


@pytest.fixture
def prepay_id(wechat, stub):
    return wechat.order(notify_url=stub.url + NOTIFY)["prepay_id"]


def test_a_mode_one_scan_posts_the_signed_callback_and_accepts_a_good_reply(
    wechat, stub, prepay_id
):
    _answer_callback(stub, _callback_reply(prepay_id))

    result = wechat.control(
        "/control/scan", {"qr": _bizpayurl(), "openid": cases.OPENID}
    )

    assert result["ok"] is True, result
    assert result["message"] == "确认支付"
    assert result["out_trade_no"] == cases.OTN
    callback = rule.parse(stub.bodies("/callback")[0])
    assert set(callback) == {
        "appid",
        "openid",
        "mch_id",
        "is_subscribe",
        "nonce_str",
        "product_id",
        "sign",
    }
    assert callback["product_id"] == "P001"
    assert callback["openid"] == cases.OPENID
    assert_signed(callback)


def test_scan_and_pay_in_one_call_pays_and_notifies(wechat, stub, prepay_id):
    _answer_callback(stub, _callback_reply(prepay_id))

    result = wechat.control("/control/scan", {"qr": _bizpayurl(), "pay": True})

    assert result["ok"] is True and result["trade_state"] == "SUCCESS"
    notify = rule.parse(wait_for(lambda: stub.bodies(NOTIFY))[0])
    assert notify["transaction_id"] == result["transaction_id"]


OTHER_OPENID = "oOTHERpayer000000000000000000"


def test_an_order_placed_for_a_payer_cannot_be_paid_by_another(wechat, stub):
    wechat.order(notify_url=stub.url + NOTIFY, openid=cases.OPENID)

    refused = wechat.pay(openid=OTHER_OPENID)

    assert refused["ok"] is False
    assert refused["message"] == "该订单不属于当前付款用户"
    assert cases.OPENID in refused["detail"]
    assert (
        wechat.control(f"/control/orders/{cases.OTN}", method="GET")["trade_state"]
        == "NOTPAY"
    )
    paid = wechat.pay(openid=cases.OPENID)
    assert paid["ok"] is True
    notify = rule.parse(wait_for(lambda: stub.bodies(NOTIFY))[0])
    assert notify["openid"] == cases.OPENID


def test_paying_without_an_openid_pays_as_the_payer_the_order_names(wechat, stub):
    wechat.order(notify_url=stub.url + NOTIFY, openid=cases.OPENID)

    paid = wechat.pay()

    assert paid["ok"] is True
    assert paid["order"]["openid"] == cases.OPENID


def test_a_mode_one_scan_by_another_payer_cannot_take_the_order(wechat, stub):
    # The merchant answers with the prepay_id of an order it placed for
    # someone else (as a service reusing an open order by mistake would).
    prepay_id = wechat.order(notify_url=stub.url + NOTIFY, openid=cases.OPENID)[
        "prepay_id"
    ]
    _answer_callback(stub, _callback_reply(prepay_id))

    result = wechat.control(
        "/control/scan", {"qr": _bizpayurl(), "openid": OTHER_OPENID, "pay": True}
    )

    assert result["ok"] is False
    assert result["message"] == "该订单不属于当前付款用户"
    assert stub.bodies(NOTIFY) == []


def test_scan_and_pay_pays_as_the_scanner_the_order_was_placed_for(wechat, stub):
    prepay_id = wechat.order(notify_url=stub.url + NOTIFY, openid=OTHER_OPENID)[
        "prepay_id"
    ]
    _answer_callback(stub, _callback_reply(prepay_id))

    result = wechat.control(
        "/control/pay", {"qr": _bizpayurl(), "openid": OTHER_OPENID}
    )

    assert result["ok"] is True, result
    notify = rule.parse(wait_for(lambda: stub.bodies(NOTIFY))[0])
    assert notify["openid"] == OTHER_OPENID


@pytest.mark.parametrize(
    ("name", "reply", "status", "delay", "message"),
    [
        (
            "JSON",
            b'{"return_code": "SUCCESS"}',
            200,
            0,
            "商户后台返回的数据字段结构不合法",
        ),
        ("bare prepay_id", b"wx2024", 200, 0, "商户后台返回的数据字段结构不合法"),
        (
            "HTTP 500",
            b"oops",
            500,
            0,
            "获取商户订单信息超时或者商户返回的httpcode非200",
        ),
        ("too slow", None, 200, 0.6, "获取商户订单信息超时或者商户返回的httpcode非200"),
    ],
)
def test_a_classic_callback_mistake_shows_wechats_message(
    make_simulator, stub, name, reply, status, delay, message
):
    sim = make_simulator(
        make_merchant(callback_url=stub.url + "/callback"), callback_timeout=0.3
    )
    wechat = WeChat(sim)
    prepay_id = wechat.order()["prepay_id"]
    _answer_callback(stub, reply or _callback_reply(prepay_id), status, delay)

    result = wechat.control("/control/scan", {"qr": _bizpayurl()})

    assert result["ok"] is False
    assert result["message"] == message
    entry = wechat.control("/control/log?kind=callback", method="GET")["entries"][-1]
    assert entry["accepted"] is False
    assert message in entry["verdict"]


def test_an_unsigned_callback_reply_is_a_signature_error(wechat, stub, prepay_id):
    unsigned = rule.to_xml(
        {
            "return_code": "SUCCESS",
            "appid": cases.APPID,
            "mch_id": cases.MCH_ID,
            "nonce_str": "n",
            "prepay_id": prepay_id,
            "result_code": "SUCCESS",
        }
    )
    _answer_callback(stub, unsigned)

    result = wechat.control("/control/scan", {"qr": _bizpayurl()})

    assert result["message"] == "签名错误"


def test_a_callback_reply_signed_with_another_key_is_a_signature_error(
    wechat, stub, prepay_id
):
    _answer_callback(stub, _callback_reply(prepay_id, key=cases.WRONG_KEY))

    result = wechat.control("/control/scan", {"qr": _bizpayurl()})

    assert result["message"] == "签名错误"


def test_a_callback_reply_missing_a_field_is_malformed(wechat, stub, prepay_id):
    _answer_callback(stub, _callback_reply(prepay_id, nonce_str=None))

    result = wechat.control("/control/scan", {"qr": _bizpayurl()})

    assert result["message"] == "商户后台返回的数据字段结构不合法"


def test_the_merchants_own_refusal_is_what_the_payer_sees(wechat, stub, prepay_id):
    reply = _callback_reply(None, result_code="FAIL", err_code_des="商品已售完")
    _answer_callback(stub, reply)

    result = wechat.control("/control/scan", {"qr": _bizpayurl()})

    assert result["message"] == "商品已售完"


def test_a_prepay_id_for_another_product_is_refused(wechat, stub):
    other = wechat.order(out_trade_no="OTHER00001", product_id="P999")["prepay_id"]
    _answer_callback(stub, _callback_reply(other))

    result = wechat.control("/control/scan", {"qr": _bizpayurl()})

    assert result["ok"] is False
    assert result["message"] == "商户后台返回的数据字段结构不合法"


@pytest.mark.parametrize(
    "qr",
    [
        _bizpayurl(key=cases.WRONG_KEY),
        _bizpayurl(time_stamp="1704074400000"),
        _bizpayurl().replace("product_id=P001&", ""),
        _bizpayurl(extra="1"),
        "weixin://wxpay/bizpayurl",
        "https://example.com/pay",
    ],
)
def test_a_bad_mode_one_link_is_refused_before_any_callback(wechat, stub, qr):
    result = wechat.control("/control/scan", {"qr": qr})

    assert result["ok"] is False
    assert result["message"] == "原生支付URL参数错误"
    assert stub.bodies("/callback") == []


def test_a_short_url_scans_like_its_long_link(wechat, stub, prepay_id):
    _answer_callback(stub, _callback_reply(prepay_id))
    short = wechat.call("/tools/shorturl", {"long_url": _bizpayurl()})["short_url"]

    result = wechat.control("/control/scan", {"qr": short})

    assert result["ok"] is True


def test_a_code_url_scan_resolves_to_its_order(wechat):
    code_url = wechat.order()["code_url"]

    result = wechat.control("/control/scan", {"qr": code_url})

    assert result["ok"] is True
    assert result["mode"] == 2
    assert result["out_trade_no"] == cases.OTN


def test_the_payment_notify_is_signed_and_carries_the_coupon_fields(wechat, stub):
    wechat.order(notify_url=stub.url + NOTIFY, attach="cart-1")

    paid = wechat.pay(coupon_fee=10)
    notify = rule.parse(wait_for(lambda: stub.bodies(NOTIFY))[0])

    assert_signed(notify)
    assert "sign_type" not in notify
    assert notify["transaction_id"] == paid["transaction_id"]
    assert notify["total_fee"] == "100"
    assert notify["cash_fee"] == "90"
    assert notify["coupon_count"] == "1"
    assert notify["coupon_fee_0"] == "10"
    assert notify["coupon_id_0"]
    assert notify["attach"] == "cart-1"
    assert notify["bank_type"] and len(notify["time_end"]) == 14


def test_an_hmac_order_is_notified_with_a_64_hex_sign_and_no_sign_type(
    make_simulator, stub
):
    sim = make_simulator(make_merchant(sign_type=SignType.HMAC_SHA256))
    wechat = WeChat(sim)
    request = {
        "sign_type": "HMAC-SHA256",
        "body": "b",
        "out_trade_no": cases.OTN,
        "total_fee": "100",
        "spbill_create_ip": "127.0.0.1",
        "notify_url": stub.url + NOTIFY,
        "trade_type": "NATIVE",
        "product_id": "P001",
    }
    wechat.call("/pay/unifiedorder", request, algorithm="HMAC-SHA256")

    wechat.pay()
    notify = rule.parse(wait_for(lambda: stub.bodies(NOTIFY))[0])

    assert "sign_type" not in notify
    assert len(notify["sign"]) == 64
    assert_signed(notify, "HMAC-SHA256")


def test_a_notify_is_retried_until_the_exact_success_reply(wechat, stub):
    replies = iter(
        [
            (200, b'{"code": "SUCCESS"}', 0.0),
            (200, b"<xml><return_code>FAIL</return_code></xml>", 0.0),
            (500, b"", 0.0),
            (200, b"<xml><return_code>SUCCESS</return_code></xml>", 0.0),
        ]
    )
    stub.answer = lambda path, body: next(replies)
    wechat.order(notify_url=stub.url + NOTIFY)

    wechat.pay()
    entries = wait_for(
        lambda: (
            [e for e in wechat.simulator.log.entries("notify") if e.accepted]
            and wechat.simulator.log.entries("notify")
        )
    )

    assert [e.accepted for e in entries] == [False, False, False, True]
    assert [e.attempt for e in entries] == [1, 2, 3, 4]
    assert len(set(stub.bodies(NOTIFY))) == 1
    time.sleep(0.1)
    assert len(stub.bodies(NOTIFY)) == 4


def test_retries_follow_the_scaled_schedule_and_are_bounded(make_simulator, stub):
    sim = make_simulator(make_merchant(), time_scale=0.00002)
    wechat = WeChat(sim)
    stub.answer = lambda path, body: (503, b"", 0.0)
    wechat.order(notify_url=stub.url + NOTIFY)

    started = time.monotonic()
    wechat.pay()
    wait_for(lambda: len(stub.requests) == 16, timeout=10)
    elapsed = time.monotonic() - started
    time.sleep(0.2)

    assert len(stub.requests) == 16
    assert elapsed >= 86640 * 0.00002
    gaps = [b[2] - a[2] for a, b in zip(stub.requests, stub.requests[1:], strict=False)]
    assert gaps[-1] > gaps[0]


def test_a_duplicated_notify_arrives_twice_at_once(wechat, stub):
    wechat.order(notify_url=stub.url + NOTIFY)

    wechat.pay(duplicate=True)
    wait_for(lambda: len(stub.bodies(NOTIFY)) == 2)

    first, second = stub.bodies(NOTIFY)
    assert first == second
    arrivals = [seen for _, _, seen in stub.requests]
    assert abs(arrivals[1] - arrivals[0]) < 0.5


def test_a_dropped_notify_is_delivered_on_the_next_attempt(wechat, stub):
    wechat.control("/control/faults", {"kind": "drop_notify", "count": 1})
    wechat.order(notify_url=stub.url + NOTIFY)

    wechat.pay()
    wait_for(lambda: stub.bodies(NOTIFY))

    entries = wechat.control("/control/log?kind=notify", method="GET")["entries"]
    assert [e["accepted"] for e in entries] == [False, True]
    assert "dropped" in entries[0]["verdict"]
    assert entries[1]["reply"] == SUCCESS_REPLY.decode()
    assert entries[1]["status"] == 200


def test_the_control_api_lists_orders_and_refuses_bad_input(wechat):
    wechat.order()

    listed = wechat.control("/control/orders", method="GET")
    one = wechat.control(f"/control/orders/{cases.OTN}", method="GET")
    missing = wechat.client.simulate_get("/control/orders/NOSUCH")
    bad = wechat.client.simulate_post(
        "/control/pay", body=json.dumps({"coupon_fee": -1})
    )

    assert [o["out_trade_no"] for o in listed["orders"]] == [cases.OTN]
    assert one["trade_state"] == "NOTPAY" and one["total_fee"] == 100
    assert missing.status_code == 404
    assert bad.status_code == 400


def test_reset_forgets_orders_and_the_clock_offset(wechat):
    wechat.order()
    wechat.control("/control/clock", {"advance": 60})

    wechat.control("/control/reset", {})

    assert wechat.control("/control/orders", method="GET")["orders"] == []
    assert wechat.control("/control/clock", method="GET")["offset_seconds"] == 0


def test_the_page_pays_an_order_with_one_click(wechat, stub):
    wechat.order(notify_url=stub.url + NOTIFY)
    page = wechat.client.simulate_get("/")

    clicked = wechat.client.simulate_post(
        "/ui/pay",
        body=f"out_trade_no={cases.OTN}&mch_id={cases.MCH_ID}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert cases.OTN in page.text and 'action="/ui/pay"' in page.text
    assert clicked.status_code == 303
    assert (
        wechat.control(f"/control/orders/{cases.OTN}", method="GET")["trade_state"]
        == "SUCCESS"
    )
