"""Baseline: the gateway schema as the last build before Alembic left it (schema_info
version 1, commit e46d249).

Only what is missing is created: a database from that build already holds its tables and is
adopted by this revision (services/common/migrations.py).

Revision ID: gateway_0001
Revises:
Created: 2026-11-30 15:25:19.570148
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migrations import table_missing

revision: str = "gateway_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if table_missing("cycle_runs"):
        op.create_table(
            "cycle_runs",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
            sa.Column("simulated", sa.Boolean(), nullable=False),
            sa.Column("ok", sa.Boolean(), nullable=False),
            sa.Column("trace_id", sa.String(length=32), nullable=False),
            sa.Column("steps", sa.Text(), nullable=False),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )


def downgrade() -> None:
    op.drop_table("cycle_runs")
