"""The inbound log: every raw callback and notify with its verdict.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True).with_variant(
                mysql.DATETIME(fsp=6), "mysql", "mariadb"
            ),
            nullable=False,
        ),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column(
            "out_trade_no",
            sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("remote_addr", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        # MEDIUMTEXT on MariaDB: a body may reach the 64 KiB parse limit.
        sa.Column(
            "body",
            sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_messages"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_inbound_messages_out_trade_no", "inbound_messages", ["out_trade_no"]
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_out_trade_no", table_name="inbound_messages")
    op.drop_table("inbound_messages")
