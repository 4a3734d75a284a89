"""Baseline: the trading schema as the last build before Alembic left it (schema_info
version 4, commit e46d249).

Only what is missing is created: a database from that build already holds its tables and is
adopted by this revision (services/common/migrations.py).

Revision ID: trading_0001
Revises:
Created: 2026-11-30 15:25:25.681150
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migrations import index_missing, table_missing

revision: str = "trading_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if table_missing("cash_movements"):
        op.create_table(
            "cash_movements",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("broker_id", sa.String(length=64), nullable=False),
            sa.Column("kind", sa.String(length=40), nullable=False),
            sa.Column("amount", sa.Float(), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("description", sa.String(length=300), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("broker_id"),
        )
    if table_missing("orders"):
        op.create_table(
            "orders",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("client_order_id", sa.String(length=64), nullable=False),
            sa.Column("symbol", sa.String(length=32), nullable=False),
            sa.Column("side", sa.String(length=4), nullable=False),
            sa.Column("quantity", sa.Integer(), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("state", sa.String(length=20), nullable=False),
            sa.Column("reason", sa.String(length=300), nullable=False),
            sa.Column("fill_price", sa.Float(), nullable=False),
            sa.Column("commission", sa.Float(), nullable=False),
            sa.Column("filled_quantity", sa.Integer(), nullable=False),
            sa.Column("broker_reference", sa.String(length=20), nullable=False),
            sa.Column("limit_price", sa.Float(), nullable=False),
            sa.Column("realized_pnl", sa.Float(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("client_order_id"),
        )
    if index_missing("orders", "ix_orders_broker_reference"):
        op.create_index("ix_orders_broker_reference", "orders", ["broker_reference"], unique=False)

    if table_missing("position_adjustments"):
        op.create_table(
            "position_adjustments",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("symbol", sa.String(length=32), nullable=False),
            sa.Column("quantity", sa.Integer(), nullable=False),
            sa.Column("reason", sa.String(length=300), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if table_missing("risk_settings"):
        op.create_table(
            "risk_settings",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("values", sa.String(length=2000), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if table_missing("order_events"):
        op.create_table(
            "order_events",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("order_id", sa.Integer(), nullable=False),
            sa.Column("state", sa.String(length=20), nullable=False),
            sa.Column("reason", sa.String(length=300), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(
                ["order_id"],
                ["orders.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
        )
    if table_missing("trades"):
        op.create_table(
            "trades",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("broker_trade_id", sa.String(length=64), nullable=False),
            sa.Column("order_id", sa.Integer(), nullable=True),
            sa.Column("client_order_id", sa.String(length=64), nullable=False),
            sa.Column("symbol", sa.String(length=32), nullable=False),
            sa.Column("side", sa.String(length=4), nullable=False),
            sa.Column("quantity", sa.Integer(), nullable=False),
            sa.Column("price", sa.Float(), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("commission", sa.Float(), nullable=False),
            sa.Column("executed_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("realized_pnl", sa.Float(), nullable=True),
            sa.ForeignKeyConstraint(
                ["order_id"],
                ["orders.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("broker_trade_id"),
        )
    if table_missing("paper_cash"):
        op.create_table(
            "paper_cash",
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("amount", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("currency"),
        )
    if table_missing("paper_executions"):
        op.create_table(
            "paper_executions",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("client_order_id", sa.String(length=64), nullable=False),
            sa.Column("symbol", sa.String(length=32), nullable=False),
            sa.Column("side", sa.String(length=4), nullable=False),
            sa.Column("quantity", sa.Integer(), nullable=False),
            sa.Column("price", sa.Float(), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("commission", sa.Float(), nullable=False),
            sa.Column("executed_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("client_order_id"),
        )
    if table_missing("paper_positions"):
        op.create_table(
            "paper_positions",
            sa.Column("symbol", sa.String(length=32), nullable=False),
            sa.Column("quantity", sa.Integer(), nullable=False),
            sa.Column("average_cost", sa.Float(), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.PrimaryKeyConstraint("symbol"),
        )
    if table_missing("paper_transfers"):
        op.create_table(
            "paper_transfers",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("reference", sa.String(length=128), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("from_currency", sa.String(length=3), nullable=False),
            sa.Column("from_amount", sa.Float(), nullable=False),
            sa.Column("to_currency", sa.String(length=3), nullable=False),
            sa.Column("to_amount", sa.Float(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("reference"),
        )


def downgrade() -> None:
    op.drop_table("paper_transfers")
    op.drop_table("paper_positions")
    op.drop_table("paper_executions")
    op.drop_table("paper_cash")
    op.drop_table("trades")
    op.drop_table("order_events")
    op.drop_table("risk_settings")
    op.drop_table("position_adjustments")
    op.drop_index("ix_orders_broker_reference", table_name="orders")
    op.drop_table("orders")
    op.drop_table("cash_movements")
