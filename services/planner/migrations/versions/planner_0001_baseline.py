"""Baseline: the planner schema as the last build before Alembic left it (schema_info
version 1, commit e46d249).

Only what is missing is created: a database from that build already holds its tables and is
adopted by this revision (services/common/migrations.py).

Revision ID: planner_0001
Revises:
Created: 2026-11-30 15:25:24.278460
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migrations import table_missing

revision: str = "planner_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if table_missing("plans"):
        op.create_table(
            "plans",
            sa.Column("portfolio_hash", sa.String(length=16), nullable=False),
            sa.Column("as_of_date", sa.String(length=10), nullable=False),
            sa.Column("plan_id", sa.String(length=32), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("portfolio_hash", "as_of_date"),
        )


def downgrade() -> None:
    op.drop_table("plans")
