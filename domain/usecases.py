"""The use cases: plain functions over the ports.

Each takes the unit of work, the gateway and the clock it needs, and plain
values; none knows about HTTP, XML or SQL.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from domain.merchant import Merchant
from domain.merchant import bizpayurl
from domain.model import CODE_LIFETIME
from domain.model import FEE_TYPE
from domain.model import Checkout
from domain.model import CheckoutMode
from domain.model import Order
from domain.model import Product
from domain.model import TradeState
from domain.model import is_product_id
from domain.model import new_checkout_id
from domain.model import new_out_trade_no
from domain.model import new_token
from domain.model import wechat_time
from domain.money import Fen
from domain.money import InvalidAmount
from domain.payments import Payment
from domain.payments import PaymentVerdict
from domain.payments import record_payment
from domain.ports import Clock
from domain.ports import GatewayError
from domain.ports import PaymentGateway
from domain.ports import UnifiedOrderRequest
from domain.ports import UnitOfWork
from domain.reconcile import is_worth_asking
from domain.reconcile import refresh_order
from domain.signature import check_signature
from domain.signature import signed

log = logging.getLogger(__name__)


# --- checkouts ------------------------------------------------------------


class CheckoutError(Exception):
    """A checkout could not be started or found; the message says why."""


class UnknownProduct(CheckoutError):
    pass


class ProductUnavailable(CheckoutError):
    pass


class CheckoutNotFound(CheckoutError):
    pass


class OrderingFailed(CheckoutError):
    """WeChat did not place the order; trying again later may work."""


@dataclass(frozen=True)
class CheckoutView:
    """What a checkout page shows and follows."""

    id: str
    mode: int
    status: str
    product_id: str
    product_name: str
    total_fee: int
    qr_content: str
    out_trade_no: str | None
    expires_at: datetime | None
    paid_at: datetime | None


def list_products(uow: UnitOfWork) -> list[Product]:
    """Return the catalogue, ordered by id, sold-out products included."""
    with uow:
        return uow.products.list()


def start_checkout(
    uow: UnitOfWork,
    gateway: PaymentGateway,
    merchant: Merchant,
    clock: Clock,
    product_id: str,
    mode: CheckoutMode,
) -> CheckoutView:
    """Start a checkout for one product and return what its page shows.

    Mode 1 makes a signed QR link carrying the checkout's id; the order is
    placed when the customer scans it. Mode 2 places the order now and
    shows WeChat's ``code_url``.

    Raises:
        UnknownProduct, ProductUnavailable: the catalogue says no.
        OrderingFailed: mode 2 only; WeChat did not place the order.
    """
    now = clock.now()
    checkout_id = new_checkout_id()
    if not is_product_id(product_id):
        raise UnknownProduct(f"no product {product_id!r}")
    with uow:
        product = uow.products.get(product_id)
        if product is None:
            raise UnknownProduct(f"no product {product_id!r}")
        if not product.available:
            raise ProductUnavailable(f"product {product_id!r} is sold out")

        checkout = Checkout(
            id=checkout_id,
            product_id=product.id,
            mode=mode,
            total_fee=product.price,
            created_at=now,
        )
        order = None
        if mode is CheckoutMode.CALLBACK:
            checkout.qr_content = bizpayurl(
                merchant, checkout.id, int(now.timestamp()), new_token(32)
            )
        else:
            order = Order(
                out_trade_no=new_out_trade_no(now),
                product_id=product.id,
                body=product.name,
                total_fee=product.price,
                created_at=now,
                checkout_id=checkout.id,
            )
            uow.orders.add(order)
        uow.checkouts.add(checkout)
        uow.commit()

    if order is not None:
        _place_order(gateway, merchant, order, now)
        _store_prepay(uow, order)
    return checkout_status(uow, checkout_id)


def _place_order(
    gateway: PaymentGateway,
    merchant: Merchant,
    order: Order,
    now: datetime,
) -> None:
    request = UnifiedOrderRequest(
        out_trade_no=order.out_trade_no,
        body=order.body,
        total_fee=order.total_fee,
        product_id=order.checkout_id or order.product_id,
        notify_url=merchant.notify_url,
        client_ip=merchant.server_ip,
        openid=order.openid,
        time_expire=wechat_time(now + CODE_LIFETIME),
    )
    try:
        prepay = gateway.unified_order(request)
    except GatewayError as error:
        log.error(
            "unifiedorder failed out_trade_no=%s err_code=%s reason=%s",
            order.out_trade_no,
            error.err_code or "-",
            error,
        )
        raise OrderingFailed("WeChat did not place the order") from error
    order.attach_prepay(prepay.prepay_id, prepay.code_url, now + CODE_LIFETIME)
    log.info(
        "order placed out_trade_no=%s total_fee=%s",
        order.out_trade_no,
        order.total_fee,
    )


def _store_prepay(uow: UnitOfWork, placed: Order) -> None:
    # NOTE(usecases): the order row was committed before WeChat was
    # called, so no transaction stays open across the call; this second
    # one keeps what WeChat answered.
    with uow:
        stored = uow.orders.get(placed.out_trade_no)
        if stored is None or placed.code_expires_at is None:
            return
        stored.attach_prepay(placed.prepay_id, placed.code_url, placed.code_expires_at)
        uow.orders.save(stored, TradeState.NOTPAY)
        uow.commit()


def checkout_status(uow: UnitOfWork, checkout_id: str) -> CheckoutView:
    """Read what a checkout's page shows.

    The status is the trade state of the checkout's order: ``NOTPAY``
    until one of its orders is paid, then ``SUCCESS`` (or ``REFUND``).

    Raises:
        CheckoutNotFound: no such checkout.
    """
    return _read_checkout(uow, checkout_id)[0]


def follow_checkout(
    uow: UnitOfWork,
    gateway: PaymentGateway,
    merchant: Merchant,
    clock: Clock,
    checkout_id: str,
) -> CheckoutView:
    """Read a checkout for its polling page, asking WeChat if need be.

    When the checkout's order is unpaid, placed minutes ago and nobody
    asked WeChat about it lately, its notify is late: WeChat is asked
    first (see :func:`domain.reconcile.refresh_order`), within the
    gateway's deadline. WeChat failing changes nothing; the page gets
    the stored state.

    Raises:
        CheckoutNotFound: no such checkout.
    """
    view, current = _read_checkout(uow, checkout_id)
    if current is None or not is_worth_asking(current, clock.now()):
        return view
    refreshed = refresh_order(uow, gateway, merchant, clock, current.out_trade_no)
    if refreshed is None or not refreshed.changed:
        return view
    return checkout_status(uow, checkout_id)


def _read_checkout(
    uow: UnitOfWork, checkout_id: str
) -> tuple[CheckoutView, Order | None]:
    with uow:
        checkout = uow.checkouts.get(checkout_id)
        if checkout is None:
            raise CheckoutNotFound(f"no checkout {checkout_id!r}")
        product = uow.products.get(checkout.product_id)
        orders = uow.orders.for_checkout(checkout_id)

    paid = [order for order in orders if order.is_paid]
    current = paid[0] if paid else (orders[-1] if orders else None)
    qr_content = checkout.qr_content
    if checkout.mode is CheckoutMode.CODE_URL:
        qr_content = current.code_url if current else ""
    view = CheckoutView(
        id=checkout.id,
        mode=int(checkout.mode),
        status=current.state.value if current else TradeState.NOTPAY.value,
        product_id=checkout.product_id,
        product_name=product.name if product else checkout.product_id,
        total_fee=checkout.total_fee.value,
        qr_content=qr_content,
        out_trade_no=current.out_trade_no if current else None,
        expires_at=current.code_expires_at if current else None,
        paid_at=current.paid_at if current else None,
    )
    return view, current


# --- the mode-1 scan callback ---------------------------------------------

# What the payer reads in WeChat when we cannot sell (err_code_des).
SOLD_OUT = "商品已售完"
NO_SUCH_PRODUCT = "商品不存在"
ALREADY_PAID = "该订单已支付"
BEING_PAID = "该二维码正在由他人支付"
TRY_LATER = "系统繁忙，请稍后再试"


class ScanVerdict(enum.Enum):
    """How a mode-1 callback was answered; the audit trail keeps these."""

    PREPAY = "prepay"
    BAD_SIGN = "bad_sign"
    WRONG_MERCHANT = "wrong_merchant"
    UNKNOWN_PRODUCT = "unknown_product"
    SOLD_OUT = "sold_out"
    ALREADY_PAID = "already_paid"
    BEING_PAID = "being_paid"
    WECHAT_FAILED = "wechat_failed"


@dataclass(frozen=True)
class ScanOutcome:
    """The signed reply's fields, the verdict, and the order (if any)."""

    reply: dict[str, str]
    verdict: ScanVerdict
    out_trade_no: str = ""


def handle_scan_callback(
    uow: UnitOfWork,
    gateway: PaymentGateway,
    merchant: Merchant,
    clock: Clock,
    fields: Mapping[str, str],
) -> ScanOutcome:
    """Answer WeChat's mode-1 callback: who scanned which product.

    Returns the signed reply with its verdict. A callback whose signature
    or merchant is wrong gets ``return_code=FAIL`` and no order is placed;
    an unknown or sold-out product, or a failed unifiedorder, gets
    ``result_code=FAIL`` with an ``err_code_des`` the payer can read.
    Storage errors propagate; the entrypoint still answers (see there).
    """
    check = check_signature(fields, merchant.api_key, merchant.sign_type)
    if not check.valid:
        log.warning("SECURITY callback refused rule=signature reason=%s", check.reason)
        reply = protocol_failure(merchant, "签名失败")
        return ScanOutcome(reply, ScanVerdict.BAD_SIGN)
    if fields.get("appid") != merchant.appid or (
        fields.get("mch_id") != merchant.mch_id
    ):
        log.warning("SECURITY callback refused rule=merchant")
        reply = protocol_failure(merchant, "商户号或appid不匹配")
        return ScanOutcome(reply, ScanVerdict.WRONG_MERCHANT)

    scanned = fields.get("product_id", "")
    openid = fields.get("openid", "")
    now = clock.now()
    with uow:
        checkout = uow.checkouts.get(scanned)
        product_id = checkout.product_id if checkout else scanned
        product = uow.products.get(product_id)
        if product is None:
            log.warning("callback for unknown product_id=%s", scanned)
            reply = business_failure(merchant, NO_SUCH_PRODUCT)
            return ScanOutcome(reply, ScanVerdict.UNKNOWN_PRODUCT)
        if not product.available:
            reply = business_failure(merchant, SOLD_OUT)
            return ScanOutcome(reply, ScanVerdict.SOLD_OUT)

        if checkout is not None:
            earlier = uow.orders.for_checkout(checkout.id)
            if any(order.is_paid for order in earlier):
                reply = business_failure(merchant, ALREADY_PAID)
                return ScanOutcome(reply, ScanVerdict.ALREADY_PAID)
            # NOTE(mode1): a checkout is one purchase. The first payer to
            # scan claims it until their order's code lapses; a second
            # payer meanwhile could otherwise open a second order and
            # both could be paid. The claim is a compare-and-set, so of
            # payers scanning at the same moment exactly one wins.
            claimed = uow.checkouts.claim(checkout.id, openid, now, now + CODE_LIFETIME)
            if not claimed:
                reply = business_failure(merchant, BEING_PAID)
                return ScanOutcome(reply, ScanVerdict.BEING_PAID)
            for order in reversed(earlier):
                if order.openid == openid and _is_open(order, now):
                    reply = prepay_reply(merchant, order.prepay_id)
                    return ScanOutcome(reply, ScanVerdict.PREPAY, order.out_trade_no)

        order = Order(
            out_trade_no=new_out_trade_no(now),
            product_id=product.id,
            body=product.name,
            total_fee=checkout.total_fee if checkout else product.price,
            created_at=now,
            checkout_id=checkout.id if checkout else None,
            openid=openid,
        )
        uow.orders.add(order)
        uow.commit()

    try:
        _place_order(gateway, merchant, order, now)
    except OrderingFailed:
        reply = business_failure(merchant, TRY_LATER)
        return ScanOutcome(reply, ScanVerdict.WECHAT_FAILED, order.out_trade_no)

    _store_prepay(uow, order)
    reply = prepay_reply(merchant, order.prepay_id)
    return ScanOutcome(reply, ScanVerdict.PREPAY, order.out_trade_no)


def _is_open(order: Order, now: datetime) -> bool:
    """An unpaid order whose prepay_id can still be paid."""
    return (
        order.state is TradeState.NOTPAY
        and bool(order.prepay_id)
        and order.code_expires_at is not None
        and order.code_expires_at > now
    )


def _reply(merchant: Merchant, fields: dict[str, str]) -> dict[str, str]:
    base = {
        "appid": merchant.appid,
        "mch_id": merchant.mch_id,
        "nonce_str": new_token(32),
    }
    return signed({**fields, **base}, merchant.api_key, merchant.sign_type)


def prepay_reply(merchant: Merchant, prepay_id: str) -> dict[str, str]:
    """The signed success reply that lets the payer's WeChat go on."""
    return _reply(
        merchant,
        {"return_code": "SUCCESS", "result_code": "SUCCESS", "prepay_id": prepay_id},
    )


def business_failure(merchant: Merchant, message: str) -> dict[str, str]:
    """A signed ``result_code=FAIL``; WeChat shows ``message`` to the payer."""
    return _reply(
        merchant,
        {
            "return_code": "SUCCESS",
            "result_code": "FAIL",
            "err_code_des": message,
        },
    )


def protocol_failure(merchant: Merchant, message: str) -> dict[str, str]:
    """A signed ``return_code=FAIL``: the callback itself was not usable."""
    return _reply(merchant, {"return_code": "FAIL", "return_msg": message})


# --- the payment notify ---------------------------------------------------


class NotifyVerdict(enum.Enum):
    """How a payment notify was judged; operators count these."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    BAD_SIGN = "bad_sign"
    NOT_SUCCESS = "not_success"
    WRONG_MERCHANT = "wrong_merchant"
    UNKNOWN_ORDER = "unknown_order"
    MISMATCH = "mismatch"
    CONFLICT = "conflict"

    @property
    def acknowledged(self) -> bool:
        """True when WeChat should stop sending this notify."""
        return self in (NotifyVerdict.ACCEPTED, NotifyVerdict.DUPLICATE)


@dataclass(frozen=True)
class NotifyOutcome:
    """The verdict, the order it concerns and a reason safe to log."""

    verdict: NotifyVerdict
    out_trade_no: str = ""
    reason: str = ""


def handle_payment_notify(
    uow: UnitOfWork,
    merchant: Merchant,
    clock: Clock,
    fields: Mapping[str, str],
) -> NotifyOutcome:
    """Judge a payment notify and record the payment exactly once.

    Every rule is checked before any state changes: the signature over
    every received field; ``return_code`` and ``result_code`` SUCCESS;
    ``appid`` and ``mch_id`` ours; the order exists; ``total_fee`` and
    ``fee_type`` equal the order's. Then NOTPAY becomes SUCCESS through a
    compare-and-set, so of many concurrent copies exactly one wins and the
    others find the payment already recorded. The payment's own rules are
    :func:`domain.payments.record_payment`, which the reconciler shares.

    SECURITY(notify): a mismatching amount or merchant is refused (FAIL),
    never fulfilled; WeChat keeps retrying, and every retry is logged at
    ERROR, which is the alert an operator acts on.

    Raises:
        StorageUnavailable: the payment could not be stored; WeChat must
            be told FAIL so that it retries.
    """
    out_trade_no = fields.get("out_trade_no", "")
    check = check_signature(fields, merchant.api_key, merchant.sign_type)
    if not check.valid:
        return _refuse(NotifyVerdict.BAD_SIGN, out_trade_no, check.reason)
    if fields.get("return_code") != "SUCCESS":
        return _refuse(NotifyVerdict.NOT_SUCCESS, out_trade_no, "return_code")
    if fields.get("result_code") != "SUCCESS":
        return _refuse(NotifyVerdict.NOT_SUCCESS, out_trade_no, "result_code")
    if fields.get("appid") != merchant.appid:
        return _refuse(NotifyVerdict.WRONG_MERCHANT, out_trade_no, "appid")
    if fields.get("mch_id") != merchant.mch_id:
        return _refuse(NotifyVerdict.WRONG_MERCHANT, out_trade_no, "mch_id")
    try:
        total_fee: Fen | None = Fen.parse(fields.get("total_fee", ""))
    except InvalidAmount:
        total_fee = None
    payment = Payment(
        out_trade_no=out_trade_no,
        total_fee=total_fee,
        fee_type=fields.get("fee_type") or FEE_TYPE,
        transaction_id=fields.get("transaction_id", ""),
        time_end=fields.get("time_end", ""),
    )

    recorded = record_payment(uow, payment, clock.now(), source="notify")
    verdict = _NOTIFY_VERDICTS[recorded.verdict]
    if verdict is NotifyVerdict.ACCEPTED:
        return NotifyOutcome(verdict, out_trade_no)
    if verdict is NotifyVerdict.DUPLICATE:
        log.info("duplicate notify out_trade_no=%s", out_trade_no)
        return NotifyOutcome(verdict, out_trade_no)
    return _refuse(verdict, out_trade_no, recorded.reason)


_NOTIFY_VERDICTS = {
    PaymentVerdict.RECORDED: NotifyVerdict.ACCEPTED,
    PaymentVerdict.ALREADY_RECORDED: NotifyVerdict.DUPLICATE,
    PaymentVerdict.UNKNOWN_ORDER: NotifyVerdict.UNKNOWN_ORDER,
    PaymentVerdict.MISMATCH: NotifyVerdict.MISMATCH,
    PaymentVerdict.CONFLICT: NotifyVerdict.CONFLICT,
}


def _refuse(verdict: NotifyVerdict, out_trade_no: str, reason: str) -> NotifyOutcome:
    level = logging.ERROR if verdict in _ALERTS else logging.WARNING
    log.log(
        level,
        "SECURITY notify refused out_trade_no=%s rule=%s reason=%s",
        out_trade_no or "-",
        verdict.value,
        reason,
    )
    return NotifyOutcome(verdict, out_trade_no, reason)


_ALERTS = frozenset(
    {NotifyVerdict.MISMATCH, NotifyVerdict.CONFLICT, NotifyVerdict.WRONG_MERCHANT}
)
