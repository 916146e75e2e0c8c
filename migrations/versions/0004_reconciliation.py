"""Reconciliation: when an order was last queried, and an index to find
unpaid orders.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

``ix_orders_state_created_at`` serves the reconciler's scan (NOTPAY,
created before a time, oldest first, limited): without it every run reads
every order the shop ever took, which only grows, while the unpaid ones
stay few because each is settled within hours.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column(
            "queried_at",
            sa.DateTime(timezone=True).with_variant(
                mysql.DATETIME(fsp=6), "mysql", "mariadb"
            ),
            nullable=True,
        ),
    )
    op.create_index("ix_orders_state_created_at", "orders", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_state_created_at", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("queried_at")
