"""Reconciliation end to end: the simulator, gunicorn and ``wxpay reconcile``.

A notify that never arrives (the simulator drops every delivery) still
ends with the order paid, through ``wxpay reconcile`` or through the
checkout page asking WeChat itself; an abandoned order is closed.

NOTE(e2e): two clocks are in play. WeChat's rules (5 minutes before
closeorder, the code's 2 hours) run on the simulator's clock, which the
test advances through the control API. The service's own rules (an
order's age, its code_expires_at) run on the real clock, which nothing
can advance: so the test moves those orders into the past directly in
the service's database, and runs ``wxpay reconcile --older-than 0``.
The simulator never sees that change; each side judges by its own time.
"""

import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import update

from adapters.sqlalchemy_store import create_engine_for
from adapters.sqlalchemy_tables import orders
from tests.e2e.conftest import notpay_order
from tests.support.service import merchant_env
from tests.support.service import wxpay

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(start_stack):
    """A stack of its own: the faults and clock moves here are global."""
    with start_stack("MD5") as stack:
        yield stack


@pytest.fixture
def notifies_dropped(stack):
    stack.sim("POST", "/control/faults", {"kind": "drop_notify", "count": 20})
    yield
    stack.sim("DELETE", "/control/faults")


def run_reconcile(stack, *args):
    env = merchant_env(
        stack.simulator.url, stack.url, stack.database_url, stack.sign_type
    )
    return wxpay("reconcile", *args, env=env).splitlines()


def backdate(stack, out_trade_no, *, placed_ago, code_expired_ago=None):
    """Move an order's times into the past, in the service's database."""
    now = datetime.now(UTC)
    values = {"created_at": now - placed_ago}
    if code_expired_ago is not None:
        values["code_expires_at"] = now - code_expired_ago
    engine = create_engine_for(stack.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(orders)
                .where(orders.c.out_trade_no == out_trade_no)
                .values(**values)
            )
    finally:
        engine.dispose()


def pay_with_notify_dropped(stack):
    """A mode-2 order paid at the simulator whose notify did not arrive."""
    checkout = notpay_order(stack)
    out_trade_no = checkout["out_trade_no"]
    paid = stack.sim(
        "POST", "/control/scan", {"qr": checkout["qr_content"], "pay": True}
    )
    assert paid["ok"], paid
    until = time.monotonic() + 10
    while not stack.log("notify", out_trade_no) and time.monotonic() < until:
        time.sleep(0.05)
    entries = stack.log("notify", out_trade_no)
    assert entries and not any(entry["accepted"] for entry in entries), entries
    assert stack.view(checkout["id"])["status"] == "NOTPAY"
    return checkout, paid["transaction_id"]


def test_a_paid_order_whose_notifies_are_all_dropped_is_reconciled(
    stack, notifies_dropped
):
    checkout, transaction_id = pay_with_notify_dropped(stack)
    out_trade_no = checkout["out_trade_no"]

    lines = run_reconcile(stack, "--older-than", "0")

    assert f"{out_trade_no} NOTPAY -> SUCCESS paid at WeChat" in lines
    stored = stack.stored_order(out_trade_no)
    assert stored["state"] == "SUCCESS"
    assert stored["transaction_id"] == transaction_id
    view = stack.view(checkout["id"])
    assert view["status"] == "SUCCESS"
    assert view["paid_at"]
    # Recorded by the reconcile process; the service never heard of it.
    assert stack.service_log().count(f"order paid out_trade_no={out_trade_no} ") == 0
    # Run again: nothing left to do for this order.
    assert not [
        line
        for line in run_reconcile(stack, "--older-than", "0")
        if out_trade_no in line
    ]


def test_a_checkout_page_whose_notify_is_late_asks_wechat_itself(
    stack, notifies_dropped
):
    checkout, transaction_id = pay_with_notify_dropped(stack)
    out_trade_no = checkout["out_trade_no"]
    backdate(stack, out_trade_no, placed_ago=timedelta(minutes=3))

    view = stack.view(checkout["id"])

    assert view["status"] == "SUCCESS"
    assert stack.stored_order(out_trade_no)["transaction_id"] == transaction_id
    assert (
        f"order paid out_trade_no={out_trade_no} transaction_id={transaction_id}"
        in stack.service_log()
    )


def test_abandoned_orders_are_closed_on_both_sides(start_stack):
    # A stack of its own: WeChat's clock only moves forward, and once two
    # hours ahead, the simulator refuses new orders' time_expire.
    with start_stack("MD5") as stack:
        expiring = notpay_order(stack)["out_trade_no"]
        closing = notpay_order(stack)["out_trade_no"]
        for out_trade_no in (expiring, closing):
            backdate(
                stack,
                out_trade_no,
                placed_ago=timedelta(hours=2, minutes=10),
                code_expired_ago=timedelta(minutes=10),
            )

        # WeChat's own clock says these orders are a moment old:
        # closeorder is refused, and the order is left for the next run.
        (early,) = run_reconcile(stack, "--out-trade-no", closing)
        assert early == f"{closing} NOTPAY -> NOTPAY closeorder failed: INVALID_REQUEST"

        # Past WeChat's 5 minutes, but within the code's 2 hours: WeChat
        # still says NOTPAY, so the order is closed with closeorder.
        stack.sim("POST", "/control/clock", {"advance": 400})
        (closed,) = run_reconcile(stack, "--out-trade-no", closing)
        assert closed == f"{closing} NOTPAY -> CLOSED closed unpaid after expiry"
        assert stack.sim("GET", f"/control/orders/{closing}")["trade_state"] == (
            "CLOSED"
        )

        # Past the code's 2 hours WeChat closed the other one itself.
        stack.sim("POST", "/control/clock", {"advance": 7300})
        lines = run_reconcile(stack, "--older-than", "0")
        assert lines == [f"{expiring} NOTPAY -> CLOSED CLOSED at WeChat"]

        for out_trade_no in (expiring, closing):
            assert stack.stored_order(out_trade_no)["state"] == "CLOSED"
