"""Baseline: the portfolio schema as the last build before Alembic left it (schema_info
version 2, commit e46d249).

Only what is missing is created: a database from that build already holds its tables and is
adopted by this revision (services/common/migrations.py).

Revision ID: portfolio_0001
Revises:
Created: 2026-11-30 15:25:22.964969
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migrations import table_missing

revision: str = "portfolio_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if table_missing("broker_sync"):
        op.create_table(
            "broker_sync",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if table_missing("cash_balances"):
        op.create_table(
            "cash_balances",
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("amount", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("currency"),
        )
    if table_missing("cash_flows"):
        op.create_table(
            "cash_flows",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("amount", sa.Float(), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("reference", sa.String(length=128), nullable=False),
            sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("reference"),
        )
    if table_missing("positions"):
        op.create_table(
            "positions",
            sa.Column("symbol", sa.String(length=32), nullable=False),
            sa.Column("quantity", sa.Integer(), nullable=False),
            sa.Column("average_cost", sa.Float(), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.PrimaryKeyConstraint("symbol"),
        )
    if table_missing("snapshots"):
        op.create_table(
            "snapshots",
            sa.Column("date", sa.Date(), nullable=False),
            sa.Column("positions_value_base", sa.Float(), nullable=False),
            sa.Column("cash_base", sa.Float(), nullable=False),
            sa.Column("total_value_base", sa.Float(), nullable=False),
            sa.Column("base_currency", sa.String(length=3), nullable=False),
            sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("date"),
        )


def downgrade() -> None:
    op.drop_table("snapshots")
    op.drop_table("positions")
    op.drop_table("cash_flows")
    op.drop_table("cash_balances")
    op.drop_table("broker_sync")
