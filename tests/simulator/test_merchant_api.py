"""WeChat's merchant API rules, checked through the simulator's paths."""

from datetime import datetime
from datetime import timedelta

import pytest

from simulator.state import BEIJING
from tests.simulator.conftest import assert_signed
from tests.support import cases
from tests.support import rule


def test_an_order_gets_a_signed_code_url_and_prepay_id(wechat):
    answer = wechat.order()

    assert answer["return_code"] == "SUCCESS"
    assert answer["result_code"] == "SUCCESS"
    assert answer["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert answer["prepay_id"].startswith("wx")
    assert answer["trade_type"] == "NATIVE"
    assert_signed(answer)


def test_an_hmac_request_gets_an_hmac_signed_answer(wechat):
    answer = wechat.call(
        "/pay/unifiedorder",
        {
            "sign_type": "HMAC-SHA256",
            "body": "shop-test",
            "out_trade_no": cases.OTN,
            "total_fee": "1",
            "spbill_create_ip": "127.0.0.1",
            "notify_url": "http://127.0.0.1:9/notify",
            "trade_type": "NATIVE",
            "product_id": "P001",
        },
        algorithm="HMAC-SHA256",
    )

    assert answer["result_code"] == "SUCCESS"
    assert len(answer["sign"]) == 64
    assert_signed(answer, "HMAC-SHA256")


def test_a_request_signed_with_another_key_is_a_signerror(wechat):
    answer = wechat.call(
        "/pay/orderquery", {"out_trade_no": cases.OTN}, key=cases.WRONG_KEY
    )

    assert answer["return_code"] == "FAIL"
    assert answer["return_msg"] == "签名错误"
    assert answer["err_code"] == "SIGNERROR"
    assert "sign" not in answer


def test_an_hmac_sign_under_an_md5_sign_type_is_a_signerror(wechat):
    fields = {"appid": cases.APPID, "mch_id": cases.MCH_ID, "nonce_str": cases.NONCE}
    fields["out_trade_no"] = cases.OTN
    body = rule.to_xml(rule.with_sign(fields, cases.KEY, "HMAC-SHA256"))

    answer = rule.parse(
        wechat.client.simulate_post("/pay/orderquery", body=body).content
    )

    assert answer["err_code"] == "SIGNERROR"


def test_an_unsigned_request_is_refused(wechat):
    answer = wechat.call("/pay/orderquery", {"out_trade_no": cases.OTN}, sign=False)

    assert answer["return_code"] == "FAIL"
    assert answer["err_code"] == "LACK_PARAMS"


def test_an_appid_not_bound_to_the_mch_id_is_refused(wechat):
    answer = wechat.call(
        "/pay/orderquery", {"appid": "wx0000000000fake99", "out_trade_no": cases.OTN}
    )

    assert answer["err_code"] == "APPID_MCHID_NOT_MATCH"


def test_an_unknown_mch_id_is_refused(wechat):
    answer = wechat.call(
        "/pay/orderquery", {"mch_id": "1234", "out_trade_no": cases.OTN}
    )

    assert answer["err_code"] == "MCHID_NOT_EXIST"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_only_post_is_accepted(wechat, method):
    result = wechat.client.simulate_request(method, "/pay/unifiedorder")

    answer = rule.parse(result.content)
    assert result.status_code == 200
    assert answer["err_code"] == "REQUIRE_POST_METHOD"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "POST_DATA_EMPTY"),
        (b"<xml><a>\xff</a></xml>", "NOT_UTF8"),
        (b'{"appid": "wx"}', "XML_FORMAT_ERROR"),
        (b'<!DOCTYPE xml [<!ENTITY e "x">]><xml><a>&e;</a></xml>', "XML_FORMAT_ERROR"),
    ],
)
def test_a_body_that_is_not_utf8_xml_is_refused(wechat, body, code):
    answer = rule.parse(
        wechat.client.simulate_post("/pay/unifiedorder", body=body).content
    )

    assert answer["return_code"] == "FAIL"
    assert answer["err_code"] == code


def test_a_missing_required_field_is_lack_params(wechat):
    answer = wechat.order(spbill_create_ip=None)

    assert answer["result_code"] == "FAIL"
    assert answer["err_code"] == "LACK_PARAMS"
    assert_signed(answer)


def test_a_native_order_needs_a_product_id(wechat):
    answer = wechat.order(product_id=None)

    assert answer["err_code"] == "LACK_PARAMS"
    assert "product_id" in answer["err_code_des"]


@pytest.mark.parametrize(
    "out_trade_no", ["12345", "x" * 33, "T2024 0101", "T2024#0101", "订单000001"]
)
def test_out_trade_no_is_6_to_32_digits_letters_or_marks(wechat, out_trade_no):
    answer = wechat.order(out_trade_no=out_trade_no)

    assert answer["err_code"] == "PARAM_ERROR"


def test_out_trade_no_may_use_the_four_marks(wechat):
    answer = wechat.order(out_trade_no="A_b-c|d*e")

    assert answer["result_code"] == "SUCCESS"


@pytest.mark.parametrize("total_fee", ["0", "-1", "1.00", "01", "abc", " 1"])
def test_total_fee_is_a_positive_integer_of_fen(wechat, total_fee):
    answer = wechat.order(total_fee=total_fee)

    assert answer["err_code"] == "PARAM_ERROR"


@pytest.mark.parametrize(
    "total_fee", [str(2**31), "99999999999999999999"], ids=["2**31", "20 digits"]
)
def test_total_fee_above_a_32_bit_int_is_a_param_error(wechat, total_fee):
    answer = wechat.order(total_fee=total_fee)

    assert answer["result_code"] == "FAIL"
    assert answer["err_code"] == "PARAM_ERROR"


def test_total_fee_of_the_largest_32_bit_int_is_accepted(wechat):
    answer = wechat.order(total_fee=str(2**31 - 1))

    assert answer["result_code"] == "SUCCESS"


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ("x" * 127, True),
        ("x" * 128, False),
        ("商" * 42, True),  # 126 bytes
        ("商" * 43, False),  # 43 characters, but 129 bytes
    ],
    ids=["127 ASCII", "128 ASCII", "42 CJK", "43 CJK"],
)
def test_body_is_at_most_127_bytes_of_utf8(wechat, body, accepted):
    answer = wechat.order(body=body)

    if accepted:
        assert answer["result_code"] == "SUCCESS", answer
    else:
        assert answer["err_code"] == "PARAM_ERROR"
        assert answer["err_code_des"] == "body参数长度有误"


@pytest.mark.parametrize(
    "notify_url",
    ["http://127.0.0.1:9/notify?order=1", "/wechatpay/notify", "ftp://x/notify"],
)
def test_notify_url_is_absolute_without_a_query(wechat, notify_url):
    answer = wechat.order(notify_url=notify_url)

    assert answer["err_code"] == "PARAM_ERROR"


def _beijing(delta):
    return (datetime.now(BEIJING) + delta).strftime("%Y%m%d%H%M%S")


@pytest.mark.parametrize(
    "time_expire",
    [
        "2024-01-01 10:00:00",
        "202401011000",
        "20241301100000",
        _beijing(timedelta(minutes=4)),
    ],
)
def test_time_expire_has_wechat_format_and_at_least_five_minutes(wechat, time_expire):
    answer = wechat.order(time_expire=time_expire)

    assert answer["err_code"] == "PARAM_ERROR"
    assert "time_expire" in answer["err_code_des"]


def test_re_entry_with_identical_parameters_returns_the_same_order(wechat):
    first = wechat.order()

    again = wechat.order()

    assert again["result_code"] == "SUCCESS"
    assert again["prepay_id"] == first["prepay_id"]
    assert again["code_url"] == first["code_url"]


def test_re_entry_with_changed_parameters_is_refused(wechat):
    wechat.order()

    answer = wechat.order(total_fee="101")

    assert answer["err_code"] == "INVALID_REQUEST"
    assert "商户订单号重复" in answer["err_code_des"]


def test_re_entry_after_two_hours_gets_a_new_prepay_id(wechat):
    first = wechat.order()
    wechat.control("/control/clock", {"advance": 2 * 3600})

    again = wechat.order()

    assert again["result_code"] == "SUCCESS"
    assert again["prepay_id"] != first["prepay_id"]


def test_re_entry_of_a_paid_order_is_orderpaid(wechat):
    wechat.order()
    wechat.pay()

    answer = wechat.order()

    assert answer["err_code"] == "ORDERPAID"


def test_orderquery_follows_the_order_from_notpay_to_success(wechat):
    wechat.order(attach="cart-7")
    before = wechat.call("/pay/orderquery", {"out_trade_no": cases.OTN})

    paid = wechat.pay(coupon_fee=10)
    after = wechat.call("/pay/orderquery", {"transaction_id": paid["transaction_id"]})

    assert before["trade_state"] == "NOTPAY"
    assert after["trade_state"] == "SUCCESS"
    assert after["transaction_id"] == paid["transaction_id"]
    assert len(after["transaction_id"]) == 28
    assert after["transaction_id"].startswith("4200")
    assert after["total_fee"] == "100"
    assert after["cash_fee"] == "90"
    assert after["coupon_fee_0"] == "10"
    assert after["coupon_count"] == "1"
    assert after["attach"] == "cart-7"
    assert len(after["time_end"]) == 14
    assert_signed(after)


def test_orderquery_of_an_unknown_order_is_ordernotexist(wechat):
    answer = wechat.call("/pay/orderquery", {"out_trade_no": "NOSUCHORDER"})

    assert answer["result_code"] == "FAIL"
    assert answer["err_code"] == "ORDERNOTEXIST"


def test_closeorder_is_refused_within_five_minutes_of_ordering(wechat):
    wechat.order()
    wechat.control("/control/clock", {"advance": 299})

    answer = wechat.call("/pay/closeorder", {"out_trade_no": cases.OTN})

    assert answer["err_code"] == "INVALID_REQUEST"
    assert "5分钟" in answer["err_code_des"]


def test_closeorder_after_five_minutes_closes_and_then_ordercloses(wechat):
    wechat.order()
    wechat.control("/control/clock", {"advance": 300})

    closed = wechat.call("/pay/closeorder", {"out_trade_no": cases.OTN})
    again = wechat.call("/pay/closeorder", {"out_trade_no": cases.OTN})
    reentry = wechat.order()
    state = wechat.call("/pay/orderquery", {"out_trade_no": cases.OTN})

    assert closed["result_code"] == "SUCCESS"
    assert again["err_code"] == "ORDERCLOSED"
    assert reentry["err_code"] == "ORDERCLOSED"
    assert state["trade_state"] == "CLOSED"


def test_closeorder_of_a_paid_order_is_orderpaid(wechat):
    wechat.order()
    wechat.pay()
    wechat.control("/control/clock", {"advance": 600})

    answer = wechat.call("/pay/closeorder", {"out_trade_no": cases.OTN})

    assert answer["err_code"] == "ORDERPAID"


def test_an_order_closes_at_its_time_expire(wechat):
    wechat.order(time_expire=_beijing(timedelta(minutes=10)))
    wechat.control("/control/clock", {"advance": 600})

    state = wechat.call("/pay/orderquery", {"out_trade_no": cases.OTN})
    paying = wechat.pay()

    assert state["trade_state"] == "CLOSED"
    assert paying["ok"] is False
    assert paying["message"] == "该订单已关闭"


def test_a_code_url_older_than_two_hours_cannot_be_paid(wechat):
    code_url = wechat.order()["code_url"]
    wechat.control("/control/clock", {"advance": 2 * 3600})

    scanned = wechat.control("/control/scan", {"qr": code_url, "pay": True})

    assert scanned["ok"] is False
    assert scanned["message"] == "二维码已过期"


def test_a_payment_failure_is_payerror(wechat):
    wechat.order()

    result = wechat.pay(fail=True)
    state = wechat.call("/pay/orderquery", {"out_trade_no": cases.OTN})

    assert result["trade_state"] == "PAYERROR"
    assert state["trade_state"] == "PAYERROR"


def test_systemerror_fault_answers_the_next_calls_then_stops(wechat):
    wechat.control(
        "/control/faults", {"api": "unifiedorder", "kind": "SYSTEMERROR", "count": 2}
    )

    answers = [wechat.order() for _ in range(3)]

    assert [a.get("err_code") for a in answers] == ["SYSTEMERROR", "SYSTEMERROR", None]
    assert answers[0]["return_code"] == "SUCCESS"
    assert_signed(answers[0])


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"api": "notify", "kind": "SYSTEMERROR"}, "notify takes only drop_notify"),
        ({"api": "unifiedorder", "kind": "drop_notify"}, "its api is notify"),
        ({"api": "nosuchapi", "kind": "slow"}, "api must be one of unifiedorder"),
    ],
    ids=["notify SYSTEMERROR", "unifiedorder drop_notify", "unknown api"],
)
def test_a_fault_no_api_could_have_is_refused_saying_which_apis_exist(
    wechat, fault, says
):
    result = wechat.client.simulate_post("/control/faults", json=fault)

    assert result.status_code == 400
    assert says in result.json["description"]
    assert wechat.control("/control/faults", method="GET")["faults"] == []


@pytest.mark.parametrize("fault", [{"kind": "drop_notify"}, {"api": "notify"}])
def test_drop_notify_is_the_notify_fault_with_or_without_its_api(wechat, fault):
    added = wechat.control(
        "/control/faults", {"kind": "drop_notify", **fault, "count": 2}
    )

    assert added["fault"]["api"] == "notify"


def test_http500_fault_answers_a_server_error(wechat):
    wechat.control("/control/faults", {"api": "orderquery", "kind": "http500"})

    result = wechat.client.simulate_post("/pay/orderquery", body=b"<xml/>")

    assert result.status_code == 500


def test_slow_fault_delays_the_answer(wechat):
    wechat.control(
        "/control/faults", {"api": "orderquery", "kind": "slow", "delay": 0.3}
    )
    started = datetime.now()

    wechat.call("/pay/orderquery", {"out_trade_no": cases.OTN})

    assert (datetime.now() - started).total_seconds() >= 0.3


def test_shorturl_gives_a_short_link_that_scans_like_the_long_one(wechat):
    answer = wechat.call(
        "/tools/shorturl", {"long_url": "weixin://wxpay/bizpayurl?pr=x"}
    )

    assert answer["short_url"].startswith("weixin://wxpay/s/")
    assert_signed(answer)


def test_getsignkey_answers_a_sandbox_key_without_an_appid(wechat):
    answer = wechat.call("/sandboxnew/pay/getsignkey", {"appid": None})

    assert answer["return_code"] == "SUCCESS"
    assert len(answer["sandbox_signkey"]) == 32
    assert_signed(answer)
