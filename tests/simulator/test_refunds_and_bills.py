"""Refund limits, the refund notify, and the day's bill."""

import csv
import gzip

from wechatpy.crypto import WeChatRefundCrypto

from tests.simulator.conftest import assert_signed
from tests.simulator.conftest import wait_for
from tests.support import cases
from tests.support import rule


def _refund(wechat, out_refund_no, refund_fee, total_fee="100", **fields):
    request = {
        "out_trade_no": cases.OTN,
        "out_refund_no": out_refund_no,
        "total_fee": total_fee,
        "refund_fee": str(refund_fee),
        **fields,
    }
    return wechat.call("/secapi/pay/refund", request)


def _paid(wechat, **fields):
    wechat.order(**fields)
    return wechat.pay()


def test_refunds_never_exceed_the_paid_amount(wechat):
    _paid(wechat)

    first = _refund(wechat, "R1", 60)
    second = _refund(wechat, "R2", 40)
    third = _refund(wechat, "R3", 1)

    assert first["result_code"] == second["result_code"] == "SUCCESS"
    assert third["err_code"] == "ERROR"
    assert "大于" in third["err_code_des"]
    assert_signed(first)


def test_the_same_out_refund_no_is_the_same_refund(wechat):
    _paid(wechat)

    first = _refund(wechat, "R1", 60)
    again = _refund(wechat, "R1", 60)
    changed = _refund(wechat, "R1", 70)
    query = wechat.call("/pay/refundquery", {"out_trade_no": cases.OTN})

    assert again["refund_id"] == first["refund_id"]
    assert changed["err_code"] == "INVALID_REQUEST"
    assert query["refund_count"] == "1"
    assert query["refund_fee_0"] == "60"
    assert query["refund_status_0"] == "SUCCESS"


def test_an_order_takes_at_most_fifty_refunds(wechat):
    wechat.order(total_fee="1000")
    wechat.pay()

    answers = [_refund(wechat, f"R{n}", 1, total_fee="1000") for n in range(51)]

    assert all(a["result_code"] == "SUCCESS" for a in answers[:50])
    assert answers[50]["err_code"] == "ERROR"
    assert "最大次数" in answers[50]["err_code_des"]


def test_an_unpaid_order_cannot_be_refunded(wechat):
    wechat.order()

    answer = _refund(wechat, "R1", 10)

    assert answer["err_code"] == "TRADE_STATE_ERROR"


def test_a_refund_must_name_the_order_amount(wechat):
    _paid(wechat)

    answer = _refund(wechat, "R1", 10, total_fee="99")

    assert answer["err_code"] == "INVALID_REQUEST"


def test_a_refunded_order_queries_as_refund(wechat):
    _paid(wechat)
    _refund(wechat, "R1", 10)

    state = wechat.call("/pay/orderquery", {"out_trade_no": cases.OTN})

    assert state["trade_state"] == "REFUND"


def test_refundquery_of_an_order_without_refunds_is_refundnotexist(wechat):
    _paid(wechat)

    answer = wechat.call("/pay/refundquery", {"out_trade_no": cases.OTN})

    assert answer["err_code"] == "REFUNDNOTEXIST"


def test_the_refund_notify_is_unsigned_and_decrypts_as_wechat_publishes(wechat, stub):
    _paid(wechat)

    _refund(wechat, "R1", 30, notify_url=stub.url + "/refund")
    body = wait_for(lambda: stub.bodies("/refund"))[0]

    outer = rule.parse(body)
    assert "sign" not in outer
    assert outer["appid"] == cases.APPID
    crypto = WeChatRefundCrypto(cases.KEY)
    inner = crypto.decrypt_message(body.decode(), cases.APPID, cases.MCH_ID)
    assert inner["out_trade_no"] == cases.OTN
    assert inner["out_refund_no"] == "R1"
    assert inner["refund_fee"] == "30"
    assert inner["refund_status"] == "SUCCESS"
    assert inner["refund_recv_accout"] == "支付用户零钱"


def test_the_refund_notify_key_is_the_lowercase_hex_md5_of_the_api_key(wechat, stub):
    import base64
    import hashlib

    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher
    from cryptography.hazmat.primitives.ciphers import algorithms
    from cryptography.hazmat.primitives.ciphers import modes

    _paid(wechat)
    _refund(wechat, "R1", 30, notify_url=stub.url + "/refund")
    req_info = rule.parse(wait_for(lambda: stub.bodies("/refund"))[0])["req_info"]

    key = hashlib.md5(cases.KEY.encode()).hexdigest().encode()
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    padded = decryptor.update(base64.b64decode(req_info)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    plain = (unpadder.update(padded) + unpadder.finalize()).decode()
    assert plain.startswith("<root>") and "<out_refund_no><![CDATA[R1]]>" in plain


def _bill(wechat, bill_date, **fields):
    request = {"bill_date": bill_date, "bill_type": "ALL", **fields}
    message = rule.with_sign(
        {
            "appid": cases.APPID,
            "mch_id": cases.MCH_ID,
            "nonce_str": cases.NONCE,
            **request,
        },
        cases.KEY,
    )
    return wechat.client.simulate_post("/pay/downloadbill", body=rule.to_xml(message))


def _parse_bill(text):
    lines = text.splitlines()
    header = lines[0].split(",")
    rows = []
    index = 1
    while not lines[index].startswith("总交易单数"):
        values = next(csv.reader([lines[index]]))
        rows.append(
            dict(zip(header, (v.removeprefix("`") for v in values), strict=True))
        )
        index += 1
    summary_header = lines[index].split(",")
    summary_values = [v.removeprefix("`") for v in lines[index + 1].split(",")]
    return rows, dict(zip(summary_header, summary_values, strict=True))


def test_a_bill_parses_back_to_the_orders_paid_that_day(wechat):
    wechat.order(out_trade_no="BILL000001", total_fee="1234", attach="a")
    first = wechat.pay("BILL000001")
    wechat.order(out_trade_no="BILL000002", total_fee="5")
    second = wechat.pay("BILL000002", coupon_fee=1)
    wechat.order(out_trade_no="BILL000003", total_fee="7")
    bill_date = first["order"]["paid_at"][:10].replace("-", "")
    wechat.control("/control/clock", {"advance": 2 * 86400})

    result = _bill(wechat, bill_date)

    assert result.status_code == 200
    assert "\r\n" in result.text
    for line in result.text.splitlines()[1:]:
        if not line.startswith("总交易单数"):
            assert all(value.startswith("`") for value in line.split(","))
    rows, summary = _parse_bill(result.text)
    by_number = {row["商户订单号"]: row for row in rows}
    assert set(by_number) == {"BILL000001", "BILL000002"}
    assert by_number["BILL000001"]["订单金额"] == "12.34"
    assert by_number["BILL000001"]["微信订单号"] == first["transaction_id"]
    assert by_number["BILL000001"]["交易状态"] == "SUCCESS"
    assert by_number["BILL000002"]["订单金额"] == "0.05"
    assert by_number["BILL000002"]["代金券金额"] == "0.01"
    assert by_number["BILL000002"]["微信订单号"] == second["transaction_id"]
    assert summary["总交易单数"] == "2"
    assert summary["订单总金额"] == "12.39"


def test_a_gzip_bill_is_the_same_text_compressed(wechat):
    wechat.order()
    paid = wechat.pay()
    bill_date = paid["order"]["paid_at"][:10].replace("-", "")
    wechat.control("/control/clock", {"advance": 2 * 86400})

    plain = _bill(wechat, bill_date)
    packed = _bill(wechat, bill_date, tar_type="GZIP")

    assert gzip.decompress(packed.content) == plain.content


def test_a_day_without_a_bill_answers_no_bill_exist(wechat):
    wechat.control("/control/clock", {"advance": 2 * 86400})

    result = _bill(wechat, "20200101")

    answer = rule.parse(result.content)
    assert answer["return_code"] == "FAIL"
    assert answer["return_msg"] == "No Bill Exist"


def test_todays_bill_does_not_exist_yet(wechat):
    wechat.order()
    paid = wechat.pay()
    bill_date = paid["order"]["paid_at"][:10].replace("-", "")

    answer = rule.parse(_bill(wechat, bill_date).content)

    assert answer["return_msg"] == "No Bill Exist"


def test_a_bill_with_refunds_shows_them_in_yuan(wechat):
    wechat.order()
    paid = wechat.pay()
    _refund(wechat, "R1", 25)
    bill_date = paid["order"]["paid_at"][:10].replace("-", "")
    wechat.control("/control/clock", {"advance": 2 * 86400})

    rows, summary = _parse_bill(_bill(wechat, bill_date).text)

    refund = next(row for row in rows if row["交易状态"] == "REFUND")
    assert refund["商户退款单号"] == "R1"
    assert refund["退款金额"] == "0.25"
    assert summary["退款总金额"] == "0.25"
