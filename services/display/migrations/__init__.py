"""Migrations of the display database: Alembic revisions in versions/ (the first one is the
baseline, the schema as schema_info version 2 left it), and the step that brought databases from
before Alembic to that version."""

from sqlalchemy import text


def _v1_to_v2(connection) -> None:
    connection.execute(text("ALTER TABLE messages ADD COLUMN mode VARCHAR(16) NOT NULL DEFAULT 'normal'"))


# schema_info version -> the step to the next version
LEGACY_STEPS = {1: _v1_to_v2}
