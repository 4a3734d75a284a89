"""Baseline: the data schema as the last build before Alembic left it (schema_info
version 2, commit e46d249).

Only what is missing is created: a database from that build already holds its tables and is
adopted by this revision (services/common/migrations.py).

Revision ID: data_0001
Revises:
Created: 2026-11-30 15:25:21.510227
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migrations import index_missing, table_missing

revision: str = "data_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if table_missing("fx_rates"):
        op.create_table(
            "fx_rates",
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("date", sa.Date(), nullable=False),
            sa.Column("rate", sa.Float(), nullable=False),
            sa.Column("source", sa.String(length=40), nullable=False),
            sa.PrimaryKeyConstraint("currency", "date"),
        )
    if table_missing("securities"):
        op.create_table(
            "securities",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("symbol", sa.String(length=32), nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("exchange", sa.String(length=8), nullable=False),
            sa.Column("country", sa.String(length=64), nullable=False),
            sa.Column("sector", sa.String(length=100), nullable=False),
            sa.Column("industry", sa.String(length=100), nullable=False),
            sa.Column("lot_size", sa.Integer(), nullable=False),
            sa.Column("active", sa.Boolean(), nullable=False),
            sa.Column("allow_buy", sa.Boolean(), nullable=False),
            sa.Column("allow_sell", sa.Boolean(), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("isin", sa.String(length=12), nullable=False),
            sa.Column("min_target", sa.Float(), nullable=True),
            sa.Column("max_target", sa.Float(), nullable=True),
            sa.Column("bucket", sa.String(length=64), nullable=False),
            sa.Column("yahoo_symbol", sa.String(length=32), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("symbol"),
        )
    if index_missing("securities", "ix_securities_isin"):
        op.create_index("ix_securities_isin", "securities", ["isin"], unique=False)

    if table_missing("daily_bars"):
        op.create_table(
            "daily_bars",
            sa.Column("security_id", sa.Integer(), nullable=False),
            sa.Column("date", sa.Date(), nullable=False),
            sa.Column("open", sa.Float(), nullable=True),
            sa.Column("high", sa.Float(), nullable=True),
            sa.Column("low", sa.Float(), nullable=True),
            sa.Column("close", sa.Float(), nullable=False),
            sa.Column("volume", sa.Float(), nullable=True),
            sa.Column("adj_close", sa.Float(), nullable=True),
            sa.Column("flag", sa.String(length=120), nullable=True),
            sa.Column("flag_known_on", sa.Date(), nullable=True),
            sa.ForeignKeyConstraint(
                ["security_id"],
                ["securities.id"],
            ),
            sa.PrimaryKeyConstraint("security_id", "date"),
        )
    if table_missing("indicator_cache"):
        op.create_table(
            "indicator_cache",
            sa.Column("security_id", sa.Integer(), nullable=False),
            sa.Column("through", sa.Date(), nullable=False),
            sa.Column("values", sa.Text(), nullable=False),
            sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(
                ["security_id"],
                ["securities.id"],
            ),
            sa.PrimaryKeyConstraint("security_id", "through"),
        )


def downgrade() -> None:
    op.drop_table("indicator_cache")
    op.drop_table("daily_bars")
    op.drop_index("ix_securities_isin", table_name="securities")
    op.drop_table("securities")
    op.drop_table("fx_rates")
