"""The reconciler and the self-healing checkout page, over the in-memory
store and a scripted gateway."""

import logging
from datetime import timedelta

import pytest

from adapters.memory import InMemoryStore
from adapters.memory import InMemoryUnitOfWork
from domain import reconcile as rec
from domain import usecases
from domain.model import CODE_LIFETIME
from domain.model import Checkout
from domain.model import CheckoutMode
from domain.model import Order
from domain.model import Product
from domain.model import TradeState
from domain.money import Fen
from domain.ports import BadResponseSignature
from domain.ports import OrderAlreadyPaid
from domain.ports import OrderClosed
from domain.ports import OrderNotFound
from domain.ports import OrderStatus
from domain.ports import StorageUnavailable
from domain.ports import WeChatRejected
from domain.ports import WeChatUnavailable
from domain.usecases import NotifyVerdict
from tests.support import cases
from tests.support import rule
from tests.support.cases import merchant
from tests.support.fakes import BrokenUnitOfWork
from tests.support.fakes import FakeGateway
from tests.support.fakes import FixedClock

TXN = "4200000000202401010000000001"
TIME_END = "20240101100500"
OTN = "20240101095000ABCDEFGHIJ"
CHECKOUT = "ck0000000000000000000001"


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def gateway():
    return FakeGateway()


@pytest.fixture
def store():
    return InMemoryStore()


def place(store, clock, out_trade_no=OTN, *, age=timedelta(minutes=10), **fields):
    """An order placed with WeChat ``age`` ago, its code valid 2 hours."""
    created_at = clock.now() - age
    order = Order(
        out_trade_no=out_trade_no,
        product_id="P001",
        body="Green tea",
        total_fee=Fen(100),
        created_at=created_at,
        checkout_id=CHECKOUT,
        **fields,
    )
    order.attach_prepay(
        "wx_prepay_" + out_trade_no,
        "weixin://wxpay/bizpayurl?pr=x",
        created_at + CODE_LIFETIME,
    )
    with InMemoryUnitOfWork(store) as uow:
        uow.orders.add(order)
        uow.commit()
    return order


def stored(store, out_trade_no=OTN):
    with InMemoryUnitOfWork(store) as uow:
        return uow.orders.get(out_trade_no)


def paid(out_trade_no=OTN, state="SUCCESS", **overrides):
    values = {
        "out_trade_no": out_trade_no,
        "trade_state": state,
        "total_fee": Fen(100),
        "transaction_id": TXN,
        "time_end": TIME_END,
    }
    values.update(overrides)
    return OrderStatus(**values)


def status(state, out_trade_no=OTN):
    return OrderStatus(out_trade_no, state, Fen(100), "", "")


def reconcile_one(store, gateway, clock, out_trade_no=OTN, **options):
    return rec.reconcile_order(
        InMemoryUnitOfWork(store), gateway, merchant(), clock, out_trade_no, **options
    )


def run(store, gateway, clock, **options):
    return rec.reconcile(
        InMemoryUnitOfWork(store), gateway, merchant(), clock, **options
    )


def notify_for(store, clock, transaction_id=TXN):
    fields = cases.paid_notify(
        out_trade_no=OTN,
        total_fee="100",
        cash_fee="100",
        transaction_id=transaction_id,
        time_end=TIME_END,
    )
    return usecases.handle_payment_notify(
        InMemoryUnitOfWork(store), merchant(), clock, rule.with_sign(fields, cases.KEY)
    )


# --- paid at WeChat -------------------------------------------------------


def test_an_order_paid_at_wechat_is_recorded_with_its_transaction(
    store, gateway, clock, caplog
):
    place(store, clock)
    gateway.answer_query(OTN, paid())
    caplog.set_level(logging.INFO)

    outcome = reconcile_one(store, gateway, clock)

    assert outcome == rec.ReconcileOutcome(
        OTN, TradeState.NOTPAY, TradeState.SUCCESS, "paid at WeChat"
    )
    order = stored(store)
    assert order.state is TradeState.SUCCESS
    assert (order.transaction_id, order.time_end) == (TXN, TIME_END)
    assert order.paid_at == clock.now()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert [line for line in lines if "order paid" in line] == [
        f"order paid out_trade_no={OTN} transaction_id={TXN} total_fee=100"
        " source=orderquery"
    ]
    assert gateway.closes == []


def test_a_late_notify_after_reconciliation_is_a_duplicate(store, gateway, clock):
    place(store, clock)
    gateway.answer_query(OTN, paid())
    reconcile_one(store, gateway, clock)

    outcome = notify_for(store, clock)

    assert outcome.verdict is NotifyVerdict.DUPLICATE


def test_a_payment_recorded_meanwhile_by_the_notify_is_reported_not_redone(
    store, gateway, clock
):
    place(store, clock)

    def notify_first():
        assert notify_for(store, clock).verdict is NotifyVerdict.ACCEPTED
        return paid()

    gateway.answer_query(OTN, notify_first)

    outcome = reconcile_one(store, gateway, clock)

    assert (outcome.before, outcome.after) == (TradeState.NOTPAY, TradeState.SUCCESS)
    assert outcome.reason == "paid, recorded meanwhile"
    assert stored(store).transaction_id == TXN


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"total_fee": Fen(1)}, "mismatch: total_fee 1 != order 100"),
        ({"total_fee": None}, "mismatch: total_fee"),
        ({"fee_type": "USD"}, "mismatch: fee_type"),
        ({"transaction_id": ""}, "mismatch: transaction_id or time_end"),
        ({"transaction_id": "x" * 33}, "mismatch: transaction_id or time_end"),
        ({"time_end": "2024-01-01"}, "mismatch: transaction_id or time_end"),
    ],
)
def test_a_payment_that_does_not_match_the_order_is_an_alert_not_a_payment(
    store, gateway, clock, caplog, overrides, reason
):
    place(store, clock)
    gateway.answer_query(OTN, paid(**overrides))

    outcome = reconcile_one(store, gateway, clock)

    assert outcome == rec.ReconcileOutcome(
        OTN, TradeState.NOTPAY, TradeState.NOTPAY, reason
    )
    assert stored(store).state is TradeState.NOTPAY
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"reconcile refused payment out_trade_no={OTN}" in errors[0].getMessage()


def test_another_transaction_reported_meanwhile_is_a_conflict_alert(
    store, gateway, clock, caplog
):
    place(store, clock)

    def notify_first():
        notify_for(store, clock)  # paid with TXN
        return paid(transaction_id="4200000000202401010000000002")

    gateway.answer_query(OTN, notify_first)

    outcome = reconcile_one(store, gateway, clock)

    assert outcome.after is TradeState.SUCCESS
    assert outcome.reason.startswith("conflict: order is SUCCESS")
    assert stored(store).transaction_id == TXN
    assert "reconcile refused payment" in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_an_order_paid_by_its_notify_is_not_asked_about_again(store, gateway, clock):
    place(store, clock)
    notify_for(store, clock)

    outcome = reconcile_one(store, gateway, clock)

    assert outcome.reason == "settled already"
    assert gateway.queries == []


def test_an_order_refunded_at_wechat_was_paid_and_is_recorded(
    store, gateway, clock, caplog
):
    place(store, clock)
    gateway.answer_query(OTN, paid(state="REFUND"))

    outcome = reconcile_one(store, gateway, clock)

    assert outcome.after is TradeState.SUCCESS
    assert stored(store).transaction_id == TXN
    assert "paid order refunded at WeChat" in caplog.text


# --- closed or failed at WeChat -------------------------------------------


@pytest.mark.parametrize(
    ("trade_state", "after"),
    [
        ("CLOSED", TradeState.CLOSED),
        ("REVOKED", TradeState.CLOSED),
        ("PAYERROR", TradeState.PAYERROR),
    ],
)
def test_a_final_state_at_wechat_moves_the_order_there(
    store, gateway, clock, caplog, trade_state, after
):
    place(store, clock)
    gateway.answer_query(OTN, status(trade_state))
    caplog.set_level(logging.INFO)

    outcome = reconcile_one(store, gateway, clock)

    assert outcome == rec.ReconcileOutcome(
        OTN, TradeState.NOTPAY, after, f"{trade_state} at WeChat"
    )
    assert stored(store).state is after
    assert (
        f"order reconciled out_trade_no={OTN} before=NOTPAY after={after.value}"
        in caplog.text
    )
    assert gateway.closes == []


def test_a_notify_that_wins_the_race_with_a_close_is_kept(store, gateway, clock):
    place(store, clock)

    def paid_meanwhile():
        notify_for(store, clock)
        return status("CLOSED")  # an impossible answer, to force the race

    gateway.answer_query(OTN, paid_meanwhile)

    outcome = reconcile_one(store, gateway, clock)

    assert outcome.after is TradeState.SUCCESS
    assert outcome.reason == "SUCCESS meanwhile"
    assert stored(store).state is TradeState.SUCCESS


# --- still unpaid: wait, or close -----------------------------------------


@pytest.mark.parametrize("trade_state", ["NOTPAY", "USERPAYING", "ACCEPT"])
def test_an_order_still_payable_is_left_and_not_closed(
    store, gateway, clock, trade_state
):
    place(store, clock)
    gateway.answer_query(OTN, status(trade_state))

    outcome = reconcile_one(store, gateway, clock)

    assert not outcome.changed
    assert outcome.reason == f"{trade_state} at WeChat"
    assert gateway.closes == []


def test_an_unpaid_order_whose_code_expired_is_closed(store, gateway, clock, caplog):
    place(store, clock, age=CODE_LIFETIME + timedelta(minutes=1))
    caplog.set_level(logging.INFO)

    outcome = reconcile_one(store, gateway, clock)

    assert gateway.closes == [OTN]
    assert outcome == rec.ReconcileOutcome(
        OTN, TradeState.NOTPAY, TradeState.CLOSED, "closed unpaid after expiry"
    )
    assert stored(store).state is TradeState.CLOSED
    assert "order reconciled" in caplog.text


def test_an_order_younger_than_5_minutes_is_never_closed(store, gateway, clock):
    # A code that expired early (however it happened) still waits for
    # WeChat's 5 minutes before closeorder.
    order = place(store, clock, age=timedelta(minutes=4))
    with InMemoryUnitOfWork(store) as uow:
        order.code_expires_at = clock.now() - timedelta(seconds=1)
        uow.orders.save(order, TradeState.NOTPAY)
        uow.commit()

    outcome = reconcile_one(store, gateway, clock)

    assert not outcome.changed
    assert gateway.closes == []


def test_without_close_an_expired_order_is_only_asked_about(store, gateway, clock):
    place(store, clock, age=CODE_LIFETIME + timedelta(minutes=1))

    outcome = reconcile_one(store, gateway, clock, close=False)

    assert not outcome.changed
    assert gateway.closes == []


def test_an_order_paid_just_before_its_close_is_recorded(store, gateway, clock):
    place(store, clock, age=CODE_LIFETIME + timedelta(minutes=1))
    gateway.answer_query(OTN, status("NOTPAY"), paid())
    gateway.answer_close(OTN, OrderAlreadyPaid("ORDERPAID", err_code="ORDERPAID"))

    outcome = reconcile_one(store, gateway, clock)

    assert gateway.queries == [OTN, OTN]
    assert outcome.after is TradeState.SUCCESS
    assert stored(store).transaction_id == TXN


def test_orderpaid_on_close_then_no_payment_leaves_the_order(store, gateway, clock):
    place(store, clock, age=CODE_LIFETIME + timedelta(minutes=1))
    gateway.answer_close(OTN, OrderAlreadyPaid("ORDERPAID", err_code="ORDERPAID"))

    outcome = reconcile_one(store, gateway, clock)

    assert not outcome.changed
    assert outcome.reason == "ORDERPAID, then NOTPAY"


def test_orderpaid_on_close_then_wechat_down_leaves_the_order(store, gateway, clock):
    place(store, clock, age=CODE_LIFETIME + timedelta(minutes=1))
    gateway.answer_query(OTN, status("NOTPAY"), WeChatUnavailable("timeout"))
    gateway.answer_close(OTN, OrderAlreadyPaid("ORDERPAID", err_code="ORDERPAID"))

    outcome = reconcile_one(store, gateway, clock)

    assert not outcome.changed
    assert stored(store).state is TradeState.NOTPAY


def test_an_order_wechat_already_closed_is_marked_closed(store, gateway, clock):
    place(store, clock, age=CODE_LIFETIME + timedelta(minutes=1))
    gateway.answer_close(OTN, OrderClosed("ORDERCLOSED", err_code="ORDERCLOSED"))

    outcome = reconcile_one(store, gateway, clock)

    assert outcome.after is TradeState.CLOSED
    assert outcome.reason == "ORDERCLOSED at WeChat"


@pytest.mark.parametrize(
    "error",
    [
        OrderNotFound("ORDERNOTEXIST", err_code="ORDERNOTEXIST"),
        WeChatUnavailable("timeout"),
        WeChatRejected("INVALID_REQUEST", err_code="INVALID_REQUEST"),
    ],
)
def test_a_close_that_fails_leaves_the_order_unpaid(store, gateway, clock, error):
    place(store, clock, age=CODE_LIFETIME + timedelta(minutes=1))
    gateway.answer_close(OTN, error)

    outcome = reconcile_one(store, gateway, clock)

    assert not outcome.changed
    assert stored(store).state is TradeState.NOTPAY


# --- WeChat failing, or nothing to ask ------------------------------------


@pytest.mark.parametrize(
    ("error", "level", "reason"),
    [
        (
            OrderNotFound("ORDERNOTEXIST", err_code="ORDERNOTEXIST"),
            logging.WARNING,
            "ORDERNOTEXIST at WeChat, left",
        ),
        (
            WeChatUnavailable("timeout"),
            logging.WARNING,
            "WeChat unavailable, left for the next run",
        ),
        (
            BadResponseSignature("bad sign"),
            logging.ERROR,
            "orderquery failed: BadResponseSignature",
        ),
    ],
)
def test_a_query_that_fails_leaves_the_order_as_it_is(
    store, gateway, clock, caplog, error, level, reason
):
    place(store, clock, age=CODE_LIFETIME + timedelta(minutes=1))
    gateway.answer_query(OTN, error)

    outcome = reconcile_one(store, gateway, clock)

    assert outcome == rec.ReconcileOutcome(
        OTN, TradeState.NOTPAY, TradeState.NOTPAY, reason
    )
    assert stored(store).state is TradeState.NOTPAY
    assert gateway.closes == []
    (record,) = [r for r in caplog.records if r.name == "domain.reconcile"]
    assert record.levelno == level


def test_an_unknown_trade_state_is_left_with_a_warning(store, gateway, clock, caplog):
    place(store, clock)
    gateway.answer_query(OTN, status("SOMETHING_NEW"))

    outcome = reconcile_one(store, gateway, clock)

    assert not outcome.changed
    assert "trade_state=SOMETHING_NEW" in caplog.text


def test_orders_not_to_ask_about_are_left_without_a_call(store, gateway, clock):
    place(store, clock, "T0000000PAID")
    with InMemoryUnitOfWork(store) as uow:
        order = uow.orders.get("T0000000PAID")
        order.mark_paid(TXN, TIME_END, clock.now())
        uow.orders.save(order, TradeState.NOTPAY)
        uow.orders.add(
            Order("T00000NEVER", "P001", "Tea", Fen(100), clock.now())  # no prepay
        )
        uow.commit()

    outcomes = [
        reconcile_one(store, gateway, clock, number)
        for number in ("T0000000PAID", "T00000NEVER", "T000000NONE")
    ]

    assert [(o.before, o.after, o.reason) for o in outcomes] == [
        (TradeState.SUCCESS, TradeState.SUCCESS, "settled already"),
        (TradeState.NOTPAY, TradeState.NOTPAY, "never placed with WeChat"),
        (None, None, "no such order"),
    ]
    assert gateway.queries == []


# --- a run ------------------------------------------------------------------


def test_a_run_settles_older_orders_oldest_first_and_goes_on_past_failures(
    store, gateway, clock
):
    place(store, clock, "T000000001", age=timedelta(minutes=30))
    place(store, clock, "T000000002", age=timedelta(minutes=20))
    place(store, clock, "T000000003", age=timedelta(minutes=10))
    place(store, clock, "T000000004", age=timedelta(minutes=2))  # too young
    gateway.answer_query("T000000001", WeChatUnavailable("timeout"))
    gateway.answer_query("T000000002", paid("T000000002"))
    gateway.answer_query("T000000003", status("CLOSED", "T000000003"))

    outcomes = run(store, gateway, clock)

    assert [(o.out_trade_no, o.after) for o in outcomes] == [
        ("T000000001", TradeState.NOTPAY),
        ("T000000002", TradeState.SUCCESS),
        ("T000000003", TradeState.CLOSED),
    ]
    assert gateway.queries == ["T000000001", "T000000002", "T000000003"]


def test_a_run_takes_at_most_limit_orders(store, gateway, clock):
    for n in range(1, 5):
        place(store, clock, f"T00000000{n}", age=timedelta(minutes=10 * n))

    outcomes = run(store, gateway, clock, older_than=timedelta(0), limit=2)

    assert [o.out_trade_no for o in outcomes] == ["T000000004", "T000000003"]


def test_a_run_over_a_broken_store_fails(gateway, clock):
    with pytest.raises(StorageUnavailable):
        rec.reconcile(BrokenUnitOfWork(), gateway, merchant(), clock)


# --- the checkout page heals itself ---------------------------------------


@pytest.fixture
def checkout(store, clock):
    with InMemoryUnitOfWork(store) as uow:
        uow.products.save(Product("P001", "Green tea", Fen(100)))
        uow.checkouts.add(
            Checkout(CHECKOUT, "P001", CheckoutMode.CODE_URL, Fen(100), clock.now())
        )
        uow.commit()
    return CHECKOUT


def follow(store, gateway, clock, checkout_id=CHECKOUT):
    return usecases.follow_checkout(
        InMemoryUnitOfWork(store), gateway, merchant(), clock, checkout_id
    )


def test_a_page_whose_notify_is_late_asks_wechat_and_turns_paid(
    store, gateway, clock, checkout
):
    place(store, clock, age=rec.HEAL_AFTER)
    gateway.answer_query(OTN, paid())

    view = follow(store, gateway, clock)

    assert view.status == "SUCCESS"
    assert view.paid_at == clock.now()
    assert gateway.queries == [OTN]


def test_a_young_order_is_not_asked_about(store, gateway, clock, checkout):
    place(store, clock, age=rec.HEAL_AFTER - timedelta(seconds=1))

    view = follow(store, gateway, clock)

    assert view.status == "NOTPAY"
    assert gateway.queries == []


def test_pages_polling_ask_wechat_once_per_quiet_period(
    store, gateway, clock, checkout
):
    place(store, clock)

    for _ in range(5):
        follow(store, gateway, clock)
    clock.moment += rec.QUERY_QUIET
    follow(store, gateway, clock)
    clock.moment += timedelta(seconds=1)
    follow(store, gateway, clock)

    assert gateway.queries == [OTN, OTN]


def test_wechat_failing_still_answers_the_stored_state(store, gateway, clock, checkout):
    place(store, clock)
    gateway.fail_with(WeChatUnavailable("deadline passed", api="orderquery"))

    view = follow(store, gateway, clock)

    assert view.status == "NOTPAY"
    assert view.out_trade_no == OTN
    assert gateway.queries == [OTN]


def test_a_page_never_closes_an_expired_order(store, gateway, clock, checkout):
    place(store, clock, age=CODE_LIFETIME + timedelta(minutes=1))

    view = follow(store, gateway, clock)

    assert view.status == "NOTPAY"
    assert gateway.closes == []
