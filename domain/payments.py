"""Recording a payment: the one set of rules, whoever reports it.

A payment reaches the service two ways: WeChat's notify, and the
reconciler's orderquery when a notify never came. Both end here, so an
amount that does not match is refused the same way and NOTPAY becomes
SUCCESS through the same compare-and-set, whichever arrives first.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from domain.model import Order
from domain.model import TradeState
from domain.model import parse_wechat_time
from domain.money import Fen
from domain.ports import DuplicateKey
from domain.ports import UnitOfWork

log = logging.getLogger(__name__)


class PaymentVerdict(enum.Enum):
    """What became of a reported payment."""

    RECORDED = "recorded"
    ALREADY_RECORDED = "already_recorded"
    UNKNOWN_ORDER = "unknown_order"
    MISMATCH = "mismatch"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Payment:
    """A payment as WeChat reports it, in a notify or an orderquery.

    ``total_fee`` is None when the report carried no readable amount.
    """

    out_trade_no: str
    total_fee: Fen | None
    fee_type: str
    transaction_id: str
    time_end: str


@dataclass(frozen=True)
class PaymentOutcome:
    """The verdict, a reason safe to log, and the order as it now is."""

    verdict: PaymentVerdict
    reason: str = ""
    order: Order | None = None


def record_payment(
    uow: UnitOfWork, payment: Payment, now: datetime, *, source: str
) -> PaymentOutcome:
    """Record a payment WeChat reported, exactly once.

    The rules, all checked before anything changes: ``transaction_id``
    and ``time_end`` can be stored; the order exists; ``total_fee`` and
    ``fee_type`` equal the order's. Then NOTPAY becomes SUCCESS through
    a compare-and-set, so of concurrent reports (notify copies, a
    reconciler run) exactly one records it and the others find it
    recorded. A paid order reported with another transaction is a
    conflict. The caller logs refusals; this logs the payment itself.

    Args:
        source: who reported it (``notify``, ``orderquery``), for the log.

    Raises:
        StorageUnavailable: the payment could not be stored.
    """
    out_trade_no = payment.out_trade_no
    transaction_id = payment.transaction_id
    well_formed = _is_transaction_id(transaction_id) and _is_wechat_time(
        payment.time_end
    )
    if not well_formed:
        reason = "transaction_id or time_end"
        return PaymentOutcome(PaymentVerdict.MISMATCH, reason)
    total_fee = payment.total_fee
    if total_fee is None:
        return PaymentOutcome(PaymentVerdict.MISMATCH, "total_fee")

    with uow:
        order = uow.orders.get(out_trade_no)
        if order is None:
            return PaymentOutcome(PaymentVerdict.UNKNOWN_ORDER, "order")
        if total_fee != order.total_fee:
            return PaymentOutcome(
                PaymentVerdict.MISMATCH,
                f"total_fee {total_fee} != order {order.total_fee}",
                order,
            )
        if payment.fee_type != order.fee_type:
            return PaymentOutcome(PaymentVerdict.MISMATCH, "fee_type", order)
        if order.state is not TradeState.NOTPAY:
            return _already(order, transaction_id)

        order.mark_paid(transaction_id, payment.time_end, now)
        try:
            won = uow.orders.save(order, TradeState.NOTPAY)
            if won:
                uow.commit()
        except DuplicateKey:
            won = False
        if won:
            log.info(
                "order paid out_trade_no=%s transaction_id=%s total_fee=%s source=%s",
                out_trade_no,
                transaction_id,
                total_fee,
                source,
            )
            _alert_if_paid_twice(uow, order)
            return PaymentOutcome(PaymentVerdict.RECORDED, order=order)

    # Another report of this payment won the race; judge against it.
    with uow:
        stored = uow.orders.get(out_trade_no)
        assert stored is not None
        return _already(stored, transaction_id)


def _already(order: Order, transaction_id: str) -> PaymentOutcome:
    if order.is_paid and order.transaction_id == transaction_id:
        return PaymentOutcome(PaymentVerdict.ALREADY_RECORDED, order=order)
    return PaymentOutcome(
        PaymentVerdict.CONFLICT,
        f"order is {order.state.value} with another transaction",
        order,
    )


def _is_transaction_id(text: str) -> bool:
    # WeChat's are 28 digits; the column holds 32. Anything else cannot
    # be stored, and a report that can never be stored must not be
    # answered "try again" for ever.
    return 0 < len(text) <= 32 and text.isascii() and text.isalnum()


def _is_wechat_time(text: str) -> bool:
    try:
        parse_wechat_time(text)
    except ValueError:
        return False
    return True


def _alert_if_paid_twice(uow: UnitOfWork, order: Order) -> None:
    # The payment is real money received and is recorded; what must not
    # pass silently is a checkout paid by two orders, which needs a refund.
    if order.checkout_id is None:
        return
    siblings = uow.orders.for_checkout(order.checkout_id)
    others = [
        other.out_trade_no
        for other in siblings
        if other.is_paid and other.out_trade_no != order.out_trade_no
    ]
    if others:
        log.error(
            "checkout paid twice checkout_id=%s out_trade_no=%s earlier=%s"
            " action=refund",
            order.checkout_id,
            order.out_trade_no,
            ",".join(others),
        )
