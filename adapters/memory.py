"""In-memory storage: the reference adapter for tests and quick starts."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import datetime
from types import TracebackType

from domain.model import Checkout
from domain.model import Order
from domain.model import Product
from domain.model import TradeState
from domain.ports import CheckoutRepository
from domain.ports import DuplicateKey
from domain.ports import InboundLog
from domain.ports import InboundMessage
from domain.ports import OrderRepository
from domain.ports import ProductRepository
from domain.ports import UnitOfWork


@dataclass
class _Tables:
    products: dict[str, Product] = field(default_factory=dict)
    checkouts: dict[str, Checkout] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    inbound: list[InboundMessage] = field(default_factory=list)

    def copy(self) -> _Tables:
        """A working copy for one transaction.

        Shallow is enough: the repositories store and hand out copies of
        the mutable rows, and products and audit records are frozen.
        """
        return _Tables(
            dict(self.products),
            dict(self.checkouts),
            dict(self.orders),
            list(self.inbound),
        )


class InMemoryStore:
    """The shared state that every unit of work over it sees."""

    def __init__(self) -> None:
        self.tables = _Tables()
        # NOTE(memory): one lock held for a whole transaction makes every
        # transaction serializable, which is what the SQL stores promise
        # for the compare-and-set in OrderRepository.save.
        self.lock = threading.RLock()


class InMemoryProductRepository(ProductRepository):
    def __init__(self, tables: _Tables) -> None:
        self._rows = tables.products

    def get(self, product_id: str) -> Product | None:
        return self._rows.get(product_id)

    def list(self) -> list[Product]:
        return [self._rows[key] for key in sorted(self._rows)]

    def save(self, product: Product) -> None:
        self._rows[product.id] = product


class InMemoryCheckoutRepository(CheckoutRepository):
    def __init__(self, tables: _Tables) -> None:
        self._rows = tables.checkouts

    def add(self, checkout: Checkout) -> None:
        if checkout.id in self._rows:
            raise DuplicateKey(f"checkout {checkout.id}")
        self._rows[checkout.id] = copy.deepcopy(checkout)

    def get(self, checkout_id: str) -> Checkout | None:
        return copy.deepcopy(self._rows.get(checkout_id))

    def claim(
        self, checkout_id: str, openid: str, now: datetime, until: datetime
    ) -> bool:
        stored = self._rows.get(checkout_id)
        if stored is None:
            return False
        lapsed = stored.claimed_until is not None and stored.claimed_until < now
        if stored.payer_openid not in ("", openid) and not lapsed:
            return False
        self._rows[checkout_id] = replace(
            stored, payer_openid=openid, claimed_until=until
        )
        return True


class InMemoryOrderRepository(OrderRepository):
    def __init__(self, tables: _Tables) -> None:
        self._rows = tables.orders

    def add(self, order: Order) -> None:
        if order.out_trade_no in self._rows:
            raise DuplicateKey(f"out_trade_no {order.out_trade_no}")
        self._check_transaction_id(order)
        self._rows[order.out_trade_no] = copy.deepcopy(order)

    def get(self, out_trade_no: str) -> Order | None:
        return copy.deepcopy(self._rows.get(out_trade_no))

    def for_checkout(self, checkout_id: str) -> list[Order]:
        found = [o for o in self._rows.values() if o.checkout_id == checkout_id]
        found.sort(key=lambda order: (order.created_at, order.out_trade_no))
        return copy.deepcopy(found)

    def unsettled(self, created_before: datetime, limit: int) -> list[Order]:
        found = [
            order
            for order in self._rows.values()
            if order.state is TradeState.NOTPAY
            and order.prepay_id
            and order.created_at < created_before
        ]
        found.sort(key=lambda order: (order.created_at, order.out_trade_no))
        return copy.deepcopy(found[:limit])

    def claim_query(self, out_trade_no: str, now: datetime, since: datetime) -> bool:
        stored = self._rows.get(out_trade_no)
        if stored is None or stored.state is not TradeState.NOTPAY:
            return False
        if stored.queried_at is not None and stored.queried_at >= since:
            return False
        self._rows[out_trade_no] = replace(stored, queried_at=now)
        return True

    def save(self, order: Order, expected_state: TradeState) -> bool:
        stored = self._rows.get(order.out_trade_no)
        if stored is None or stored.state is not expected_state:
            return False
        self._check_transaction_id(order)
        self._rows[order.out_trade_no] = copy.deepcopy(order)
        return True

    def _check_transaction_id(self, order: Order) -> None:
        if not order.transaction_id:
            return
        for other in self._rows.values():
            same = other.transaction_id == order.transaction_id
            if same and other.out_trade_no != order.out_trade_no:
                raise DuplicateKey(f"transaction_id {order.transaction_id}")


class InMemoryInboundLog(InboundLog):
    def __init__(self, tables: _Tables) -> None:
        self._rows = tables.inbound

    def record(self, message: InboundMessage) -> None:
        self._rows.append(message)

    def prune(self, before: datetime) -> int:
        kept = [m for m in self._rows if m.received_at >= before]
        removed = len(self._rows) - len(kept)
        self._rows[:] = kept
        return removed

    def find(
        self,
        *,
        out_trade_no: str | None = None,
        verdict: str | None = None,
        kind: str | None = None,
        limit: int = 50,
    ) -> list[InboundMessage]:
        found = [
            message
            for message in reversed(self._rows)
            if out_trade_no in (None, message.out_trade_no)
            and verdict in (None, message.verdict)
            and kind in (None, message.kind)
        ]
        return found[:limit]


class InMemoryUnitOfWork(UnitOfWork):
    """A unit of work over an :class:`InMemoryStore`.

    Work happens on a private copy of the tables, which ``commit`` puts
    in place; the store's lock is held from ``__enter__`` to ``__exit__``.
    """

    def __init__(self, store: InMemoryStore | None = None) -> None:
        self.store = store or InMemoryStore()
        self._working: _Tables | None = None

    def __enter__(self) -> UnitOfWork:
        self.store.lock.acquire()
        self._working = self.store.tables.copy()
        self._rebind()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.rollback()
        finally:
            self.store.lock.release()

    def commit(self) -> None:
        if self._working is None:
            raise RuntimeError("commit outside a unit of work")
        self.store.tables = self._working
        self._working = self._working.copy()
        self._rebind()

    def rollback(self) -> None:
        if self._working is not None:
            self._working = self.store.tables.copy()
            self._rebind()

    def _rebind(self) -> None:
        assert self._working is not None
        self.products = InMemoryProductRepository(self._working)
        self.checkouts = InMemoryCheckoutRepository(self._working)
        self.orders = InMemoryOrderRepository(self._working)
        self.inbound = InMemoryInboundLog(self._working)
