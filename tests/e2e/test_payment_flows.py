"""Both Native modes paid end to end, and a payment recorded exactly once.

Everything travels over real HTTP: the test drives the service's JSON
API and the simulator's control API; the simulator calls the service's
mode-1 callback and delivers its notify; the service calls the
simulator's unifiedorder. Only the notifies the test forges itself are
built here, signed with the independent rule of ``tests/support/rule.py``.
"""

import threading
import time
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import NOTIFY_OK
from tests.e2e.conftest import notpay_order
from tests.e2e.conftest import static_product_qr
from tests.e2e.conftest import wait_for_stored_state
from tests.support import cases
from tests.support import rule

pytestmark = pytest.mark.e2e

CALLBACK_REPLY_KEYS = {
    "return_code",
    "appid",
    "mch_id",
    "nonce_str",
    "prepay_id",
    "result_code",
    "sign",
}


def assert_acknowledged_once(entries):
    """The simulator judged the notify as WeChat does, on the first try."""
    assert entries, "the simulator delivered no notify"
    for entry in entries:
        assert entry["accepted"], entry
        assert entry["status"] == 200
        assert entry["reply"] == NOTIFY_OK.decode()
        assert entry["attempt"] == 1


# --- mode 2 -----------------------------------------------------------------


def test_a_mode_2_checkout_is_paid_and_the_notify_acknowledged(stack):
    checkout = stack.checkout("P001", mode=2)
    code_url = checkout["qr_content"]
    assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")

    scanned = stack.sim("POST", "/control/scan", {"qr": code_url})
    assert scanned["ok"], scanned
    assert scanned["mode"] == 2
    assert scanned["out_trade_no"] == checkout["out_trade_no"]
    assert scanned["total_fee"] == checkout["total_fee"] == 100
    paid = stack.sim("POST", "/control/pay", {"out_trade_no": scanned["out_trade_no"]})
    assert paid["ok"], paid

    view = stack.wait_for_status(checkout["id"], "SUCCESS")
    assert view["status"] == "SUCCESS"
    assert view["out_trade_no"] == checkout["out_trade_no"]
    assert view["paid_at"]
    assert_acknowledged_once(stack.wait_for_log("notify", view["out_trade_no"]))
    stored = stack.stored_order(view["out_trade_no"])
    assert stored["state"] == "SUCCESS"
    assert stored["transaction_id"] == paid["transaction_id"]


# --- mode 1 -----------------------------------------------------------------


def test_a_mode_1_checkout_is_ordered_by_the_callback_and_paid(stack):
    checkout = stack.checkout("P002", mode=1)
    qr = checkout["qr_content"]
    assert qr.startswith("weixin://wxpay/bizpayurl?")
    qr_product_id = dict(parse_qsl(urlsplit(qr).query))["product_id"]
    since = stack.last_seq()

    scanned = stack.sim("POST", "/control/scan", {"qr": qr, "openid": cases.OPENID})

    assert scanned["ok"], scanned
    assert scanned["message"] == "确认支付"
    assert scanned["mode"] == 1
    order = scanned["order"]
    assert order["trade_type"] == "NATIVE"
    assert order["product_id"] == qr_product_id
    assert order["total_fee"] == 2590
    assert order["openid"] == cases.OPENID
    (callback,) = stack.log("callback", since=since)
    assert callback["accepted"], callback
    reply = rule.parse(callback["reply"].encode())
    assert set(reply) == CALLBACK_REPLY_KEYS
    assert reply["sign"] == rule.sign_md5(reply, cases.KEY)
    assert reply["prepay_id"] == order["prepay_id"]
    assert stack.view(checkout["id"])["out_trade_no"] == scanned["out_trade_no"]

    paid = stack.sim("POST", "/control/pay", {"out_trade_no": scanned["out_trade_no"]})
    assert paid["ok"], paid
    view = stack.wait_for_status(checkout["id"], "SUCCESS")
    assert view["status"] == "SUCCESS"
    assert view["out_trade_no"] == scanned["out_trade_no"]
    assert_acknowledged_once(stack.wait_for_log("notify", view["out_trade_no"]))

    # The same code scanned once more: WeChat shows the merchant's reason.
    again = stack.sim("POST", "/control/scan", {"qr": qr})
    assert (again["ok"], again["message"]) == (False, "该订单已支付")


def test_a_static_product_code_is_ordered_and_paid(stack):
    scanned = stack.sim(
        "POST", "/control/scan", {"qr": static_product_qr("P001"), "pay": True}
    )

    assert scanned["ok"], scanned
    assert scanned["message"] == "支付成功"
    assert scanned["mode"] == 1
    assert scanned["order"]["product_id"] == "P001"
    assert scanned["order"]["total_fee"] == 100
    stored = wait_for_stored_state(stack, scanned["out_trade_no"], "SUCCESS")
    assert stored["state"] == "SUCCESS"
    assert stored["transaction_id"] == scanned["transaction_id"]
    assert_acknowledged_once(stack.wait_for_log("notify", scanned["out_trade_no"]))


# --- exactly once -----------------------------------------------------------


def send_at_once(stack, fields, copies):
    """POST the same signed notify from ``copies`` threads at one instant."""
    body = rule.to_xml(rule.with_sign(fields, cases.KEY))
    start = threading.Barrier(copies)
    answers = [None] * copies

    def send(n):
        start.wait(timeout=10)
        answers[n] = stack.post_xml("/wechatpay/notify", body)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def paid_lines(stack, out_trade_no):
    return stack.service_log().count(f"order paid out_trade_no={out_trade_no} ")


def duplicate_lines(stack, out_trade_no):
    return stack.service_log().count(f"duplicate notify out_trade_no={out_trade_no}")


@pytest.mark.parametrize("copies", [2, 10])
def test_a_notify_sent_many_times_at_once_pays_the_order_once(stack, copies):
    order = notpay_order(stack)
    fields = stack.notify_for(order)

    answers = send_at_once(stack, fields, copies)

    for answer in answers:
        assert answer is not None
        assert answer.status == 200
        assert answer.data == NOTIFY_OK
    view = stack.view(order["id"])
    stored = stack.stored_order(order["out_trade_no"])
    assert view["status"] == stored["state"] == "SUCCESS"
    assert stored["transaction_id"] == fields["transaction_id"]
    assert stored["time_end"] == fields["time_end"]
    assert view["paid_at"]
    assert stack.wait_for_service_log(paid_lines, order["out_trade_no"]) == 1
    # Every other copy found the payment recorded, none failed or threw.
    assert duplicate_lines(stack, order["out_trade_no"]) == copies - 1

    # C14a: once more, later and alone; nothing moves.
    again = stack.notify(fields)
    assert again.data == NOTIFY_OK
    assert stack.stored_order(order["out_trade_no"]) == stored
    assert stack.view(order["id"])["paid_at"] == view["paid_at"]
    assert paid_lines(stack, order["out_trade_no"]) == 1
    assert duplicate_lines(stack, order["out_trade_no"]) == copies


def test_wechat_delivering_the_notify_twice_at_once_pays_the_order_once(stack):
    order = notpay_order(stack)

    paid = stack.sim(
        "POST",
        "/control/pay",
        {"out_trade_no": order["out_trade_no"], "duplicate": True},
    )

    assert paid["ok"], paid
    until = time.monotonic() + 10
    while time.monotonic() < until:
        entries = stack.log("notify", order["out_trade_no"])
        if len(entries) >= 2:
            break
        time.sleep(0.05)
    assert len(entries) == 2
    assert_acknowledged_once(entries)
    stored = stack.stored_order(order["out_trade_no"])
    assert stored["state"] == "SUCCESS"
    assert stored["transaction_id"] == paid["transaction_id"]
    assert paid_lines(stack, order["out_trade_no"]) == 1
