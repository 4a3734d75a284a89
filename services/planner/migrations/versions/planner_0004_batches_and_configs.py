"""Incremental planner batches (sequences, evaluations, the best result per state and day) and
planner configurations with their history (issue 14).

Revision ID: planner_0004
Revises: planner_0003
Created: 2026-11-30 18:05:54.075043
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "planner_0004"
down_revision: str | None = "planner_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "planner_batches",
        sa.Column("batch_key", sa.String(length=32), nullable=False),
        sa.Column("state_key", sa.String(length=32), nullable=False),
        sa.Column("as_of_date", sa.String(length=10), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("generated", sa.Integer(), nullable=False),
        sa.Column("evaluated", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("plateau", sa.Integer(), nullable=False),
        sa.Column("beam", sa.Text(), nullable=False),
        sa.Column("current_score", sa.Float(), nullable=False),
        sa.Column("best_sequence_hash", sa.String(length=32), nullable=True),
        sa.Column("best_score", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("batch_key"),
    )
    op.create_table(
        "planner_configs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("bucket_id", sa.String(length=32), nullable=True),
        sa.Column("toml", sa.Text(), nullable=False),
        sa.Column("sliders", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("bucket_id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "planner_config_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("config_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("bucket_id", sa.String(length=32), nullable=True),
        sa.Column("toml", sa.Text(), nullable=False),
        sa.Column("sliders", sa.Text(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["config_id"], ["planner_configs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("planner_config_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_planner_config_history_config_id"), ["config_id"], unique=False)

    op.create_table(
        "planner_evaluations",
        sa.Column("batch_key", sa.String(length=32), nullable=False),
        sa.Column("sequence_hash", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("end_score", sa.Float(), nullable=False),
        sa.Column("end_cash_base", sa.Float(), nullable=False),
        sa.Column("cost_base", sa.Float(), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["batch_key"], ["planner_batches.batch_key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_key", "sequence_hash"),
    )
    op.create_table(
        "planner_sequences",
        sa.Column("batch_key", sa.String(length=32), nullable=False),
        sa.Column("sequence_hash", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("pattern_type", sa.String(length=16), nullable=False),
        sa.Column("generator", sa.String(length=32), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["batch_key"], ["planner_batches.batch_key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_key", "sequence_hash"),
    )
    with op.batch_alter_table("planner_sequences", schema=None) as batch_op:
        batch_op.create_index("ix_planner_sequences_pending", ["batch_key", "completed", "position"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("planner_sequences", schema=None) as batch_op:
        batch_op.drop_index("ix_planner_sequences_pending")

    op.drop_table("planner_sequences")
    op.drop_table("planner_evaluations")
    with op.batch_alter_table("planner_config_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_planner_config_history_config_id"))

    op.drop_table("planner_config_history")
    op.drop_table("planner_configs")
    op.drop_table("planner_batches")
