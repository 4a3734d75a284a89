"""Per-service database: SQLAlchemy engine, transactions, and the schema brought to this build's
revision at start.

Each service owns one database (SQLite file under var/ by default, any SQLAlchemy URL through
TRADER_<SERVICE>_DB_URL; SQLite and PostgreSQL through psycopg are tested). Opening it checks
the URL and the connection first: a URL that cannot be used is a `DatabaseConfigError` naming the
variable and the problem (the service exits with code 2), never a traceback. Then the service's
Alembic migrations run (services/common/migrations.py), in one transaction.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import DateTime, TypeDecorator

from services.common import templates
from services.common.config import ConfigError, db_url_variable

if TYPE_CHECKING:
    from services.common.revisions import TableRevisions
from services.common.logs import event as log_event

log = logging.getLogger("trader.db")
CONNECT_TIMEOUT_S = 10
EXAMPLE_URLS = "sqlite:///var/trading.db or postgresql+psycopg://user:password@host:5432/dbname"
_migrate_in_child = False  # see migrate_in_child_processes


class DatabaseConfigError(ConfigError):
    """TRADER_<SERVICE>_DB_URL cannot be used: one line naming the variable and the problem."""

    def __init__(self, service: str, url: str, problem: str):
        super().__init__([f"{db_url_variable(service)}={shown_url(url)}: {problem}"])
        self.problem = problem

    def __str__(self) -> str:
        return self.problems[0]


class SchemaMismatch(DatabaseConfigError):
    """The database holds a schema this build cannot use (newer, or not one of ours)."""


class UtcDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware in UTC (SQLite keeps no
    offset; PostgreSQL answers in the session's time zone). A naive datetime is refused: every
    time in this system is UTC and aware (decision 3)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def shown_url(url: str) -> str:
    """The URL as the user wrote it, with any password masked (also when it does not parse)."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url` (raises ArgumentError, NoSuchModuleError or ImportError for a URL or
    driver that cannot be used; `open_engine` turns those into configuration errors)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S  # an unreachable host fails at start, not never
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


def open_engine(service: str, url: str) -> Engine:
    """An engine that has connected once, or DatabaseConfigError saying why it cannot."""
    try:
        engine = make_engine(url)
    except NoSuchModuleError:  # an ArgumentError too: first
        raise DatabaseConfigError(service, url, f"unknown database driver {_driver(url)!r}; this build "
                                                "supports sqlite and postgresql+psycopg") from None
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise DatabaseConfigError(service, url, f"not a database URL ({_one_line(exc)}); expected e.g. "
                                                f"{EXAMPLE_URLS}") from None
    except ImportError as exc:
        raise DatabaseConfigError(service, url, f"the driver for {_driver(url)!r} is not installed "
                                                f"({exc.name or exc}); use postgresql+psycopg for PostgreSQL") from None
    except OSError as exc:
        raise DatabaseConfigError(service, url, f"cannot create the database's folder: {exc}") from None
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise DatabaseConfigError(service, url, f"cannot connect: {_one_line(exc.orig)}") from None
    return engine


def _driver(url: str) -> str:
    return url.partition("://")[0]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def migrate_in_child_processes() -> None:
    """From now on this process's `Database`s migrate in a child process (`python -m
    services.common.migrations upgrade SERVICE`), so that a long-running service never loads
    Alembic (about 11 MiB resident, bench/footprint.py). run_service calls it before building
    the service; tests and tools migrate in-process. An in-memory SQLite database, which a
    child cannot reach, is always migrated in-process."""
    global _migrate_in_child
    _migrate_in_child = True


class Database:
    """An engine plus a session factory for one service's schema, migrated to this build's head
    revision when opened (see services/common/migrations.py)."""

    def __init__(self, url: str, schema, seeded: str | None = None):
        """`schema` is the service's `migrations.Schema`. Raises DatabaseConfigError (with
        SchemaMismatch for a schema this build cannot use).

        A fresh SQLite file is copied from a template when one is kept (services/common/templates.py):
        the template `seeded` names (the service's seeded start, see `restored`), else the
        migrated empty schema; a fresh file migrated here is kept as that template."""
        self.schema = schema
        fresh = templates.fresh_file(url)
        schema_key = templates.schema_key(schema) if fresh else None
        candidates = (seeded, schema_key) if fresh else ()
        self.restored = next((key for key in candidates if key and templates.restore(key, fresh)), None)
        if self.restored is not None:
            log_event(log, "database from template", service=schema.service, template=self.restored)
        self._fresh = fresh
        self.engine = open_engine(schema.service, url)
        try:
            if self.restored is None:
                if _migrate_in_child and make_url(url).database not in (None, "", ":memory:"):
                    _migrate_in_child_process(schema.service, url)
                else:
                    migrate_logged(self.engine, schema, url)
                if schema_key is not None:
                    templates.save(self.engine, schema_key)
        except Exception:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self._sessions.begin() as session:
            yield session

    @functools.cached_property
    def revisions(self) -> TableRevisions:
        """Its tables' revisions (services/common/revisions.py), counted from the first use."""
        from services.common.revisions import TableRevisions
        return TableRevisions(self)

    def keep_as_template(self, key: str) -> None:
        """Keep this database, made from a fresh file, as the template `key` (no-op otherwise)."""
        if self._fresh is not None:
            templates.save(self.engine, key)

    def listen(self, name: str, listener: Callable[[Session], None]) -> None:
        """Call `listener(session)` on a session event of this database's transactions, e.g.
        "after_commit" (SQLAlchemy's session events)."""
        event.listen(self._sessions, name, listener)

    def close(self) -> None:
        self.engine.dispose()


def migrate_logged(engine: Engine, schema, url: str) -> None:
    """Bring the database to the head revision (services/common/migrations.py) and log what
    changed. Raises DatabaseConfigError (with SchemaMismatch for a schema this build cannot use)."""
    from services.common.migrations import migrate  # here: that module imports this one

    try:
        before, after = migrate(engine, schema)
    except DBAPIError as exc:  # e.g. a role without CREATE on the schema, a read-only file
        log_event(log, "migration failed", logging.ERROR, service=schema.service, statement=exc.statement)
        raise DatabaseConfigError(schema.service, url, f"cannot bring the schema to this build's revision "
                                                       f"(nothing was changed): {_one_line(exc.orig)}") from None
    if before != after:
        log_event(log, "database migrated", service=schema.service, from_revision=before or "empty",
                  to_revision=after)


def _migrate_in_child_process(service: str, url: str) -> None:
    """migrate_logged in `python -m services.common.migrations upgrade`: its log lines go to
    this process's stderr, a configuration problem comes back on its stdout and is raised here
    as the same DatabaseConfigError; RuntimeError for any other failure (logged by the child)."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    child = subprocess.run([sys.executable, "-m", "services.common.migrations", "upgrade", service, "--log-level",
                            level], env={**os.environ, db_url_variable(service): url}, stdout=subprocess.PIPE,
                           text=True, check=False)
    if child.returncode == 2 and child.stdout.strip():
        found = json.loads(child.stdout)
        raise (SchemaMismatch if found["mismatch"] else DatabaseConfigError)(service, url, found["problem"])
    if child.returncode != 0:
        raise RuntimeError(f"migrating the {service} database failed in a child process (exit code "
                           f"{child.returncode}; its error is logged above)")
