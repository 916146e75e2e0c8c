"""What every storage adapter promises, checked on each of them.

The in-memory store is the reference; SQLite, PostgreSQL and MariaDB must
behave the same through the ports, concurrency included.
"""

import copy
import threading
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from domain.model import BEIJING
from domain.model import MAX_PRICE_FEN
from domain.model import Checkout
from domain.model import CheckoutMode
from domain.model import Order
from domain.model import Product
from domain.model import TradeState
from domain.money import Fen
from domain.ports import DuplicateKey
from domain.ports import InboundMessage

T0 = datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=BEIJING)
TXN = "4200000000202401010000000001"
THREADS = 8


def an_order(out_trade_no="T20240101000001", **fields):
    values = {
        "out_trade_no": out_trade_no,
        "product_id": "P001",
        "body": "咖啡 Coffee",
        "total_fee": Fen(100),
        "created_at": T0,
        "checkout_id": "ck0000000000000000000001",
    }
    values.update(fields)
    return Order(**values)


def a_checkout(checkout_id="ck0000000000000000000001", **fields):
    values = {
        "id": checkout_id,
        "product_id": "P001",
        "mode": CheckoutMode.CALLBACK,
        "total_fee": Fen(100),
        "created_at": T0,
        "qr_content": "weixin://wxpay/bizpayurl?sign=X&product_id=ck1",
    }
    values.update(fields)
    return Checkout(**values)


def add(uow_factory, *orders):
    with uow_factory() as uow:
        for order in orders:
            uow.orders.add(order)
        uow.commit()


def stored_order(uow_factory, out_trade_no):
    with uow_factory() as uow:
        return uow.orders.get(out_trade_no)


def assert_aware_and_equal(got, expected):
    assert got is not None
    assert got.tzinfo is not None and got.utcoffset() is not None
    assert got == expected


# --- round trips ----------------------------------------------------------


def test_a_product_comes_back_as_saved(uow_factory):
    name = "咖啡 " + "x" * 120
    product = Product("P-001_x", name, Fen(MAX_PRICE_FEN), available=False)

    with uow_factory() as uow:
        uow.products.save(product)
        uow.commit()

    with uow_factory() as uow:
        assert uow.products.get("P-001_x") == product


def test_saving_a_product_again_replaces_it(uow_factory):
    with uow_factory() as uow:
        uow.products.save(Product("P001", "Coffee", Fen(100)))
        uow.commit()

    with uow_factory() as uow:
        uow.products.save(Product("P001", "Tea", Fen(250), available=False))
        uow.commit()

    with uow_factory() as uow:
        assert uow.products.list() == [
            Product("P001", "Tea", Fen(250), available=False)
        ]


def test_products_are_listed_by_id_in_code_point_order(uow_factory):
    ids = ["b", "B", "_a", "a-1", "A_1", "9", "a"]
    with uow_factory() as uow:
        for product_id in ids:
            uow.products.save(Product(product_id, "thing", Fen(1)))
        uow.commit()

    with uow_factory() as uow:
        listed = [product.id for product in uow.products.list()]

    assert listed == sorted(ids)


def test_a_checkout_comes_back_with_every_field(uow_factory):
    checkout = a_checkout(mode=CheckoutMode.CODE_URL, total_fee=Fen(12345))

    with uow_factory() as uow:
        uow.checkouts.add(checkout)
        uow.commit()

    with uow_factory() as uow:
        got = uow.checkouts.get(checkout.id)
    assert got == checkout
    assert got.mode is CheckoutMode.CODE_URL
    assert_aware_and_equal(got.created_at, T0)


def test_a_new_order_keeps_its_empty_and_missing_values(uow_factory):
    order = an_order(checkout_id=None)

    add(uow_factory, order)

    got = stored_order(uow_factory, order.out_trade_no)
    assert got == order
    assert got.checkout_id is None
    assert got.code_expires_at is None and got.paid_at is None
    assert got.transaction_id == "" and got.openid == "" and got.time_end == ""
    assert got.state is TradeState.NOTPAY
    assert_aware_and_equal(got.created_at, T0)


def test_a_paid_order_comes_back_with_every_field(uow_factory):
    order = an_order(openid="oFAKEopenid0000000000000000x", fee_type="CNY")
    order.attach_prepay("wx2024prepay", "weixin://wxpay/bizpayurl?pr=abc", T0)
    paid_at = datetime(2024, 1, 1, 2, 30, 0, 654321, tzinfo=UTC)
    order.mark_paid(TXN, "20240101103000", paid_at)

    add(uow_factory, order)

    got = stored_order(uow_factory, order.out_trade_no)
    assert got == order
    assert got.total_fee == Fen(100)
    assert_aware_and_equal(got.code_expires_at, T0)
    assert_aware_and_equal(got.paid_at, paid_at)


def test_an_unknown_id_reads_as_none(uow_factory):
    with uow_factory() as uow:
        assert uow.products.get("nope") is None
        assert uow.checkouts.get("nope") is None
        assert uow.orders.get("T00000000nope") is None
        assert uow.orders.for_checkout("nope") == []


def test_keys_differing_only_in_case_are_different_orders(uow_factory):
    add(uow_factory, an_order("ABCDEF123"), an_order("abcdef123", body="b"))

    assert stored_order(uow_factory, "ABCDEF123").body == "咖啡 Coffee"
    assert stored_order(uow_factory, "abcdef123").body == "b"


# --- keys and transactions ------------------------------------------------


def test_a_taken_out_trade_no_is_a_duplicate_key(uow_factory):
    add(uow_factory, an_order())

    with pytest.raises(DuplicateKey), uow_factory() as uow:
        uow.orders.add(an_order(body="another"))
        uow.commit()

    assert stored_order(uow_factory, an_order().out_trade_no).body == "咖啡 Coffee"


def test_a_taken_checkout_id_is_a_duplicate_key(uow_factory):
    with uow_factory() as uow:
        uow.checkouts.add(a_checkout())
        uow.commit()

    with pytest.raises(DuplicateKey), uow_factory() as uow:
        uow.checkouts.add(a_checkout(qr_content="other"))
        uow.commit()


def test_leaving_without_commit_forgets_the_changes(uow_factory):
    with uow_factory() as uow:
        uow.products.save(Product("P001", "Coffee", Fen(100)))
        uow.checkouts.add(a_checkout())
        uow.orders.add(an_order())

    with uow_factory() as uow:
        assert uow.products.list() == []
        assert uow.checkouts.get(a_checkout().id) is None
        assert uow.orders.get(an_order().out_trade_no) is None


def test_an_error_inside_the_block_rolls_back(uow_factory):
    with pytest.raises(RuntimeError), uow_factory() as uow:
        uow.orders.add(an_order())
        raise RuntimeError("boom")

    assert stored_order(uow_factory, an_order().out_trade_no) is None


def test_work_after_a_commit_is_a_transaction_of_its_own(uow_factory):
    with uow_factory() as uow:
        uow.orders.add(an_order("T000000001"))
        uow.commit()
        uow.orders.add(an_order("T000000002"))

    assert stored_order(uow_factory, "T000000001") is not None
    assert stored_order(uow_factory, "T000000002") is None


def test_a_unit_of_work_can_be_used_again_after_leaving(uow_factory):
    uow = uow_factory()
    with uow:
        uow.orders.add(an_order())
        uow.commit()

    with uow:
        assert uow.orders.get(an_order().out_trade_no) == an_order()


def test_a_checkouts_orders_come_oldest_first(uow_factory):
    later = T0 + timedelta(microseconds=1)
    add(
        uow_factory,
        an_order("T000000003", created_at=later),
        an_order("T000000002", created_at=T0),
        an_order("T000000001", created_at=later),
        an_order("T000000009", created_at=T0 - timedelta(days=1), checkout_id="ckx"),
        an_order("T000000008", created_at=T0, checkout_id=None),
    )

    with uow_factory() as uow:
        found = uow.orders.for_checkout(an_order().checkout_id)

    assert [order.out_trade_no for order in found] == [
        "T000000002",
        "T000000001",
        "T000000003",
    ]


# --- the compare-and-set --------------------------------------------------


def test_a_save_from_the_expected_state_stores_the_change(uow_factory):
    add(uow_factory, an_order())
    with uow_factory() as uow:
        order = uow.orders.get(an_order().out_trade_no)
        order.mark_paid(TXN, "20240101103000", T0)

        assert uow.orders.save(order, TradeState.NOTPAY) is True
        uow.commit()

    assert stored_order(uow_factory, order.out_trade_no) == order


def test_a_save_that_changes_nothing_still_counts(uow_factory):
    add(uow_factory, an_order())

    with uow_factory() as uow:
        saved = uow.orders.save(an_order(), TradeState.NOTPAY)

    assert saved is True


def test_a_save_from_a_stale_state_returns_false_and_changes_nothing(
    uow_factory,
):
    add(uow_factory, an_order())
    first = stored_order(uow_factory, an_order().out_trade_no)
    second = copy.deepcopy(first)
    first.mark_paid(TXN, "20240101103000", T0)
    with uow_factory() as uow:
        assert uow.orders.save(first, TradeState.NOTPAY) is True
        uow.commit()

    second.mark_closed()
    with uow_factory() as uow:
        saved = uow.orders.save(second, TradeState.NOTPAY)
        uow.commit()

    assert saved is False
    assert stored_order(uow_factory, first.out_trade_no) == first


def test_saving_an_order_that_was_never_added_returns_false(uow_factory):
    with uow_factory() as uow:
        saved = uow.orders.save(an_order(), TradeState.NOTPAY)
        uow.commit()

    assert saved is False
    assert stored_order(uow_factory, an_order().out_trade_no) is None


def test_a_save_left_uncommitted_is_forgotten(uow_factory):
    add(uow_factory, an_order())

    with uow_factory() as uow:
        order = uow.orders.get(an_order().out_trade_no)
        order.mark_closed()
        assert uow.orders.save(order, TradeState.NOTPAY) is True

    assert stored_order(uow_factory, order.out_trade_no).state is TradeState.NOTPAY


def test_unpaid_orders_may_all_lack_a_transaction_id(uow_factory):
    add(uow_factory, an_order("T000000001"), an_order("T000000002"))

    assert stored_order(uow_factory, "T000000001").transaction_id == ""
    assert stored_order(uow_factory, "T000000002").transaction_id == ""


def test_one_transaction_id_cannot_pay_two_orders(uow_factory):
    add(uow_factory, an_order("T000000001"), an_order("T000000002"))
    with uow_factory() as uow:
        first = uow.orders.get("T000000001")
        first.mark_paid(TXN, "20240101103000", T0)
        uow.orders.save(first, TradeState.NOTPAY)
        uow.commit()

    with pytest.raises(DuplicateKey), uow_factory() as uow:
        second = uow.orders.get("T000000002")
        second.mark_paid(TXN, "20240101103000", T0)
        uow.orders.save(second, TradeState.NOTPAY)
        uow.commit()

    assert stored_order(uow_factory, "T000000001") == first
    assert stored_order(uow_factory, "T000000002").state is TradeState.NOTPAY


def test_a_duplicate_transaction_id_on_add_is_a_duplicate_key(uow_factory):
    paid = an_order("T000000001")
    paid.mark_paid(TXN, "20240101103000", T0)
    add(uow_factory, paid)
    other = an_order("T000000002")
    other.mark_paid(TXN, "20240101103000", T0)

    with pytest.raises(DuplicateKey), uow_factory() as uow:
        uow.orders.add(other)
        uow.commit()

    assert stored_order(uow_factory, "T000000002") is None


# --- concurrency ----------------------------------------------------------


def race(uow_factory, attempt):
    """Run ``attempt(index, uow)`` on THREADS threads released at once."""
    barrier = threading.Barrier(THREADS)
    outcomes = [None] * THREADS

    def run(index):
        barrier.wait(timeout=10)
        try:
            outcomes[index] = attempt(index, uow_factory())
        except Exception as error:  # reported by the assertions below
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def paid_by(index, order):
    """Mark ``order`` paid as thread ``index`` would: its own time."""
    order.mark_paid(TXN, f"2024010110{index:02d}00", T0 + timedelta(seconds=index))
    return order


def test_of_concurrent_payments_from_one_read_exactly_one_is_stored(
    uow_factory,
):
    add(uow_factory, an_order())
    snapshot = stored_order(uow_factory, an_order().out_trade_no)
    assert snapshot.state is TradeState.NOTPAY

    def attempt(index, uow):
        order = paid_by(index, copy.deepcopy(snapshot))
        with uow:
            won = uow.orders.save(order, TradeState.NOTPAY)
            uow.commit()
        return won

    outcomes = race(uow_factory, attempt)

    winners = [i for i, outcome in enumerate(outcomes) if outcome is True]
    losers = [o for o in outcomes if o is not True]
    assert len(winners) == 1, outcomes
    assert all(o is False or isinstance(o, DuplicateKey) for o in losers), outcomes
    expected = paid_by(winners[0], copy.deepcopy(snapshot))
    assert stored_order(uow_factory, snapshot.out_trade_no) == expected


def test_of_concurrent_notifies_reading_and_saving_exactly_one_pays(
    uow_factory,
):
    add(uow_factory, an_order())

    def attempt(index, uow):
        # What the notify use case does, each copy in its own transaction.
        with uow:
            order = uow.orders.get(an_order().out_trade_no)
            if order.state is not TradeState.NOTPAY:
                return False
            won = uow.orders.save(paid_by(index, order), TradeState.NOTPAY)
            if won:
                uow.commit()
        return won

    outcomes = race(uow_factory, attempt)

    winners = [i for i, outcome in enumerate(outcomes) if outcome is True]
    assert len(winners) == 1, outcomes
    assert all(o is True or o is False for o in outcomes), outcomes
    stored = stored_order(uow_factory, an_order().out_trade_no)
    assert stored == paid_by(winners[0], an_order())


def test_concurrent_adds_of_one_out_trade_no_keep_exactly_one(uow_factory):
    def attempt(index, uow):
        with uow:
            uow.orders.add(an_order(body=f"copy {index}"))
            uow.commit()
        return True

    outcomes = race(uow_factory, attempt)

    winners = [i for i, outcome in enumerate(outcomes) if outcome is True]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, DuplicateKey) for o in outcomes if o is not True)
    stored = stored_order(uow_factory, an_order().out_trade_no)
    assert stored == replace(an_order(), body=f"copy {winners[0]}")


def an_inbound(verdict="accepted", out_trade_no="T20240101000001", **fields):
    values = {
        "kind": "notify",
        "received_at": T0,
        "verdict": verdict,
        "body": "<xml><a><![CDATA[中文 ]]>]]></a></xml>" + "x" * 20000,
        "out_trade_no": out_trade_no,
        "remote_addr": "203.0.113.7",
        "request_id": "rid-1",
    }
    values.update(fields)
    return InboundMessage(**values)


def test_the_inbound_log_keeps_raw_bodies_newest_first(uow_factory):
    first = an_inbound("bad_sign")
    second = an_inbound("accepted", kind="callback", out_trade_no="")
    with uow_factory() as uow:
        uow.inbound.record(first)
        uow.inbound.record(second)
        uow.commit()

    with uow_factory() as uow:
        everything = uow.inbound.find()
        refused = uow.inbound.find(verdict="bad_sign")
        for_order = uow.inbound.find(out_trade_no="T20240101000001")
        callbacks = uow.inbound.find(kind="callback")

    assert everything == [second, first]
    assert refused == [first]
    assert for_order == [first]
    assert callbacks == [second]
    assert_aware_and_equal(everything[1].received_at, T0)


def add_checkout(uow_factory, checkout):
    with uow_factory() as uow:
        uow.checkouts.add(checkout)
        uow.commit()


def test_a_checkout_is_claimed_by_one_payer_until_the_claim_lapses(uow_factory):
    add_checkout(uow_factory, a_checkout())
    until = T0 + timedelta(hours=2)

    with uow_factory() as uow:
        first = uow.checkouts.claim("ck0000000000000000000001", "oA", T0, until)
        again = uow.checkouts.claim("ck0000000000000000000001", "oA", T0, until)
        other = uow.checkouts.claim("ck0000000000000000000001", "oB", T0, until)
        later = until + timedelta(seconds=1)
        after = uow.checkouts.claim("ck0000000000000000000001", "oB", later, later)
        uow.commit()
    with uow_factory() as uow:
        stored = uow.checkouts.get("ck0000000000000000000001")
        missing = uow.checkouts.claim("ck_nope", "oA", T0, until)

    assert (first, again, other, after, missing) == (True, True, False, True, False)
    assert stored.payer_openid == "oB"
    assert_aware_and_equal(stored.claimed_until, later)


def test_of_payers_claiming_a_checkout_at_once_exactly_one_wins(uow_factory):
    add_checkout(uow_factory, a_checkout())

    def attempt(index, uow):
        with uow:
            won = uow.checkouts.claim(
                "ck0000000000000000000001", f"o{index}", T0, T0 + timedelta(hours=2)
            )
            uow.commit()
            return won

    outcomes = race(uow_factory, attempt)

    assert outcomes.count(True) == 1, outcomes
    assert outcomes.count(False) == THREADS - 1, outcomes


def test_old_inbound_messages_are_pruned(uow_factory):
    old = an_inbound("bad_sign", received_at=T0)
    new = an_inbound("accepted", received_at=T0 + timedelta(days=30))
    with uow_factory() as uow:
        uow.inbound.record(old)
        uow.inbound.record(new)
        uow.commit()

    with uow_factory() as uow:
        removed = uow.inbound.prune(T0 + timedelta(days=1))
        uow.commit()
    with uow_factory() as uow:
        left = uow.inbound.find()

    assert removed == 1
    assert left == [new]


# --- reconciliation -------------------------------------------------------


def placed(out_trade_no, created_at, **fields):
    order = an_order(out_trade_no, created_at=created_at, **fields)
    order.attach_prepay(
        "wx" + out_trade_no, "weixin://wxpay/bizpayurl?pr=x", created_at
    )
    return order


def test_unsettled_orders_are_unpaid_placed_and_older_oldest_first(uow_factory):
    paid = placed("T000000005", T0 - timedelta(hours=3))
    paid.mark_paid(TXN, "20240101070000", T0)
    closed = placed("T000000006", T0 - timedelta(hours=3))
    closed.mark_closed()
    add(
        uow_factory,
        placed("T000000003", T0 - timedelta(minutes=10)),
        placed("T000000002", T0 - timedelta(hours=1)),
        placed("T000000001", T0 - timedelta(minutes=10)),
        placed("T000000004", T0),  # not before the cut
        an_order("T000000007", created_at=T0 - timedelta(hours=2)),  # no prepay
        paid,
        closed,
    )

    with uow_factory() as uow:
        found = uow.orders.unsettled(T0, limit=10)
        first_two = uow.orders.unsettled(T0, limit=2)

    assert [order.out_trade_no for order in found] == [
        "T000000002",
        "T000000001",
        "T000000003",
    ]
    assert found[0] == placed("T000000002", T0 - timedelta(hours=1))
    assert [order.out_trade_no for order in first_two] == [
        "T000000002",
        "T000000001",
    ]


def test_a_query_is_claimed_once_per_quiet_period(uow_factory):
    add(uow_factory, placed("T000000001", T0))
    later = T0 + timedelta(seconds=31)

    with uow_factory() as uow:
        first = uow.orders.claim_query("T000000001", T0, T0 - timedelta(seconds=30))
        again = uow.orders.claim_query("T000000001", T0, T0 - timedelta(seconds=30))
        after = uow.orders.claim_query("T000000001", later, T0 + timedelta(seconds=1))
        missing = uow.orders.claim_query("T_nope_0001", T0, T0)
        uow.commit()

    assert (first, again, after, missing) == (True, False, True, False)
    assert_aware_and_equal(stored_order(uow_factory, "T000000001").queried_at, later)


def test_a_query_is_never_claimed_for_a_settled_order(uow_factory):
    order = placed("T000000001", T0)
    order.mark_closed()
    add(uow_factory, order)

    with uow_factory() as uow:
        claimed = uow.orders.claim_query("T000000001", T0, T0)
        uow.commit()

    assert claimed is False
    assert stored_order(uow_factory, "T000000001").queried_at is None


def test_of_pages_claiming_one_query_at_once_exactly_one_wins(uow_factory):
    add(uow_factory, placed("T000000001", T0))

    def attempt(index, uow):
        with uow:
            won = uow.orders.claim_query("T000000001", T0, T0 - timedelta(seconds=30))
            uow.commit()
            return won

    outcomes = race(uow_factory, attempt)

    assert outcomes.count(True) == 1, outcomes
    assert outcomes.count(False) == THREADS - 1, outcomes
