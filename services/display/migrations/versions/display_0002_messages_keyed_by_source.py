"""Messages keyed by (pool, source), with their post time (issue 8 item 8)

A message of the earlier schema (one per pool) keeps its text, expiry and mode under the default
source "" and counts as older than any new post. The table is rebuilt, since SQLite cannot alter
a primary key; the new one is created first so PostgreSQL's constraint names never clash.

Revision ID: display_0002
Revises: display_0001
Created: 2026-11-30 16:10:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from services.common.db import UtcDateTime

revision: str = "display_0002"
down_revision: str | None = "display_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EARLIER_POSTED_AT = datetime(1970, 1, 1, tzinfo=UTC)  # the old schema kept no post time


def upgrade() -> None:
    op.create_table(
        "messages_v3",
        sa.Column("pool", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("text", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pool", "source"),
    )
    op.get_bind().execute(
        sa.text("INSERT INTO messages_v3 (pool, source, text, expires_at, mode, posted_at) "
                "SELECT pool, '', text, expires_at, mode, :posted_at FROM messages")
        .bindparams(sa.bindparam("posted_at", type_=UtcDateTime())),
        {"posted_at": _EARLIER_POSTED_AT},
    )
    op.drop_table("messages")
    op.rename_table("messages_v3", "messages")


def downgrade() -> None:
    op.create_table(
        "messages_v2",
        sa.Column("pool", sa.String(length=16), nullable=False),
        sa.Column("text", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("pool"),
    )
    # One message per pool again: the newest post of each pool wins.
    op.get_bind().execute(sa.text(
        "INSERT INTO messages_v2 (pool, text, expires_at, mode) "
        "SELECT m.pool, m.text, m.expires_at, m.mode FROM messages m "
        "WHERE m.source = (SELECT n.source FROM messages n WHERE n.pool = m.pool "
        "ORDER BY n.posted_at DESC, n.source LIMIT 1)"))
    op.drop_table("messages")
    op.rename_table("messages_v2", "messages")
