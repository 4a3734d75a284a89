"""Baseline: the display schema as the last build before Alembic left it (schema_info
version 2, commit e46d249).

Only what is missing is created: a database from that build already holds its tables and is
adopted by this revision (services/common/migrations.py).

Revision ID: display_0001
Revises:
Created: 2026-11-30 15:25:26.933214
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migrations import table_missing

revision: str = "display_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if table_missing("display_settings"):
        op.create_table(
            "display_settings",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("brightness", sa.Integer(), nullable=False),
            sa.Column("speed_ms", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if table_missing("messages"):
        op.create_table(
            "messages",
            sa.Column("pool", sa.String(length=16), nullable=False),
            sa.Column("text", sa.String(length=256), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("mode", sa.String(length=16), nullable=False),
            sa.PrimaryKeyConstraint("pool"),
        )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("display_settings")
