"""SQL storage through SQLAlchemy Core: SQLite, PostgreSQL and MariaDB.

Rows are mapped by hand to and from the domain's dataclasses; the domain
never sees SQLAlchemy. Driver errors leave this module as the ports'
errors: :class:`DuplicateKey` for a clashing key, :class:`StorageUnavailable`
for everything that says "not now" (unreachable server, lost connection,
``database is locked``, missing tables).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import Row
from sqlalchemy import create_engine
from sqlalchemy import delete
from sqlalchemy import event
from sqlalchemy import exc
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.engine import URL
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from adapters import sqlalchemy_tables as tables
from domain.model import Checkout
from domain.model import CheckoutMode
from domain.model import Order
from domain.model import Product
from domain.model import TradeState
from domain.money import Fen
from domain.ports import CheckoutRepository
from domain.ports import DuplicateKey
from domain.ports import InboundLog
from domain.ports import InboundMessage
from domain.ports import OrderRepository
from domain.ports import ProductRepository
from domain.ports import StorageUnavailable
from domain.ports import UnitOfWork

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 5
# NOTE(storage): MariaDB closes idle connections after wait_timeout
# (8 hours by default); recycling well before that avoids a dead first
# query after a quiet night. pool_pre_ping catches the rest.
SERVER_POOL_RECYCLE_S = 1800


# --- engines --------------------------------------------------------------


def create_engine_for(url: str) -> Engine:
    """Create an engine for a WXPAY_DATABASE_URL, tuned per database.

    SQLite: the file's folder is created; WAL journal, a busy timeout and
    foreign keys are switched on for every connection, and every
    transaction starts with ``BEGIN IMMEDIATE`` (see below). Servers get
    ``pool_pre_ping`` and a connect timeout; MariaDB/MySQL speak utf8mb4
    at READ COMMITTED, as PostgreSQL does by default.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)

    options: dict[str, Any] = {"pool_pre_ping": True}
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    elif backend in ("mysql", "mariadb"):
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        options["isolation_level"] = "READ COMMITTED"
        options["pool_recycle"] = SERVER_POOL_RECYCLE_S
    return create_engine(parsed, connect_args=connect_args, **options)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when BEGIN runs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL itself may have to wait.
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # NOTE(storage): a deferred SQLite transaction that read before
        # another one committed cannot start writing (SQLITE_BUSY_SNAPSHOT,
        # reported at once, whatever the busy timeout). Taking the write
        # lock up front makes every unit of work serializable, like the
        # in-memory store; they are short and hold no lock across a call
        # to WeChat, so the queue stays short.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def describe(engine: Engine) -> str:
    """The engine's URL with the password hidden, for messages and logs."""
    return engine.url.render_as_string(hide_password=True)


def ping(engine: Engine) -> None:
    """Check that the database answers a trivial query.

    Raises:
        StorageUnavailable: it does not; the message is safe to show.
    """
    with translated(engine.url), engine.connect() as connection:
        connection.execute(text("SELECT 1"))


# --- errors ---------------------------------------------------------------


def _safe_message(error: exc.DBAPIError, url: URL) -> str:
    cause = error.orig if error.orig is not None else error
    lines = str(cause).strip().splitlines()
    reason = lines[0] if lines else "no reason given"
    if url.password:
        # SECURITY(storage): drivers may echo their connection string.
        reason = reason.replace(str(url.password), "***")
    where = url.render_as_string(hide_password=True)
    return f"{type(cause).__name__}: {reason} (database {where})"


@contextmanager
def translated(url: URL) -> Iterator[None]:
    """Turn driver errors into the ports' errors."""
    try:
        yield
    except exc.IntegrityError as error:
        raise DuplicateKey(_safe_message(error, url)) from error
    except (exc.ProgrammingError, exc.DataError) as error:
        # NOTE(storage): a missing table is a deployment state (run
        # `wxpay db upgrade`), not a bug; PostgreSQL reports it as a
        # ProgrammingError, SQLite as an OperationalError.
        if _is_missing_table(error):
            raise StorageUnavailable(_safe_message(error, url)) from error
        raise
    except exc.DBAPIError as error:
        # OperationalError, InterfaceError, InternalError and every
        # invalidated connection: the store cannot serve right now.
        raise StorageUnavailable(_safe_message(error, url)) from error


def _is_missing_table(error: exc.DBAPIError) -> bool:
    code = getattr(error.orig, "sqlstate", None)
    if code == "42P01":  # PostgreSQL undefined_table
        return True
    args: tuple[Any, ...] = getattr(error.orig, "args", ())
    return bool(args) and args[0] == 1146  # MariaDB ER_NO_SUCH_TABLE


# --- repositories ---------------------------------------------------------


class _Repository:
    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def _url(self) -> URL:
        bind = self._session.get_bind()
        return bind.engine.url

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with translated(self._url):
            yield self._session.connection()


class SqlAlchemyProductRepository(_Repository, ProductRepository):
    """The catalogue in the ``products`` table."""

    def get(self, product_id: str) -> Product | None:
        query = select(tables.products).where(tables.products.c.id == product_id)
        with self._connection() as connection:
            row = connection.execute(query).first()
        return None if row is None else _product(row)

    def list(self) -> list[Product]:
        query = select(tables.products).order_by(tables.products.c.id)
        with self._connection() as connection:
            rows = connection.execute(query).all()
        return [_product(row) for row in rows]

    def save(self, product: Product) -> None:
        values = {
            "name": product.name,
            "price_fen": product.price.value,
            "available": product.available,
        }
        table = tables.products
        with self._connection() as connection:
            # TODO(storage): two first saves of one new id at the same time
            # make the second a DuplicateKey; use each dialect's upsert if
            # the catalogue is ever edited concurrently.
            changed = connection.execute(
                update(table).where(table.c.id == product.id).values(**values)
            )
            if changed.rowcount == 0:
                connection.execute(insert(table).values(id=product.id, **values))


class SqlAlchemyCheckoutRepository(_Repository, CheckoutRepository):
    """Checkouts in the ``checkouts`` table."""

    def add(self, checkout: Checkout) -> None:
        statement = insert(tables.checkouts).values(
            id=checkout.id,
            product_id=checkout.product_id,
            mode=int(checkout.mode),
            total_fee_fen=checkout.total_fee.value,
            created_at=checkout.created_at,
            qr_content=checkout.qr_content,
            payer_openid=checkout.payer_openid,
            claimed_until=checkout.claimed_until,
        )
        with self._connection() as connection:
            connection.execute(statement)

    def get(self, checkout_id: str) -> Checkout | None:
        table = tables.checkouts
        query = select(table).where(table.c.id == checkout_id)
        with self._connection() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return Checkout(
            id=row.id,
            product_id=row.product_id,
            mode=CheckoutMode(row.mode),
            total_fee=Fen(row.total_fee_fen),
            created_at=row.created_at,
            qr_content=row.qr_content,
            payer_openid=row.payer_openid,
            claimed_until=row.claimed_until,
        )

    def claim(
        self, checkout_id: str, openid: str, now: datetime, until: datetime
    ) -> bool:
        """One conditional UPDATE, like ``SqlAlchemyOrderRepository.save``:
        a concurrent claimer waits on the row lock, then re-reads the row
        and matches nothing."""
        table = tables.checkouts
        statement = (
            update(table)
            .where(table.c.id == checkout_id)
            .where(
                or_(
                    table.c.payer_openid == "",
                    table.c.payer_openid == openid,
                    table.c.claimed_until < now,
                )
            )
            .values(payer_openid=openid, claimed_until=until)
        )
        with self._connection() as connection:
            result = connection.execute(statement)
        return result.rowcount == 1


class SqlAlchemyOrderRepository(_Repository, OrderRepository):
    """Orders in the ``orders`` table, changed only by compare-and-set."""

    def add(self, order: Order) -> None:
        now = datetime.now(UTC)
        statement = insert(tables.orders).values(
            out_trade_no=order.out_trade_no,
            product_id=order.product_id,
            created_at=order.created_at,
            updated_at=now,
            **_order_values(order),
        )
        with self._connection() as connection:
            connection.execute(statement)

    def get(self, out_trade_no: str) -> Order | None:
        table = tables.orders
        query = select(table).where(table.c.out_trade_no == out_trade_no)
        with self._connection() as connection:
            row = connection.execute(query).first()
        return None if row is None else _order(row)

    def for_checkout(self, checkout_id: str) -> list[Order]:
        table = tables.orders
        query = (
            select(table)
            .where(table.c.checkout_id == checkout_id)
            .order_by(table.c.created_at, table.c.out_trade_no)
        )
        with self._connection() as connection:
            rows = connection.execute(query).all()
        return [_order(row) for row in rows]

    def unsettled(self, created_before: datetime, limit: int) -> list[Order]:
        """NOTPAY orders with a prepay_id, oldest first.

        The index on (state, created_at) serves both the filter and the
        order, so the reconciler reads only unpaid rows, not every order
        the shop ever took.
        """
        table = tables.orders
        query = (
            select(table)
            .where(table.c.state == TradeState.NOTPAY.value)
            .where(table.c.created_at < created_before)
            .where(table.c.prepay_id != "")
            .order_by(table.c.created_at, table.c.out_trade_no)
            .limit(limit)
        )
        with self._connection() as connection:
            rows = connection.execute(query).all()
        return [_order(row) for row in rows]

    def claim_query(self, out_trade_no: str, now: datetime, since: datetime) -> bool:
        """One conditional UPDATE of ``queried_at``, like ``save``."""
        table = tables.orders
        statement = (
            update(table)
            .where(table.c.out_trade_no == out_trade_no)
            .where(table.c.state == TradeState.NOTPAY.value)
            .where(or_(table.c.queried_at.is_(None), table.c.queried_at < since))
            .values(queried_at=now)
        )
        with self._connection() as connection:
            result = connection.execute(statement)
        return result.rowcount == 1

    def save(self, order: Order, expected_state: TradeState) -> bool:
        """Write the order if its stored state is still ``expected_state``.

        One conditional UPDATE, no prior SELECT ... FOR UPDATE: the row
        lock it takes lasts until this unit of work ends, and a concurrent
        writer that waited on it re-reads the state and matches nothing.
        MySQL drivers are told to count matched rows (SQLAlchemy's default
        ``FOUND_ROWS``), so an unchanged order still counts as saved.

        Raises:
            DuplicateKey: another order already has this transaction_id.
        """
        table = tables.orders
        statement = (
            update(table)
            .where(table.c.out_trade_no == order.out_trade_no)
            .where(table.c.state == expected_state.value)
            .values(updated_at=datetime.now(UTC), **_order_values(order))
        )
        with self._connection() as connection:
            result = connection.execute(statement)
        return result.rowcount == 1


class SqlAlchemyInboundLog(_Repository, InboundLog):
    """The audit trail in the ``inbound_messages`` table."""

    def record(self, message: InboundMessage) -> None:
        statement = insert(tables.inbound_messages).values(
            kind=message.kind,
            received_at=message.received_at,
            verdict=message.verdict,
            out_trade_no=message.out_trade_no[:32],
            remote_addr=message.remote_addr[:64],
            request_id=message.request_id[:64],
            body=message.body,
        )
        with self._connection() as connection:
            connection.execute(statement)

    def prune(self, before: datetime) -> int:
        table = tables.inbound_messages
        statement = delete(table).where(table.c.received_at < before)
        with self._connection() as connection:
            result = connection.execute(statement)
        return result.rowcount

    def find(
        self,
        *,
        out_trade_no: str | None = None,
        verdict: str | None = None,
        kind: str | None = None,
        limit: int = 50,
    ) -> list[InboundMessage]:
        table = tables.inbound_messages
        query = select(table).order_by(table.c.id.desc()).limit(limit)
        if out_trade_no is not None:
            query = query.where(table.c.out_trade_no == out_trade_no)
        if verdict is not None:
            query = query.where(table.c.verdict == verdict)
        if kind is not None:
            query = query.where(table.c.kind == kind)
        with self._connection() as connection:
            rows = connection.execute(query).all()
        return [
            InboundMessage(
                kind=row.kind,
                received_at=row.received_at,
                verdict=row.verdict,
                body=row.body,
                out_trade_no=row.out_trade_no,
                remote_addr=row.remote_addr,
                request_id=row.request_id,
            )
            for row in rows
        ]


def _product(row: Row[Any]) -> Product:
    return Product(
        id=row.id,
        name=row.name,
        price=Fen(row.price_fen),
        available=bool(row.available),
    )


def _order_values(order: Order) -> dict[str, Any]:
    """The columns that a save may change (not the key, not created_at)."""
    return {
        "checkout_id": order.checkout_id,
        "body": order.body,
        "total_fee_fen": order.total_fee.value,
        "fee_type": order.fee_type,
        "state": order.state.value,
        "openid": order.openid,
        "prepay_id": order.prepay_id,
        "code_url": order.code_url,
        "code_expires_at": order.code_expires_at,
        "transaction_id": order.transaction_id or None,
        "time_end": order.time_end,
        "paid_at": order.paid_at,
        "queried_at": order.queried_at,
    }


def _order(row: Row[Any]) -> Order:
    return Order(
        out_trade_no=row.out_trade_no,
        product_id=row.product_id,
        body=row.body,
        total_fee=Fen(row.total_fee_fen),
        created_at=row.created_at,
        checkout_id=row.checkout_id,
        fee_type=row.fee_type,
        state=TradeState(row.state),
        openid=row.openid,
        prepay_id=row.prepay_id,
        code_url=row.code_url,
        code_expires_at=row.code_expires_at,
        transaction_id=row.transaction_id or "",
        time_end=row.time_end,
        paid_at=row.paid_at,
        queried_at=row.queried_at,
    )


# --- the unit of work -----------------------------------------------------


class SqlAlchemyUnitOfWork(UnitOfWork):
    """A unit of work over one database session.

    Each ``with`` block checks a connection out of the pool, runs one
    transaction (a new one starts after each ``commit()``), rolls back
    what was not committed and gives the connection back. One instance
    serves one thread at a time; it is not re-entrant.

    Args:
        bind: an :class:`~sqlalchemy.Engine` from :func:`create_engine_for`,
            or a ``sessionmaker`` bound to one.
    """

    products: SqlAlchemyProductRepository
    checkouts: SqlAlchemyCheckoutRepository
    orders: SqlAlchemyOrderRepository
    inbound: SqlAlchemyInboundLog

    def __init__(self, bind: Engine | sessionmaker[Session]) -> None:
        if isinstance(bind, Engine):
            bind = sessionmaker(bind=bind, autoflush=False, expire_on_commit=False)
        self._sessions = bind
        self._session: Session | None = None

    def __enter__(self) -> UnitOfWork:
        if self._session is not None:
            raise RuntimeError("this unit of work is already in use")
        session = self._sessions()
        self._session = session
        self.products = SqlAlchemyProductRepository(session)
        self.checkouts = SqlAlchemyCheckoutRepository(session)
        self.orders = SqlAlchemyOrderRepository(session)
        self.inbound = SqlAlchemyInboundLog(session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._session
        try:
            self.rollback()
        finally:
            self._session = None
            if session is not None:
                session.close()

    def commit(self) -> None:
        session = self._require_session()
        with translated(session.get_bind().engine.url):
            session.commit()

    def rollback(self) -> None:
        session = self._session
        if session is None:
            return
        try:
            session.rollback()
        except exc.DBAPIError as error:
            # The connection is gone, and the transaction with it; the
            # pool will not hand this connection out again.
            log.warning(
                "rollback failed database=%s reason=%s",
                describe(session.get_bind().engine),
                _safe_message(error, session.get_bind().engine.url),
            )

    def _require_session(self) -> Session:
        if self._session is None:
            raise RuntimeError("commit outside a unit of work")
        return self._session
