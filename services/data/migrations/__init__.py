"""Migrations of the market-data database: Alembic revisions in versions/ (the first one is the
baseline, the schema as schema_info version 2 left it), and the steps that brought databases
from before Alembic to that version."""

from sqlalchemy import text


def _v1_to_v2(connection) -> None:
    for statement in (
        "ALTER TABLE securities ADD COLUMN isin VARCHAR(12) NOT NULL DEFAULT ''",
        "ALTER TABLE securities ADD COLUMN min_target FLOAT",
        "ALTER TABLE securities ADD COLUMN max_target FLOAT",
        "ALTER TABLE securities ADD COLUMN bucket VARCHAR(64) NOT NULL DEFAULT 'core'",
        "ALTER TABLE securities ADD COLUMN yahoo_symbol VARCHAR(32) NOT NULL DEFAULT ''",
        "ALTER TABLE daily_bars ADD COLUMN adj_close FLOAT",
        "ALTER TABLE daily_bars ADD COLUMN flag VARCHAR(120)",
        "ALTER TABLE daily_bars ADD COLUMN flag_known_on DATE",
    ):
        connection.execute(text(statement))


# schema_info version -> the step to the next version
LEGACY_STEPS = {1: _v1_to_v2}
