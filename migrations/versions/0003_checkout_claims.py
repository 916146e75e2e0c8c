"""Mode-1 checkouts remember the one payer who may open orders on them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "checkouts",
        sa.Column("payer_openid", sa.String(128), nullable=False, server_default=""),
    )
    op.add_column(
        "checkouts",
        sa.Column(
            "claimed_until",
            sa.DateTime(timezone=True).with_variant(
                mysql.DATETIME(fsp=6), "mysql", "mariadb"
            ),
            nullable=True,
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("checkouts") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("payer_openid")
