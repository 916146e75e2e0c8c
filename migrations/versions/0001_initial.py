"""Products, checkouts and orders.

Revision ID: 0001
Revises:
Create Date: 2026-12-03

Types are spelled out here rather than imported from the adapters, so that
this revision keeps creating the same schema whatever the code becomes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Binary collation on MariaDB: keys are case-sensitive, as WeChat's are.
TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def key(length: int) -> sa.types.TypeEngine[str]:
    # Byte order on PostgreSQL too, whatever the database's locale.
    return sa.String(length).with_variant(
        sa.String(length, collation="C"), "postgresql"
    )


def utc_datetime() -> sa.types.TypeEngine[object]:
    # timestamptz on PostgreSQL; naive UTC with microseconds elsewhere.
    return sa.DateTime(timezone=True).with_variant(
        mysql.DATETIME(fsp=6), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", key(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "checkouts",
        sa.Column("id", key(32), nullable=False),
        sa.Column("product_id", key(32), nullable=False),
        sa.Column("mode", sa.SmallInteger(), nullable=False),
        sa.Column("total_fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", utc_datetime(), nullable=False),
        sa.Column("qr_content", sa.String(1024), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkouts"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "orders",
        sa.Column("out_trade_no", key(32), nullable=False),
        sa.Column("product_id", key(32), nullable=False),
        sa.Column("checkout_id", key(32), nullable=True),
        sa.Column("body", sa.String(128), nullable=False),
        sa.Column("total_fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("fee_type", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("openid", sa.String(128), nullable=False),
        sa.Column("prepay_id", sa.String(64), nullable=False),
        sa.Column("code_url", sa.String(1024), nullable=False),
        sa.Column("code_expires_at", utc_datetime(), nullable=True),
        sa.Column("transaction_id", key(32), nullable=True),
        sa.Column("time_end", sa.String(14), nullable=False),
        sa.Column("paid_at", utc_datetime(), nullable=True),
        sa.Column("created_at", utc_datetime(), nullable=False),
        sa.Column("updated_at", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("out_trade_no", name="pk_orders"),
        sa.UniqueConstraint("transaction_id", name="uq_orders_transaction_id"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_orders_checkout_id", "orders", ["checkout_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_checkout_id", table_name="orders")
    op.drop_table("orders")
    op.drop_table("checkouts")
    op.drop_table("products")
