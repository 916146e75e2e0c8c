"""The ports: what the domain needs from storage and from WeChat.

Adapters implement these abstract classes (``SqlAlchemy...``,
``InMemory...``, ``Urllib3...``); use cases depend on nothing else.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from domain.model import FEE_TYPE
from domain.model import Checkout
from domain.model import Order
from domain.model import Product
from domain.model import TradeState
from domain.money import Fen


class StorageUnavailable(Exception):
    """The store cannot be reached or cannot commit right now."""


class DuplicateKey(Exception):
    """An insert clashed with an existing row (an id already used)."""


class ProductRepository(abc.ABC):
    """The shop's catalogue."""

    @abc.abstractmethod
    def get(self, product_id: str) -> Product | None:
        """Return the product, or None when there is no such product."""

    @abc.abstractmethod
    def list(self) -> list[Product]:
        """Return every product, ordered by id."""

    @abc.abstractmethod
    def save(self, product: Product) -> None:
        """Add the product, or replace the one with the same id."""


class CheckoutRepository(abc.ABC):
    """Checkouts, each followed by one page."""

    @abc.abstractmethod
    def add(self, checkout: Checkout) -> None:
        """Add a new checkout.

        Raises:
            DuplicateKey: the id is taken.
        """

    @abc.abstractmethod
    def get(self, checkout_id: str) -> Checkout | None:
        """Return the checkout, or None."""

    @abc.abstractmethod
    def claim(
        self, checkout_id: str, openid: str, now: datetime, until: datetime
    ) -> bool:
        """Give a mode-1 checkout to one payer, atomically.

        Succeeds, recording ``openid`` and ``until``, when the checkout is
        unclaimed, already this payer's, or its claim lapsed before
        ``now``; otherwise changes nothing and returns False. Like
        ``OrderRepository.save`` this is a compare-and-set: of payers
        scanning one code at the same moment exactly one gets it.
        """


class OrderRepository(abc.ABC):
    """WeChat orders, by ``out_trade_no``."""

    @abc.abstractmethod
    def add(self, order: Order) -> None:
        """Add a new order.

        Raises:
            DuplicateKey: the ``out_trade_no`` is taken.
        """

    @abc.abstractmethod
    def get(self, out_trade_no: str) -> Order | None:
        """Return the order, or None."""

    @abc.abstractmethod
    def for_checkout(self, checkout_id: str) -> list[Order]:
        """Return the checkout's orders, oldest first."""

    @abc.abstractmethod
    def unsettled(self, created_before: datetime, limit: int) -> list[Order]:
        """Return NOTPAY orders that WeChat knows, for the reconciler.

        Only orders with a ``prepay_id`` (unifiedorder answered) created
        before ``created_before``, oldest first, at most ``limit``.
        """

    @abc.abstractmethod
    def claim_query(self, out_trade_no: str, now: datetime, since: datetime) -> bool:
        """Note that WeChat is being asked about a NOTPAY order, once.

        Sets the order's ``queried_at`` to ``now`` and returns True when
        the order is NOTPAY and was not queried at or after ``since``;
        otherwise changes nothing and returns False. A compare-and-set
        like ``save``: of pages polling one order at the same moment,
        from any number of processes, one asks WeChat.
        """

    @abc.abstractmethod
    def save(self, order: Order, expected_state: TradeState) -> bool:
        """Store the order's changes if its stored state is still expected.

        This is the compare-and-set that makes a transition happen once:
        when two requests both read NOTPAY and both mark the order paid,
        only the first ``save(order, NOTPAY)`` returns True; the other
        changes nothing and returns False.
        """


@dataclass(frozen=True)
class InboundMessage:
    """A raw message WeChat (or someone claiming to be WeChat) sent us.

    Kept with the verdict it got, whatever that was: the audit trail an
    operator reads when a payment is disputed or a forgery is suspected.
    """

    kind: str
    received_at: datetime
    verdict: str
    body: str
    out_trade_no: str = ""
    remote_addr: str = ""
    request_id: str = ""


class InboundLog(abc.ABC):
    """The audit trail of inbound callbacks and notifies."""

    @abc.abstractmethod
    def record(self, message: InboundMessage) -> None:
        """Append one message."""

    @abc.abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete messages received before ``before``; return how many."""

    @abc.abstractmethod
    def find(
        self,
        *,
        out_trade_no: str | None = None,
        verdict: str | None = None,
        kind: str | None = None,
        limit: int = 50,
    ) -> list[InboundMessage]:
        """Return matching messages, newest first."""


class UnitOfWork(abc.ABC):
    """One transaction over the repositories; the only thing that commits.

    Use as a context manager; leaving it without ``commit()`` rolls back.
    Each ``with uow:`` block is a transaction of its own, so a use case can
    commit, call WeChat outside any transaction, then open another.
    """

    products: ProductRepository
    checkouts: CheckoutRepository
    orders: OrderRepository
    inbound: InboundLog

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()

    @abc.abstractmethod
    def commit(self) -> None:
        """Make the changes durable.

        Raises:
            StorageUnavailable: the store could not commit.
            DuplicateKey: a unique key clashed at commit time.
        """

    @abc.abstractmethod
    def rollback(self) -> None:
        """Forget uncommitted changes; harmless after a commit."""


# --- WeChat ---------------------------------------------------------------


class GatewayError(Exception):
    """A call to WeChat did not give a usable answer.

    Carries what support needs: the API, our ``out_trade_no`` and WeChat's
    ``err_code`` when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        api: str = "",
        out_trade_no: str = "",
        err_code: str = "",
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.api = api
        self.out_trade_no = out_trade_no
        self.err_code = err_code
        self.http_status = http_status


class WeChatUnavailable(GatewayError):
    """No answer in time, a transport error, a 5xx, or ``SYSTEMERROR``.

    The same call may succeed when repeated with identical parameters.
    """


class WeChatRejected(GatewayError):
    """WeChat answered and said no (``result_code=FAIL`` or
    ``return_code=FAIL``); ``err_code`` says why."""


class BadResponseSignature(GatewayError):
    """An answer claiming to come from WeChat whose signature fails."""


class UnexpectedResponse(GatewayError):
    """An answer that is not a usable WeChat message.

    A body that does not parse as one, a required field missing, the ids
    of another appid or mch_id, or an HTTP status that is neither 200 nor
    a 5xx. Repeating the call would give the same answer: this usually
    means a wrong API base URL or something else answering in WeChat's
    place.
    """


class OrderAlreadyPaid(WeChatRejected):
    """``ORDERPAID``: the order is paid; treat it as paid, do not re-place
    or close it."""


class OrderClosed(WeChatRejected):
    """``ORDERCLOSED``: the order can no longer be paid; paying again
    needs a new ``out_trade_no``."""


class OrderNotFound(WeChatRejected):
    """``ORDERNOTEXIST``: WeChat has no order with this ``out_trade_no``."""


@dataclass(frozen=True)
class UnifiedOrderRequest:
    """What unifiedorder needs to place a NATIVE order."""

    out_trade_no: str
    body: str
    total_fee: Fen
    product_id: str
    notify_url: str
    client_ip: str
    openid: str = ""
    time_expire: str = ""


@dataclass(frozen=True)
class Prepay:
    """unifiedorder's answer: the ids a payer's WeChat will use."""

    prepay_id: str
    code_url: str


@dataclass(frozen=True)
class OrderStatus:
    """orderquery's answer, as far as the service needs it."""

    out_trade_no: str
    trade_state: str
    total_fee: Fen | None
    transaction_id: str
    time_end: str
    fee_type: str = FEE_TYPE


class PaymentGateway(abc.ABC):
    """WeChat Pay's merchant API, as the use cases need it.

    Every answer's signature is verified by the adapter before anything in
    it is returned.
    """

    @abc.abstractmethod
    def unified_order(self, request: UnifiedOrderRequest) -> Prepay:
        """Place a NATIVE order.

        Raises:
            WeChatUnavailable, WeChatRejected (``OrderAlreadyPaid``,
            ``OrderClosed``), BadResponseSignature, UnexpectedResponse.
        """

    @abc.abstractmethod
    def query_order(self, out_trade_no: str) -> OrderStatus:
        """Ask WeChat for an order's state.

        Raises:
            WeChatUnavailable, WeChatRejected (``OrderNotFound``),
            BadResponseSignature, UnexpectedResponse.
        """

    @abc.abstractmethod
    def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order (not within 5 minutes of placing it).

        Raises:
            WeChatUnavailable, WeChatRejected (``OrderAlreadyPaid``: it
            is paid; ``OrderClosed``), BadResponseSignature,
            UnexpectedResponse.
        """


class Clock(abc.ABC):
    """The current time, replaceable in tests."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """Return an aware datetime."""
