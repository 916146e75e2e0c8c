"""Products, checkouts and orders, with WeChat's trade states."""

from __future__ import annotations

import enum
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from datetime import timezone

from domain.money import Fen

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
CODE_LIFETIME = timedelta(hours=2)
FEE_TYPE = "CNY"

_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}\Z")
_PRODUCT_ID = re.compile(r"[0-9A-Za-z_\-]{1,32}\Z")
# WeChat's total_fee is an Int; nothing dearer can be ordered at all.
MAX_PRICE_FEN = 2**31 - 1
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


class TradeState(enum.Enum):
    """An order's state, by WeChat's ``trade_state`` names."""

    NOTPAY = "NOTPAY"
    SUCCESS = "SUCCESS"
    REFUND = "REFUND"
    CLOSED = "CLOSED"
    PAYERROR = "PAYERROR"


# Only these moves exist; everything else would move an order backwards
# or sideways. SUCCESS is final for payment, REFUND follows it.
TRANSITIONS: dict[TradeState, frozenset[TradeState]] = {
    TradeState.NOTPAY: frozenset(
        {TradeState.SUCCESS, TradeState.CLOSED, TradeState.PAYERROR}
    ),
    TradeState.SUCCESS: frozenset({TradeState.REFUND}),
    TradeState.REFUND: frozenset(),
    TradeState.CLOSED: frozenset(),
    TradeState.PAYERROR: frozenset(),
}


class IllegalTransition(Exception):
    """A state change that the order's life does not allow."""

    def __init__(self, out_trade_no: str, old: TradeState, new: TradeState):
        super().__init__(
            f"out_trade_no={out_trade_no} cannot go from {old.value} to {new.value}"
        )
        self.old = old
        self.new = new


class InvalidProduct(ValueError):
    """A product whose id, name or price breaks the catalogue's rules."""


@dataclass(frozen=True)
class Product:
    """Something the shop sells, at a price in fen.

    The id is what a mode-1 QR carries, so it follows WeChat's limit for
    ``product_id``: at most 32 characters, here letters, digits, ``_-``.
    """

    id: str
    name: str
    price: Fen
    available: bool = True

    def __post_init__(self) -> None:
        if not _PRODUCT_ID.match(self.id):
            raise InvalidProduct(
                f"product id {self.id!r}: 1-32 letters, digits, '_' or '-'"
            )
        # NOTE(catalogue): the name is unifiedorder's body, String(127) in
        # WeChat's table without a unit; the strict reading counts UTF-8
        # bytes (a Chinese character is 3), as the simulator does, so no
        # product can be listed whose orders WeChat would refuse.
        if not self.name.strip() or len(self.name.encode()) > 127:
            raise InvalidProduct("a product name has 1-127 bytes of UTF-8")
        if not 1 <= self.price.value <= MAX_PRICE_FEN:
            raise InvalidProduct(f"a product costs from 1 to {MAX_PRICE_FEN} fen")


def is_product_id(text: str) -> bool:
    """True when ``text`` could name a product (or a checkout)."""
    return bool(_PRODUCT_ID.match(text))


class CheckoutMode(enum.IntEnum):
    """Native mode 1 (WeChat calls us back) or mode 2 (we order first)."""

    CALLBACK = 1
    CODE_URL = 2


@dataclass
class Checkout:
    """One customer's attempt to buy one product, followed by its page.

    In mode 1 the QR carries the checkout's own id as WeChat's
    ``product_id``, so the scan callback maps back to this checkout and the
    page learns when *its* customer paid.
    """

    id: str
    product_id: str
    mode: CheckoutMode
    total_fee: Fen
    created_at: datetime
    qr_content: str = ""
    # Mode 1: the one payer whose scan may open orders, and until when.
    payer_openid: str = ""
    claimed_until: datetime | None = None


@dataclass
class Order:
    """A WeChat order, known by our ``out_trade_no``."""

    out_trade_no: str
    product_id: str
    body: str
    total_fee: Fen
    created_at: datetime
    checkout_id: str | None = None
    fee_type: str = FEE_TYPE
    state: TradeState = TradeState.NOTPAY
    openid: str = ""
    prepay_id: str = ""
    code_url: str = ""
    code_expires_at: datetime | None = None
    transaction_id: str = ""
    time_end: str = ""
    paid_at: datetime | None = None
    # When WeChat was last asked about this order (orderquery), if ever.
    queried_at: datetime | None = None

    def __post_init__(self) -> None:
        if not _OUT_TRADE_NO.match(self.out_trade_no):
            raise ValueError(f"bad out_trade_no {self.out_trade_no!r}")

    def _move(self, new: TradeState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(self.out_trade_no, self.state, new)
        self.state = new

    def attach_prepay(
        self, prepay_id: str, code_url: str, expires_at: datetime
    ) -> None:
        """Keep what unifiedorder returned and until when it is valid."""
        self.prepay_id = prepay_id
        self.code_url = code_url
        self.code_expires_at = expires_at

    def mark_paid(self, transaction_id: str, time_end: str, at: datetime) -> None:
        """Record the payment; allowed once, from NOTPAY only.

        Raises:
            IllegalTransition: the order is not NOTPAY.
        """
        self._move(TradeState.SUCCESS)
        self.transaction_id = transaction_id
        self.time_end = time_end
        self.paid_at = at

    def mark_closed(self) -> None:
        self._move(TradeState.CLOSED)

    def mark_payerror(self) -> None:
        """WeChat says the payment failed (a bank refused it); final."""
        self._move(TradeState.PAYERROR)

    def mark_refunded(self) -> None:
        self._move(TradeState.REFUND)

    @property
    def is_paid(self) -> bool:
        return self.state in (TradeState.SUCCESS, TradeState.REFUND)


def new_token(length: int = 20) -> str:
    """A random lower-case token; 20 characters carry about 103 bits."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


def new_out_trade_no(now: datetime) -> str:
    """A fresh ``out_trade_no``: Beijing time to the second, then random.

    24 characters of WeChat's allowed set (6-32 of ``0-9A-Za-z_-|*``),
    sortable by time, unguessable by its tail.
    """
    return wechat_time(now) + new_token(10).upper()


def new_checkout_id() -> str:
    """A checkout id; it doubles as WeChat's ``product_id`` in mode 1."""
    return "ck" + new_token(22)


def wechat_time(moment: datetime) -> str:
    """``yyyyMMddHHmmss`` in Beijing time, as WeChat writes times."""
    return moment.astimezone(BEIJING).strftime("%Y%m%d%H%M%S")


def parse_wechat_time(text: str) -> datetime:
    """Read WeChat's ``yyyyMMddHHmmss`` (Beijing time).

    Raises:
        ValueError: anything else.
    """
    if len(text) != 14 or not text.isdigit():
        raise ValueError(f"not a WeChat time: {text!r}")
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
