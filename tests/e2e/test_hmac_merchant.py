"""C06: a merchant configured for HMAC-SHA256, end to end.

A second simulator and service pair, both with
``WXPAY_SIGN_TYPE=HMAC-SHA256``: the service orders with HMAC, so the
simulator signs the notify with a 64-hex HMAC sign and no ``sign_type``,
as WeChat does, and judges the service's mode-1 reply with HMAC too.
"""

import pytest

from tests.e2e.conftest import NOTIFY_OK
from tests.e2e.conftest import notpay_order
from tests.support import cases
from tests.support import rule

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hmac_stack(start_stack):
    with start_stack("HMAC-SHA256") as stack:
        yield stack


def test_an_hmac_notify_without_sign_type_from_wechat_pays_the_order(hmac_stack):
    stack = hmac_stack
    order = notpay_order(stack)

    paid = stack.sim("POST", "/control/pay", {"out_trade_no": order["out_trade_no"]})

    assert paid["ok"], paid
    assert stack.wait_for_status(order["id"])["status"] == "SUCCESS"
    (entry,) = stack.wait_for_log("notify", order["out_trade_no"])
    sent = rule.parse(entry["request"].encode())
    assert "sign_type" not in sent
    assert len(sent["sign"]) == 64
    assert sent["sign"] == rule.sign_hmac(sent, cases.KEY)
    assert entry["accepted"]
    assert entry["reply"] == NOTIFY_OK.decode()


def test_an_hmac_merchants_mode_1_reply_is_accepted_by_wechat(hmac_stack):
    stack = hmac_stack
    checkout = stack.checkout("P002", mode=1)
    since = stack.last_seq()

    scanned = stack.sim("POST", "/control/scan", {"qr": checkout["qr_content"]})

    assert scanned["ok"], scanned
    (callback,) = stack.log("callback", since=since)
    reply = rule.parse(callback["reply"].encode())
    assert reply["sign"] == rule.sign_hmac(reply, cases.KEY)
    paid = stack.sim("POST", "/control/pay", {"out_trade_no": scanned["out_trade_no"]})
    assert paid["ok"], paid
    assert stack.wait_for_status(checkout["id"])["status"] == "SUCCESS"


@pytest.mark.parametrize(
    "signer",
    [
        lambda fields: rule.sign_md5(fields, cases.KEY),
        lambda fields: rule.sign_hmac(fields, cases.KEY)[:40],
    ],
    ids=["MD5 sign, no sign_type", "40-hex sign"],
)
def test_an_hmac_merchant_refuses_a_notify_signed_otherwise(hmac_stack, signer):
    # NOTE(e2e): the decision of tests/unit/test_usecases.py (C06): with
    # no sign_type, only the configured digest is tried.
    stack = hmac_stack
    order = notpay_order(stack)
    fields = stack.notify_for(order)
    before = stack.stored_order(order["out_trade_no"])

    refused = stack.post_xml(
        "/wechatpay/notify", rule.to_xml({**fields, "sign": signer(fields)})
    )

    assert refused.status == 200
    assert refused.xml() == {"return_code": "FAIL", "return_msg": "bad_sign"}
    assert stack.stored_order(order["out_trade_no"]) == before

    accepted = stack.notify(fields, algorithm="HMAC-SHA256")

    assert accepted.data == NOTIFY_OK
    assert stack.stored_order(order["out_trade_no"])["state"] == "SUCCESS"
