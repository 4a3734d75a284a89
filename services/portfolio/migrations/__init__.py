"""Migrations of the portfolio database: Alembic revisions in versions/ (the first one is the
baseline, the schema as schema_info version 2 left it), and the steps that brought databases
from before Alembic to that version."""

# schema_info version -> the step to the next version. Version 2 only added the snapshots
# table, which the baseline revision creates when it is missing.
LEGACY_STEPS = {1: lambda connection: None}
