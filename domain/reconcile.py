"""Reconciliation: ask WeChat about orders whose notify never came.

WeChat does not promise that a notify arrives (it may be dropped, sent to
a wrong URL, or given up after a day of retries), so an order left NOTPAY
is asked about with orderquery and settled by what WeChat says: paid
(recorded with the notify's own rules), closed, or failed. An order
nobody paid is closed once its code has expired, no sooner than 5 minutes
after it was placed, as WeChat asks (reference §6.2, §9b item 7).

No transaction is held across a call to WeChat: each order is read, then
WeChat is asked, then the answer is stored by compare-and-set, so a
notify arriving meanwhile is never overwritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from domain.merchant import Merchant
from domain.model import Order
from domain.model import TradeState
from domain.payments import Payment
from domain.payments import PaymentVerdict
from domain.payments import record_payment
from domain.ports import BadResponseSignature
from domain.ports import Clock
from domain.ports import GatewayError
from domain.ports import OrderAlreadyPaid
from domain.ports import OrderClosed
from domain.ports import OrderNotFound
from domain.ports import OrderStatus
from domain.ports import PaymentGateway
from domain.ports import UnitOfWork
from domain.ports import WeChatUnavailable

log = logging.getLogger(__name__)

# WeChat's advice: query orders still unpaid some minutes after ordering.
RECONCILE_AFTER = timedelta(minutes=5)
DEFAULT_LIMIT = 100
# WeChat refuses closeorder within 5 minutes of placing the order.
CLOSE_AFTER = timedelta(minutes=5)
# A checkout page asks WeChat itself about an order this old, at most
# once per QUERY_QUIET whatever the number of pages and processes.
HEAL_AFTER = timedelta(minutes=2)
QUERY_QUIET = timedelta(seconds=30)

_PAID = frozenset({"SUCCESS", "REFUND"})
# NOTE(reconcile): REVOKED belongs to micropay; were a Native order ever
# reported so, it can no longer be paid, which is what CLOSED means here.
_CLOSED = frozenset({"CLOSED", "REVOKED"})
# Not final: the payer is paying right now; ask again next run.
_IN_PROGRESS = frozenset({"NOTPAY", "USERPAYING", "ACCEPT"})


@dataclass(frozen=True)
class ReconcileOutcome:
    """One order's state before and after, and why.

    ``before`` and ``after`` are None only for an order that does not
    exist here.
    """

    out_trade_no: str
    before: TradeState | None
    after: TradeState | None
    reason: str

    @property
    def changed(self) -> bool:
        """True when the order's state is not what it was."""
        return self.before is not self.after


def reconcile(
    uow: UnitOfWork,
    gateway: PaymentGateway,
    merchant: Merchant,
    clock: Clock,
    *,
    older_than: timedelta = RECONCILE_AFTER,
    limit: int = DEFAULT_LIMIT,
) -> list[ReconcileOutcome]:
    """Reconcile the oldest unpaid orders placed more than ``older_than`` ago.

    Each is settled by :func:`reconcile_order`; WeChat failing for one
    leaves that one for the next run and goes on with the others.

    Raises:
        StorageUnavailable: the store failed; the run stops there.
    """
    now = clock.now()
    with uow:
        due = uow.orders.unsettled(now - older_than, limit)
    # TODO(reconcile): an order WeChat keeps answering NOTPAY (its code
    # still valid) or ORDERNOTEXIST is asked again every run and, oldest
    # first, stays ahead of newer ones; with more than `limit` of those,
    # newer orders wait. Order the scan by queried_at if that is seen.
    outcomes = [
        reconcile_order(uow, gateway, merchant, clock, order.out_trade_no)
        for order in due
    ]
    log.info(
        "reconcile run orders=%d changed=%d",
        len(outcomes),
        sum(outcome.changed for outcome in outcomes),
    )
    return outcomes


def reconcile_order(
    uow: UnitOfWork,
    gateway: PaymentGateway,
    merchant: Merchant,
    clock: Clock,
    out_trade_no: str,
    *,
    close: bool = True,
) -> ReconcileOutcome:
    """Settle one unpaid order by what WeChat says about it.

    SUCCESS (or REFUND: it was paid) records the payment with the
    notify's rules, so an amount that does not match is an ERROR alert,
    not a payment; CLOSED, REVOKED and PAYERROR move the order there;
    NOTPAY closes it when its code has expired and it is at least 5
    minutes old (``close=False`` never closes). WeChat failing leaves the
    order as it is, for the next run. An order that is not NOTPAY, or
    was never placed with WeChat, is left without asking.

    Args:
        merchant: whose order it is; the gateway already signs as this
            merchant, so the rules do not need it today.

    Raises:
        StorageUnavailable: the store failed.
    """
    with uow:
        order = uow.orders.get(out_trade_no)
    if order is None:
        return ReconcileOutcome(out_trade_no, None, None, "no such order")
    if order.state is not TradeState.NOTPAY:
        return _unchanged(order, "settled already")
    if not order.prepay_id:
        return _unchanged(order, "never placed with WeChat")

    try:
        status = gateway.query_order(out_trade_no)
    except GatewayError as error:
        return _left(order, "orderquery", error)

    trade_state = status.trade_state
    if trade_state in _PAID:
        return _record(uow, clock, order, status)
    if trade_state in _CLOSED:
        reason = f"{trade_state} at WeChat"
        return _settle(uow, order, TradeState.CLOSED, reason)
    if trade_state == "PAYERROR":
        return _settle(uow, order, TradeState.PAYERROR, "PAYERROR at WeChat")
    if trade_state not in _IN_PROGRESS:
        log.warning(
            "reconcile unknown trade_state out_trade_no=%s trade_state=%s",
            out_trade_no,
            trade_state,
        )
        return _unchanged(order, f"{trade_state} at WeChat, not understood")
    abandoned = close and _abandoned(order, clock.now())
    if trade_state != "NOTPAY" or not abandoned:
        return _unchanged(order, f"{trade_state} at WeChat")
    return _close(uow, gateway, clock, order)


def is_worth_asking(order: Order, now: datetime) -> bool:
    """True when a page should ask WeChat about this unpaid order.

    It is NOTPAY, placed with WeChat at least ``HEAL_AFTER`` ago (its
    notify is late), and nobody asked within ``QUERY_QUIET``.
    """
    return (
        order.state is TradeState.NOTPAY
        and bool(order.prepay_id)
        and order.created_at <= now - HEAL_AFTER
        and (order.queried_at is None or order.queried_at < now - QUERY_QUIET)
    )


def refresh_order(
    uow: UnitOfWork,
    gateway: PaymentGateway,
    merchant: Merchant,
    clock: Clock,
    out_trade_no: str,
) -> ReconcileOutcome | None:
    """Ask WeChat about one unpaid order, unless someone just did.

    For a checkout page whose order's notify is late: the order's
    ``queried_at`` is claimed by compare-and-set first, so however many
    pages poll it, from however many processes, WeChat is asked at most
    once per ``QUERY_QUIET``. Never closes the order (that is the
    reconciler's job). Returns None when it was not asked.

    Raises:
        StorageUnavailable: the store failed.
    """
    now = clock.now()
    with uow:
        claimed = uow.orders.claim_query(out_trade_no, now, now - QUERY_QUIET)
        if claimed:
            uow.commit()
    if not claimed:
        return None
    return reconcile_order(uow, gateway, merchant, clock, out_trade_no, close=False)


def _abandoned(order: Order, now: datetime) -> bool:
    expires_at = order.code_expires_at
    return (
        expires_at is not None
        and expires_at < now
        and now - order.created_at >= CLOSE_AFTER
    )


def _close(
    uow: UnitOfWork, gateway: PaymentGateway, clock: Clock, order: Order
) -> ReconcileOutcome:
    out_trade_no = order.out_trade_no
    try:
        gateway.close_order(out_trade_no)
    except OrderAlreadyPaid:
        # Paid between our query and the close: ask again and record it.
        try:
            status = gateway.query_order(out_trade_no)
        except GatewayError as error:
            return _left(order, "orderquery", error)
        if status.trade_state in _PAID:
            return _record(uow, clock, order, status)
        log.warning(
            "reconcile ORDERPAID on close but trade_state=%s out_trade_no=%s",
            status.trade_state,
            out_trade_no,
        )
        return _unchanged(order, f"ORDERPAID, then {status.trade_state}")
    except OrderClosed:
        return _settle(uow, order, TradeState.CLOSED, "ORDERCLOSED at WeChat")
    except GatewayError as error:
        return _left(order, "closeorder", error)
    return _settle(uow, order, TradeState.CLOSED, "closed unpaid after expiry")


def _record(
    uow: UnitOfWork, clock: Clock, order: Order, status: OrderStatus
) -> ReconcileOutcome:
    payment = Payment(
        out_trade_no=order.out_trade_no,
        total_fee=status.total_fee,
        fee_type=status.fee_type,
        transaction_id=status.transaction_id,
        time_end=status.time_end,
    )
    # The one INFO line of this change is record_payment's "order paid".
    recorded = record_payment(uow, payment, clock.now(), source="orderquery")
    stored = recorded.order
    if recorded.verdict is PaymentVerdict.RECORDED:
        if status.trade_state == "REFUND":
            # TODO(reconcile): refunds are not tracked here; record them
            # when the service issues refunds itself.
            log.warning(
                "reconcile paid order refunded at WeChat out_trade_no=%s",
                order.out_trade_no,
            )
        return _outcome(order, TradeState.SUCCESS, "paid at WeChat")
    if recorded.verdict is PaymentVerdict.ALREADY_RECORDED and stored:
        return _outcome(order, stored.state, "paid, recorded meanwhile")
    # SECURITY(reconcile): as for a notify, a payment that does not match
    # the order is never recorded; the ERROR line is the operator's alert.
    log.error(
        "reconcile refused payment out_trade_no=%s rule=%s reason=%s",
        order.out_trade_no,
        recorded.verdict.value,
        recorded.reason,
    )
    after = stored.state if stored is not None else order.state
    reason = f"{recorded.verdict.value}: {recorded.reason}"
    return _outcome(order, after, reason)


def _settle(
    uow: UnitOfWork, order: Order, target: TradeState, reason: str
) -> ReconcileOutcome:
    out_trade_no = order.out_trade_no
    with uow:
        stored = uow.orders.get(out_trade_no)
        if stored is not None and stored.state is TradeState.NOTPAY:
            if target is TradeState.PAYERROR:
                stored.mark_payerror()
            else:
                stored.mark_closed()
            if uow.orders.save(stored, TradeState.NOTPAY):
                uow.commit()
                log.info(
                    "order reconciled out_trade_no=%s before=%s after=%s reason=%s",
                    out_trade_no,
                    order.state.value,
                    target.value,
                    reason,
                )
                return _outcome(order, target, reason)

    # Something else (a notify) moved it first; report what it is now.
    with uow:
        stored = uow.orders.get(out_trade_no)
    after = stored.state if stored is not None else order.state
    return _outcome(order, after, f"{after.value} meanwhile")


def _left(order: Order, api: str, error: GatewayError) -> ReconcileOutcome:
    out_trade_no = order.out_trade_no
    if isinstance(error, OrderNotFound):
        # NOTE(reconcile): WeChat answered this order's unifiedorder with
        # a prepay_id, so ORDERNOTEXIST now points at our configuration
        # (another mch_id or API base) or at WeChat, not at the payer.
        # Closing it here could lose a payment that a corrected setup
        # would find; it stays NOTPAY, and this WARNING repeats each run.
        log.warning(
            "reconcile left out_trade_no=%s api=%s err_code=ORDERNOTEXIST",
            out_trade_no,
            api,
        )
        return _unchanged(order, "ORDERNOTEXIST at WeChat, left")
    if isinstance(error, WeChatUnavailable):
        log.warning(
            "reconcile left out_trade_no=%s api=%s reason=unavailable",
            out_trade_no,
            api,
        )
        return _unchanged(order, "WeChat unavailable, left for the next run")
    # SECURITY(reconcile): an answer whose signature fails is not
    # WeChat's, or not only; that is an alert, not a hiccup.
    forged = isinstance(error, BadResponseSignature)
    code = error.err_code or type(error).__name__
    log.log(
        logging.ERROR if forged else logging.WARNING,
        "reconcile left out_trade_no=%s api=%s err_code=%s",
        out_trade_no,
        api,
        code,
    )
    return _unchanged(order, f"{api} failed: {code}")


def _outcome(order: Order, after: TradeState, reason: str) -> ReconcileOutcome:
    return ReconcileOutcome(order.out_trade_no, order.state, after, reason)


def _unchanged(order: Order, reason: str) -> ReconcileOutcome:
    return _outcome(order, order.state, reason)
