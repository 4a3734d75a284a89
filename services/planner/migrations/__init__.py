"""Migrations of the planner database: Alembic revisions in versions/ (the first one is the
baseline, the schema as schema_info version 1 left it)."""
