"""Schema migrations with Alembic: one revision history per service, one environment for all.

A service's `Schema` names its models' metadata, the folder of its revisions
(`<service>/migrations/versions/`, beside its store) and its own version table
`alembic_version_<service>`, so several services can share one database. `migrate` runs at every
start (`db.Database`), in one transaction: on SQLite `BEGIN IMMEDIATE` with foreign keys off
during the change and checked before the commit; on PostgreSQL transactional DDL under an
advisory lock, so two processes starting at once migrate one after the other.

- A database at a revision of this build is upgraded to the head revision; an empty one is
  upgraded from nothing.
- A database written before Alembic (a `schema_info` row for the service) is adopted: from an
  older version the service's legacy steps bring it to `legacy_version` (what the baseline
  revision describes), the row is deleted, and the baseline revision creates only what is
  missing; then the later revisions run.
- Refused with SchemaMismatch: a revision this build does not know (a newer build wrote it), a
  `schema_info` version newer than the baseline or without a legacy path, and a database that
  holds the service's tables but no version at all.

`python -m services.common.migrations revision SERVICE -m MESSAGE` writes a new revision by
autogenerate (README, "Development"); `check` compares the models with the migrations.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, MetaData, inspect, text

from services.common.config import db_url_variable
from services.common.db import (
    DatabaseConfigError,
    SchemaMismatch,
    UtcDateTime,
    make_engine,
    migrate_logged,
    open_engine,
)
from services.common.logs import setup_logging

# Alembic is imported where it is used: a service imports this module for its Schema, and
# migrates in a child process (db.Database), so it never keeps Alembic loaded (about 11 MiB
# resident, bench/footprint.py).
if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

ENV_DIR = Path(__file__).with_name("migration_env")
LEGACY_TABLE = "schema_info"
# service -> the module whose SCHEMA it migrates
STORES = {
    "gateway": "gateway.store",
    "data": "services.data.store",
    "portfolio": "services.portfolio.store",
    "planner": "services.planner.store",
    "trading": "services.trading.store",
    "display": "services.display.store",
}


@dataclass(frozen=True)
class Schema:
    """What a service's database holds and how it gets there."""

    service: str                       # names the version table and TRADER_<SERVICE>_DB_URL
    metadata: tuple[MetaData, ...]     # the models, as the code uses them
    versions: Path                     # the folder of the service's Alembic revisions
    legacy_version: int                # the schema_info version its baseline revision describes
    # schema_info version v -> the step from v to v + 1, for databases older than legacy_version
    legacy_steps: Mapping[int, Callable[[Connection], None]] = field(default_factory=dict)

    @property
    def version_table(self) -> str:
        return f"alembic_version_{self.service}"

    @property
    def tables(self) -> set[str]:
        return {name for metadata in self.metadata for name in metadata.tables}


def load_schema(service: str) -> Schema:
    if service not in STORES:
        raise ValueError(f"unknown service {service!r} (one of {', '.join(STORES)})")
    return importlib.import_module(STORES[service]).SCHEMA


def alembic_config(schema: Schema, connection: Connection | None = None) -> Config:
    from alembic.config import Config  # noqa: PLC0415 - Alembic loads only to migrate (see the imports)

    config = Config()
    config.set_main_option("script_location", str(ENV_DIR))
    config.set_main_option("version_locations", str(schema.versions))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes.update(schema=schema, connection=connection)
    return config


def scripts(schema: Schema) -> ScriptDirectory:
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - Alembic loads only to migrate (see the imports)

    return ScriptDirectory.from_config(alembic_config(schema))


def migrate(engine: Engine, schema: Schema) -> tuple[str | None, str]:
    """Bring the database to this build's head revision, in one transaction. Returns (what it
    held before: a revision, "schema_info version N" or None when empty; the revision now).
    Raises SchemaMismatch for a database this build cannot use (nothing is changed then)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # db.Database logs one line instead
    from alembic import command  # noqa: PLC0415 - Alembic loads only to migrate (see the imports)
    from alembic.migration import MigrationContext  # noqa: PLC0415

    dialect = engine.dialect.name
    with engine.connect() as connection:
        if dialect == "sqlite":
            # Table rebuilds (batch operations) need foreign keys off, and the pragma is ignored
            # inside a transaction; IMMEDIATE takes the write lock before anything is read.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            lock = zlib.crc32(f"trader-migrations-{schema.service}".encode())
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})
        try:
            before = _prepare(connection, schema)
            command.upgrade(alembic_config(schema, connection), "head")
            after = MigrationContext.configure(connection, opts={"version_table": schema.version_table}
                                               ).get_current_revision()
            if dialect == "sqlite":
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"{schema.service} migrations broke foreign keys: {broken[:5]}")
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            if dialect == "sqlite":
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    return before, after


def _prepare(connection: Connection, schema: Schema) -> str | None:
    """Check what the database holds and adopt a pre-Alembic one; returns what it held."""
    from alembic.migration import MigrationContext  # noqa: PLC0415 - Alembic loads only to migrate (see the imports)

    tables = set(inspect(connection).get_table_names())
    if schema.version_table in tables:
        context = MigrationContext.configure(connection, opts={"version_table": schema.version_table})
        heads = context.get_current_heads()
        known = scripts(schema)
        for revision in heads:
            if not _is_known(known, revision):
                raise _mismatch(connection, schema, (
                    f"holds revision {revision!r} of the {schema.service} schema, which this build does not "
                    f"know (its newest is {known.get_current_head()!r}): a newer build wrote it; run that "
                    "build or restore the backup taken before the upgrade"))
        if heads:
            return ",".join(heads)
    legacy = _legacy_version(connection, schema) if LEGACY_TABLE in tables else None
    if legacy is not None:
        _adopt(connection, schema, legacy)
        return f"schema_info version {legacy}"
    present = sorted(schema.tables & tables)
    if present:
        raise _mismatch(connection, schema, (
            f"holds the tables {', '.join(present)} but no {schema.service} schema version: not a database "
            "this system wrote; point the variable at a new database"))
    return None


def _is_known(script: ScriptDirectory, revision: str) -> bool:
    from alembic.util import CommandError  # noqa: PLC0415 - Alembic loads only to migrate (see the imports)

    try:
        return script.get_revision(revision) is not None
    except CommandError:  # alembic's ResolutionError is one
        return False


def _legacy_version(connection: Connection, schema: Schema) -> int | None:
    return connection.execute(text(f"SELECT version FROM {LEGACY_TABLE} WHERE name = :name"),
                              {"name": schema.service}).scalar_one_or_none()


def _adopt(connection: Connection, schema: Schema, version: int) -> None:
    """A pre-Alembic database at `version`: legacy steps up to the baseline's version, then the
    schema_info row goes (the table too once no service is left in it)."""
    if version > schema.legacy_version:
        raise _mismatch(connection, schema, (
            f"holds schema_info version {version} of the {schema.service} schema, newer than this build's "
            f"{schema.legacy_version}: a newer build wrote it"))
    missing = [v for v in range(version, schema.legacy_version) if v not in schema.legacy_steps]
    if missing:
        raise _mismatch(connection, schema, (
            f"holds schema_info version {version} of the {schema.service} schema, and this build has no "
            f"migration from version {missing[0]}"))
    for step in range(version, schema.legacy_version):
        schema.legacy_steps[step](connection)
    connection.execute(text(f"DELETE FROM {LEGACY_TABLE} WHERE name = :name"), {"name": schema.service})
    if connection.execute(text(f"SELECT COUNT(*) FROM {LEGACY_TABLE}")).scalar_one() == 0:
        connection.execute(text(f"DROP TABLE {LEGACY_TABLE}"))


def _mismatch(connection: Connection, schema: Schema, problem: str) -> SchemaMismatch:
    return SchemaMismatch(schema.service, str(connection.engine.url), problem)


# --- helpers for revision files ---

def table_missing(table: str) -> bool:
    """True when `table` does not exist yet. Only baseline revisions ask: a database adopted from
    before Alembic already holds its tables, so the baseline creates only what is missing."""
    from alembic import op

    return not inspect(op.get_bind()).has_table(table)


def index_missing(table: str, index: str) -> bool:
    """True when `index` on `table` does not exist yet (baseline revisions, as table_missing)."""
    from alembic import op

    return index not in {i["name"] for i in inspect(op.get_bind()).get_indexes(table)}


# --- the environment (migration_env/env.py calls run_env) ---

def _include_name(name: str | None, type_: str, _parents) -> bool:
    """Autogenerate looks at the service's own objects: not the pre-Alembic table, nor another
    service's version table in a shared database."""
    return not (type_ == "table" and (name == LEGACY_TABLE or (name or "").startswith("alembic_version_")))


def _render_item(type_: str, obj, _autogen_context):
    """Revisions spell UtcDateTime as the column type it creates, so they never import models."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _context_options(schema: Schema) -> dict:
    return {"target_metadata": list(schema.metadata), "version_table": schema.version_table,
            "render_as_batch": True, "compare_type": True, "include_name": _include_name,
            "render_item": _render_item}


def run_env(context) -> None:
    """Run the migrations (or autogenerate) on the connection `migrate` or the CLI opened."""
    from alembic.util import CommandError  # noqa: PLC0415 - Alembic loads only to migrate (see the imports)

    if context.is_offline_mode():
        raise CommandError("offline (--sql) migrations are not supported: run them against a database")
    schema: Schema = context.config.attributes["schema"]
    context.configure(connection=context.config.attributes["connection"], **_context_options(schema))
    with context.begin_transaction():
        context.run_migrations()


# --- tools: models against migrations, new revisions ---

def differences(schema: Schema, engine: Engine | None = None) -> list:
    """What autogenerate finds between the models and a database migrated to head: [] when they
    agree. Without `engine`, a temporary SQLite database."""
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415 - Alembic loads only to migrate (see the imports)
    from alembic.migration import MigrationContext  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as folder:
        own = engine is None
        engine = make_engine(f"sqlite:///{folder}/head.db") if own else engine
        try:
            migrate(engine, schema)
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts=_context_options(schema))
                return compare_metadata(context, list(schema.metadata))
        finally:
            if own:
                engine.dispose()


def new_revision(schema: Schema, message: str, empty: bool = False) -> Path | None:
    """Write the next revision of `schema`: autogenerated from the models' changes since head
    (None when there are none), or `empty` for a data-only step written by hand."""
    from alembic import command  # noqa: PLC0415 - Alembic loads only to migrate (see the imports)

    script = scripts(schema)
    rev_id = f"{schema.service}_{len(list(script.walk_revisions())) + 1:04d}"

    def keep_only_changes(_context, _revision, directives):
        if not empty and directives[0].upgrade_ops.is_empty():
            directives[:] = []

    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/head.db")
        try:
            migrate(engine, schema)
            with engine.connect() as connection:
                config = alembic_config(schema, connection)
                # the new file in the project's style (ruff is a dev dependency)
                config.set_section_option("post_write_hooks", "hooks", "format, fix")
                for hook, options in (("format", "format"), ("fix", "check --fix --quiet")):
                    config.set_section_option("post_write_hooks", f"{hook}.type", "module")
                    config.set_section_option("post_write_hooks", f"{hook}.module", "ruff")
                    config.set_section_option("post_write_hooks", f"{hook}.options",
                                              f"{options} REVISION_SCRIPT_FILENAME")
                written = command.revision(config, message=message,
                                           autogenerate=not empty, rev_id=rev_id,
                                           process_revision_directives=keep_only_changes)
        finally:
            engine.dispose()
    return Path(written.path) if written else None


def _upgrade(service: str, log_level: str) -> int:
    """The child of db.Database: migrate (logging as the service, JSON lines on stderr); a
    configuration problem goes to stdout as JSON for the parent, with exit code 2."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the service once started, not this
    setup_logging(service, log_level)
    url = os.environ[db_url_variable(service)]
    try:
        engine = open_engine(service, url)
        try:
            migrate_logged(engine, load_schema(service), url)
        finally:
            engine.dispose()
    except DatabaseConfigError as exc:
        print(json.dumps({"problem": exc.problem, "mismatch": isinstance(exc, SchemaMismatch)}))
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.migrations", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="write the next revision, autogenerated from the models")
    revision.add_argument("service", choices=STORES)
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--empty", action="store_true", help="an empty revision for a data step written by hand")
    check = commands.add_parser("check", help="exit 1 when models and migrations differ")
    check.add_argument("services", nargs="*", metavar="SERVICE", help="default: every service")
    upgrade = commands.add_parser("upgrade", help="migrate the database in TRADER_<SERVICE>_DB_URL to head "
                                                  "(a service's start-up runs it, see db.Database)")
    upgrade.add_argument("service", choices=STORES)
    upgrade.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if args.command == "upgrade":
        return _upgrade(args.service, args.log_level)
    if args.command == "revision":
        path = new_revision(load_schema(args.service), args.message, args.empty)
        if path is None:
            print(f"{args.service}: the models match the migrations, nothing to write "
                  "(--empty writes a revision for a data step)", file=sys.stderr)
            return 1
        print(f"wrote {path}: review it, add data steps, then run the tests")
        return 0
    failed = False
    for service in args.services or STORES:
        found = differences(load_schema(service))
        failed = failed or bool(found)
        print(f"{service}: " + ("models and migrations agree" if not found else f"differ: {found}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
