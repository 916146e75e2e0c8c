"""The SQL schema as SQLAlchemy Core tables: products, checkouts, orders
and the inbound log.

The Alembic migrations in ``migrations/versions`` create this schema; a test
compares the two so that they cannot drift apart. Money columns hold integer
fen; datetimes go in and out as timezone-aware UTC whatever the database.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Column
from sqlalchemy import DateTime
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import SmallInteger
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import TypeDecorator
from sqlalchemy import UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

# NOTE(storage): MariaDB compares strings case-insensitively by default,
# which would make out_trade_no "abc123" and "ABC123" the same key; the
# tables use a binary collation there. PostgreSQL gets "C" on the keys so
# that ORDER BY follows code points, as the in-memory store does.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def key(length: int) -> TypeEngine[str]:
    """A string key column: byte-ordered and case-sensitive everywhere."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; naive values are refused.

    PostgreSQL keeps the zone (``timestamptz``). SQLite and MariaDB keep a
    naive UTC wall time, which is made aware again on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing a naive datetime: {value.isoformat()}")
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


products = Table(
    "products",
    metadata,
    Column("id", key(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("price_fen", BigInteger, nullable=False),
    Column("available", Boolean, nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

checkouts = Table(
    "checkouts",
    metadata,
    Column("id", key(32), primary_key=True),
    Column("product_id", key(32), nullable=False),
    Column("mode", SmallInteger, nullable=False),
    Column("total_fee_fen", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("qr_content", String(1024), nullable=False),
    Column("payer_openid", String(128), nullable=False, server_default=""),
    Column("claimed_until", UtcDateTime, nullable=True),
    **MYSQL_TABLE_OPTIONS,
)

# NOTE(storage): no foreign keys. A mode-2 checkout adds its order before
# the checkout itself in one transaction, and MariaDB cannot defer a
# constraint to commit time; the in-memory reference has none either.
orders = Table(
    "orders",
    metadata,
    Column("out_trade_no", key(32), primary_key=True),
    Column("product_id", key(32), nullable=False),
    Column("checkout_id", key(32), nullable=True),
    Column("body", String(128), nullable=False),
    Column("total_fee_fen", BigInteger, nullable=False),
    Column("fee_type", String(8), nullable=False),
    Column("state", String(16), nullable=False),
    Column("openid", String(128), nullable=False),
    Column("prepay_id", String(64), nullable=False),
    Column("code_url", String(1024), nullable=False),
    Column("code_expires_at", UtcDateTime, nullable=True),
    # NULL, never "", when unpaid: the unique constraint then holds only
    # between real WeChat transaction ids.
    Column("transaction_id", key(32), nullable=True),
    Column("time_end", String(14), nullable=False),
    Column("paid_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # When orderquery was last called for this order (page self-healing).
    Column("queried_at", UtcDateTime, nullable=True),
    UniqueConstraint("transaction_id", name="uq_orders_transaction_id"),
    Index("ix_orders_checkout_id", "checkout_id"),
    # The reconciler's scan: unpaid orders, oldest first.
    Index("ix_orders_state_created_at", "state", "created_at"),
    **MYSQL_TABLE_OPTIONS,
)

# The audit trail: every inbound callback and notify, raw, with its verdict.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("verdict", String(32), nullable=False),
    Column("out_trade_no", key(32), nullable=False),
    Column("remote_addr", String(64), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column(
        "body",
        Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"),
        nullable=False,
    ),
    Index("ix_inbound_messages_out_trade_no", "out_trade_no"),
    **MYSQL_TABLE_OPTIONS,
)
