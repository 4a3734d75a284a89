"""Database maintenance, one implementation for every service: each owns its database, so each
maintains its own (`RunMaintenance`; README, "Maintenance and backups").

Parts, run in this order (the original's daily maintenance and weekly integrity check,
data-display.md section 8, trading-portfolio-jobs.md section 7):

- backup: SQLite's online backup API (https://sqlite.org/backup.html) copies the live database
  (under WAL in one step, see copy_database) into `<backup dir>/<service>-<UTC time>.db`; the
  copy is opened again and must pass `PRAGMA integrity_check` before it takes its name. Then
  the backups older than the kept days (default 7, the original's) are deleted, never the
  newest. PostgreSQL: pg_dump instead.
- retention: each service's rules (`RetentionRule`) delete rows dated before their cutoff.
- optimize: ANALYZE, and VACUUM when free pages make it worth it (SQLite); VACUUM (ANALYZE) of
  the service's tables (PostgreSQL).
- checkpoint: `PRAGMA wal_checkpoint(TRUNCATE)` (SQLite); PostgreSQL checkpoints on its own.
- integrity_check: `PRAGMA integrity_check` and `PRAGMA foreign_key_check` (SQLite); amcheck's
  `bt_index_check` on the service's indexes where the extension is installed (PostgreSQL).

A part that fails is reported with why; the others still run. One maintenance at a time per
service. Domain-style: `now` (the call's clock, for rows dated on it) and `wall_now` (for files
and rows dated on the wall clock) are passed in.

`python -m services.common.maintenance restore SERVICE BACKUP_FILE` puts a backup back in place
once it has checked it (integrity, and a schema revision this build knows) and that the service
is stopped; `verify` runs only the checks.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import sqlite3
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from opentelemetry import trace
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from services.common.config import REPO_ROOT, ConfigError, Env, db_url_variable
from services.common.db import Database, shown_url
from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.common.logs import event
from services.common.migrations import LEGACY_TABLE, STORES, Schema, load_schema, scripts

log = logging.getLogger("trader.maintenance")
tracer = trace.get_tracer("trader.maintenance")

PARTS = ("backup", "retention", "optimize", "checkpoint", "integrity_check")
OK, FAILED, SKIPPED = "ok", "failed", "skipped"
MAX_DAYS = 100_000               # the longest horizon a caller or a variable may set (as TRADER_DATA_RETENTION_DAYS)
DEFAULT_BACKUP_KEEP_DAYS = 7     # the original kept 7 daily backups
BACKUP_STEP_PAGES = 1024         # pages per backup step (4 MiB at SQLite's default page size)
BACKUP_MAX_RESTARTS = 3          # then the rest is copied in one step (see copy_in_steps)
VACUUM_FREE_SHARE = 0.10         # VACUUM once free pages are this share of the file
BUSY_TIMEOUT_MS = 30_000         # as the services' own connections (services/common/db.py)
CHECKPOINT_BUSY_MS = 2_000       # a TRUNCATE checkpoint holds new writers back while it waits
INTEGRITY_MAX_ERRORS = 20
AMCHECK_FUNCTION = "bt_index_check(regclass, boolean)"

# --- the rules and settings each service contributes ---


@dataclass(frozen=True)
class RetentionRule:
    """Rows of one kind that go once they are older than the kept days.

    `prune(session, cutoff)` deletes the rows dated before `cutoff` (a date when `by_day`, else a
    UTC datetime) and returns how many; the caller commits, or rolls back in a dry run.
    """

    name: str
    description: str
    variable: str                # the environment variable that sets the kept days
    default_days: int            # 0 keeps every row
    prune: Callable[[Session, date | datetime], int]
    by_day: bool = False         # the rows carry a date, not an instant
    wall_clock: bool = False     # the rows are dated on the wall clock, not the call's as-of clock


@dataclass(frozen=True)
class MaintenanceSettings:
    backup_dir: Path                                   # this service's own folder
    backup_keep_days: int
    retention: tuple[tuple[RetentionRule, int], ...]   # each rule with its configured days


def load_settings(service: str, var_dir: Path, rules: Sequence[RetentionRule],
                  environ: Mapping[str, str] | None = None) -> MaintenanceSettings:
    """The maintenance settings from the environment: TRADER_BACKUP_DIR (default
    `<TRADER_VAR_DIR>/backups`; the service's backups go to `<dir>/<service>/`),
    TRADER_BACKUP_KEEP_DAYS (7) and each rule's variable. Raises ConfigError naming every
    variable that is wrong."""
    env = Env(environ)
    backup_dir = Path(env.text("TRADER_BACKUP_DIR", str(var_dir / "backups"))) / service
    keep = _whole_days(env, "TRADER_BACKUP_KEEP_DAYS", DEFAULT_BACKUP_KEEP_DAYS, minimum=1)
    retention = tuple((rule, _whole_days(env, rule.variable, rule.default_days, minimum=0)) for rule in rules)
    env.check()
    return MaintenanceSettings(backup_dir, keep, retention)


def _whole_days(env: Env, name: str, default: int, minimum: int) -> int:
    days = env.number(name, default, minimum=minimum, maximum=MAX_DAYS)
    if days != int(days):
        env.problems.append(f"{name}={env.raw(name)!r}: expected whole days")
    return int(days)


# --- what a call asks and what it gets ---


@dataclass(frozen=True)
class MaintenanceRequest:
    parts: tuple[str, ...] = ()            # empty: every part the backend has
    backup_keep_days: int | None = None    # None: the configured days
    retention_days: Mapping[str, int] = field(default_factory=dict)  # rule -> days, 0 keeps all
    retention_dry_run: bool = False
    vacuum: bool = False                   # VACUUM whatever the share of free pages


@dataclass(frozen=True)
class BackupFile:
    path: Path
    size_bytes: int
    integrity: str        # "ok" or the problems found
    schema_revision: str
    created_at: datetime


@dataclass(frozen=True)
class RetentionResult:
    rule: str
    description: str
    keep_days: int
    cutoff: date | datetime | None   # None: every row kept
    deleted_rows: int
    detail: str = ""                 # why the rule failed


@dataclass
class PartResult:
    name: str
    status: str = OK
    duration_ms: float = 0.0
    detail: str = ""
    backup: BackupFile | None = None
    removed_backups: list[Path] = field(default_factory=list)
    retention: list[RetentionResult] = field(default_factory=list)


@dataclass(frozen=True)
class MaintenanceReport:
    service: str
    backend: str
    started_at: datetime
    duration_ms: float
    parts: tuple[PartResult, ...]

    @property
    def ok(self) -> bool:
        return all(part.status != FAILED for part in self.parts)


class PartFailed(Exception):
    """A part could not do its job; the message says why (the reply's detail)."""


# --- the use case ---


class Maintenance:
    """Runs the maintenance parts on one service's database, one call at a time."""

    def __init__(self, schema: Schema, db: Database, settings: MaintenanceSettings):
        self.schema = schema
        self._db = db
        self._settings = settings
        self._rules = {rule.name: days for rule, days in settings.retention}
        self._lock = threading.Lock()
        self._running_since: datetime | None = None
        backend = db.engine.dialect.name
        if backend == "sqlite":
            self._backend: _Backend = _Sqlite(schema, db, settings)
        elif backend == "postgresql":
            self._backend = _Postgres(schema, db)
        else:  # db.open_engine accepts only these two
            raise ValueError(f"no maintenance for the {backend} backend")

    @property
    def backend(self) -> str:
        return self._backend.name

    def run(self, request: MaintenanceRequest, now: datetime, wall_now: datetime) -> MaintenanceReport:
        """Run the parts `request` asks for. Raises InvalidArgument (bad request), and
        FailedPrecondition for a part this backend lacks (backup_unavailable, ...) or while
        another maintenance runs (maintenance_running); nothing is done then."""
        self._check(request)
        parts = self._parts(request)
        if not self._lock.acquire(blocking=False):
            since = self._running_since  # set by the running call just after it took the lock
            started = f" started at {since:%Y-%m-%dT%H:%M:%SZ}" if since is not None else ""
            raise FailedPrecondition("maintenance_running", f"a maintenance of the {self.schema.service} database"
                                                            f"{started} is still running; try again when it ends")
        try:
            self._running_since = wall_now
            started = time.perf_counter()
            results = tuple(self._run_part(name, request, now, wall_now) for name in parts)
            report = MaintenanceReport(self.schema.service, self.backend, wall_now,
                                       _elapsed_ms(started), results)
        finally:
            self._running_since = None
            self._lock.release()
        event(log, "maintenance done", service=report.service, ok=report.ok, ms=round(report.duration_ms, 1),
              parts={p.name: p.status for p in report.parts})
        return report

    def _check(self, request: MaintenanceRequest) -> None:
        unknown = [p for p in request.parts if p not in PARTS]
        if unknown:
            raise InvalidArgument("parts", f"unknown part {unknown[0]!r}; the parts are {', '.join(PARTS)}")
        if request.backup_keep_days is not None and not 1 <= request.backup_keep_days <= MAX_DAYS:
            raise InvalidArgument("backup_keep_days", f"must be between 1 and {MAX_DAYS} days, "
                                                      f"got {request.backup_keep_days}")
        for rule, days in request.retention_days.items():
            name = f"retention_days[{rule[:40]!r}]"
            if rule not in self._rules:
                rules = ", ".join(self._rules) or "none: nothing it stores may go"
                raise InvalidArgument(name, f"not a retention rule of the {self.schema.service} service "
                                            f"(its rules: {rules})")
            if not 0 <= days <= MAX_DAYS:
                raise InvalidArgument(name, f"must be between 0 (keep every row) and {MAX_DAYS} days, got {days}")

    def _parts(self, request: MaintenanceRequest) -> tuple[str, ...]:
        if not request.parts:
            return PARTS
        for name in request.parts:
            try:
                lacking = self._backend.unavailable(name)
            except SQLAlchemyError as exc:  # PostgreSQL asked whether amcheck is there, and did not answer
                raise Unavailable(f"database unavailable: {_described(exc)}") from exc
            if lacking is not None:
                raise FailedPrecondition(f"{name}_unavailable", lacking)
        return tuple(p for p in PARTS if p in request.parts)

    def _run_part(self, name: str, request: MaintenanceRequest, now: datetime, wall_now: datetime) -> PartResult:
        result = PartResult(name)
        started = time.perf_counter()
        with tracer.start_as_current_span(f"maintenance.{name}") as span:
            try:
                lacking = self._backend.unavailable(name)
                if lacking is not None:
                    result.status, result.detail = SKIPPED, lacking
                elif name == "retention":
                    self._retention(request, now, wall_now, result)
                else:
                    self._backend.run(name, request, wall_now, result)
            except PartFailed as exc:
                result.status, result.detail = FAILED, str(exc)
            except (OSError, sqlite3.Error, SQLAlchemyError) as exc:  # the file system or the database refused
                result.status, result.detail = FAILED, _described(exc)
                event(log, "maintenance part failed", logging.WARNING, part=name, detail=result.detail)
            except Exception as exc:  # noqa: BLE001 - reported in the reply; the other parts still run
                result.status, result.detail = FAILED, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                event(log, "maintenance part failed", logging.ERROR, exc_info=True, part=name)
            span.set_attribute("maintenance.status", result.status)
        result.duration_ms = _elapsed_ms(started)
        return result

    def _retention(self, request: MaintenanceRequest, now: datetime, wall_now: datetime, result: PartResult) -> None:
        if not self._settings.retention:
            result.detail = f"the {self.schema.service} service has no retention rules: it keeps every row"
            return
        for rule, configured in self._settings.retention:
            days = request.retention_days.get(rule.name, configured)
            result.retention.append(_apply_rule(self._db, rule, days, wall_now if rule.wall_clock else now,
                                                request.retention_dry_run))
        failed = [r.rule for r in result.retention if r.detail]
        deleted = sum(r.deleted_rows for r in result.retention)
        verb = "would delete" if request.retention_dry_run else "deleted"
        result.detail = f"{verb} {deleted} rows"
        if failed:
            result.status = FAILED
            result.detail += f"; failed: {', '.join(failed)}"


def _apply_rule(db: Database, rule: RetentionRule, days: int, now: datetime, dry_run: bool) -> RetentionResult:
    if days == 0:
        return RetentionResult(rule.name, rule.description, 0, None, 0)
    instant = now - timedelta(days=days)
    cutoff = instant.date() if rule.by_day else instant
    try:
        with Session(db.engine) as session:
            deleted = rule.prune(session, cutoff)
            if dry_run:
                session.rollback()
            else:
                session.commit()
    except Exception as exc:  # noqa: BLE001 - the other rules still run; the reply says why
        event(log, "retention rule failed", logging.ERROR, exc_info=True, rule=rule.name)
        return RetentionResult(rule.name, rule.description, days, cutoff, 0, _described(exc))
    return RetentionResult(rule.name, rule.description, days, cutoff, deleted)


def _described(exc: BaseException) -> str:
    """One line: an OSError's reason and file, a database error's message."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {' '.join(str(getattr(exc, 'orig', None) or exc).split())}"


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# --- backends ---


class _Backend(ABC):
    name = ""

    @abstractmethod
    def unavailable(self, part: str) -> str | None:
        """Why this backend has no such part (what to use instead), or None."""

    @abstractmethod
    def run(self, part: str, request: MaintenanceRequest, wall_now: datetime, result: PartResult) -> None:
        """Run `part`, recording what it did in `result`."""


class _Sqlite(_Backend):
    name = "sqlite"

    def __init__(self, schema: Schema, db: Database, settings: MaintenanceSettings):
        self._schema = schema
        self._settings = settings
        database = db.engine.url.database
        self._path = Path(database) if database and database != ":memory:" else None

    def unavailable(self, part: str) -> str | None:
        if self._path is None and part != "retention":
            return "an in-memory SQLite database has no file to back up, optimize, checkpoint or check"
        return None

    @contextlib.contextmanager
    def _connect(self, busy_ms: int = BUSY_TIMEOUT_MS) -> Iterator[sqlite3.Connection]:
        """A connection of its own (autocommit), apart from the service's pool."""
        connection = sqlite3.connect(self._path, timeout=busy_ms / 1000, isolation_level=None,
                                     check_same_thread=False)
        try:
            yield connection
        finally:
            connection.close()

    def run(self, part: str, request: MaintenanceRequest, wall_now: datetime, result: PartResult) -> None:
        if part == "backup":
            self._backup(request, wall_now, result)
        elif part == "optimize":
            self._optimize(request, result)
        elif part == "checkpoint":
            self._checkpoint(result)
        elif part == "integrity_check":
            problems = self._integrity()
            if problems:
                raise PartFailed("; ".join(problems))
            result.detail = "ok: PRAGMA integrity_check and foreign_key_check found no problem"

    def _backup(self, request: MaintenanceRequest, wall_now: datetime, result: PartResult) -> None:
        folder = self._settings.backup_dir
        folder.mkdir(parents=True, exist_ok=True)
        target = _backup_name(folder, self._schema.service, wall_now)
        with self._connect() as source:
            result.backup = write_backup(source, target, self._schema, wall_now)
        keep_days = request.backup_keep_days or self._settings.backup_keep_days
        result.removed_backups = remove_old_backups(folder, self._schema.service, wall_now - timedelta(days=keep_days),
                                                    keep=target)
        result.detail = (f"{target.name}: {result.backup.size_bytes} bytes, integrity ok, revision "
                         f"{result.backup.schema_revision}; {len(result.removed_backups)} backups older than "
                         f"{keep_days} days removed")

    def _optimize(self, request: MaintenanceRequest, result: PartResult) -> None:
        with self._connect() as connection:
            pages, free = _page_counts(connection)
            connection.execute("ANALYZE")
            share = free / pages if pages else 0.0
            if request.vacuum or share >= VACUUM_FREE_SHARE:
                connection.execute("VACUUM")
                after = _page_counts(connection)[0]
                # under WAL the new pages go to the log first; the file shrinks at the checkpoint
                result.detail = (f"ANALYZE; VACUUM: {pages} -> {after} pages of {_page_size(connection)} bytes "
                                 f"({share:.0%} were free)")
            else:
                result.detail = (f"ANALYZE; no VACUUM: {share:.0%} of the pages are free "
                                 f"(below {VACUUM_FREE_SHARE:.0%}; `vacuum` forces it)")

    def _checkpoint(self, result: PartResult) -> None:
        wal = Path(f"{self._path}-wal")
        before = _file_size(wal)
        with self._connect(CHECKPOINT_BUSY_MS) as connection:
            busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if frames == -1:
            result.detail = "not in WAL mode: nothing to checkpoint"
        elif busy:
            raise PartFailed(f"busy: readers or a writer held the write-ahead log for {CHECKPOINT_BUSY_MS} ms; "
                             f"{copied} of {frames} frames copied, the log is not truncated (the next try will)")
        else:
            result.detail = (f"write-ahead log copied into the database and truncated: {before} -> "
                             f"{_file_size(wal)} bytes")

    def _integrity(self) -> list[str]:
        with self._connect() as connection:
            return integrity_problems(connection)


class _Postgres(_Backend):
    name = "postgresql"

    def __init__(self, schema: Schema, db: Database):
        self._schema = schema
        self._engine = db.engine

    def unavailable(self, part: str) -> str | None:
        database = make_url(self._engine.url).database
        if part == "backup":
            return (f"a PostgreSQL database is backed up with pg_dump, e.g. `pg_dump -Fc -d {database} -f "
                    f"{self._schema.service}.dump` (restore with pg_restore)")
        if part == "checkpoint":
            return "PostgreSQL checkpoints its write-ahead log itself (checkpoint_timeout, max_wal_size)"
        if part == "integrity_check":
            return self._amcheck_unavailable(database)
        return None

    def _amcheck_unavailable(self, database: str | None) -> str | None:
        with self._engine.connect() as connection:
            if connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'")).first() is None:
                return (f"PostgreSQL checks indexes with the amcheck extension, not installed in {database}: "
                        "CREATE EXTENSION amcheck (as its owner), or run pg_amcheck")
            role, allowed = connection.execute(text(
                f"SELECT current_user, has_function_privilege('{AMCHECK_FUNCTION}', 'EXECUTE')")).one()
            if not allowed:
                return (f"the role {role} may not run amcheck: GRANT EXECUTE ON FUNCTION {AMCHECK_FUNCTION} "
                        f"TO {role}, or run pg_amcheck")
        return None

    def _tables(self, connection) -> list[str]:
        present = set(inspect(connection).get_table_names())
        return sorted(present & (self._schema.tables | {self._schema.version_table}))

    def run(self, part: str, request: MaintenanceRequest, wall_now: datetime, result: PartResult) -> None:
        if part == "optimize":
            with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                tables = self._tables(connection)
                quote = connection.dialect.identifier_preparer.quote
                connection.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(quote(t) for t in tables)}")
            result.detail = f"VACUUM (ANALYZE) of {len(tables)} tables"
        elif part == "integrity_check":
            checked, problems = self._amcheck()
            if problems:
                raise PartFailed("; ".join(problems[:INTEGRITY_MAX_ERRORS]))
            result.detail = f"ok: amcheck bt_index_check found no problem in {checked} indexes"

    def _amcheck(self) -> tuple[int, list[str]]:
        problems = []
        with self._engine.connect() as connection:
            indexes = connection.execute(text(
                "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
                "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
                "WHERE t.relname = ANY(:tables) AND t.relnamespace = to_regnamespace(current_schema())::oid "
                "AND a.amname = 'btree'"), {"tables": self._tables(connection)}).scalars().all()
            for index in indexes:
                try:
                    with connection.begin_nested():
                        connection.execute(text("SELECT bt_index_check(CAST(:index AS regclass), true)"),
                                           {"index": index})
                except Exception as exc:  # noqa: BLE001 - a corrupt index is what this looks for
                    problems.append(f"{index}: {' '.join(str(getattr(exc, 'orig', exc)).split())}")
            connection.rollback()
        return len(indexes), problems


# --- SQLite files: copies, checks, names ---


def _page_counts(connection: sqlite3.Connection) -> tuple[int, int]:
    return (connection.execute("PRAGMA page_count").fetchone()[0],
            connection.execute("PRAGMA freelist_count").fetchone()[0])


def _page_size(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA page_size").fetchone()[0]


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def integrity_problems(connection: sqlite3.Connection) -> list[str]:
    """What `PRAGMA integrity_check` and `PRAGMA foreign_key_check` find ([] when nothing); an
    error reading the file (not a database, malformed) is a problem too."""
    try:
        rows = [row[0] for row in connection.execute(f"PRAGMA integrity_check({INTEGRITY_MAX_ERRORS})")]
        problems = [] if rows == ["ok"] else rows
        problems += [f"foreign key: {table} row {rowid} -> {parent}"
                     for table, rowid, parent, _ in connection.execute("PRAGMA foreign_key_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return problems[:INTEGRITY_MAX_ERRORS]


class _Restarting(Exception):
    """The source kept changing under a stepped copy."""


def copy_database(source: sqlite3.Connection, target: sqlite3.Connection) -> None:
    """Copy with the backup API. Under WAL (every service's database, services/common/db.py) in
    one step: a single read transaction, which neither the service's readers nor its writers
    wait for (only a checkpoint cannot pass it). In rollback-journal mode a reader blocks
    writers, so the copy goes in steps (`copy_in_steps`). Steps under WAL would gain nothing and
    restart at every write by another connection: bench/maintenance.py measures both."""
    if source.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        source.backup(target)
    else:
        copy_in_steps(source, target)


def copy_in_steps(source: sqlite3.Connection, target: sqlite3.Connection) -> int:
    """Copy in steps of BACKUP_STEP_PAGES, each a read transaction of its own, so that writers
    get the lock in between. A write by another connection restarts the copy; after
    BACKUP_MAX_RESTARTS the rest is copied in one step. Returns the restarts."""
    last = {"remaining": None, "restarts": 0}

    def progress(_status: int, remaining: int, _total: int) -> None:
        if last["remaining"] is not None and remaining > last["remaining"]:
            last["restarts"] += 1
            if last["restarts"] > BACKUP_MAX_RESTARTS:
                raise _Restarting
        last["remaining"] = remaining

    try:
        source.backup(target, pages=BACKUP_STEP_PAGES, progress=progress, sleep=0.05)
    except _Restarting:
        event(log, "backup restarted too often; copying in one step", restarts=last["restarts"])
        source.backup(target, pages=-1)
    return last["restarts"]


def write_backup(source: sqlite3.Connection, target: Path, schema: Schema, now: datetime) -> BackupFile:
    """Copy the database open on `source` to `target`, a self-contained file (no write-ahead
    log beside it), and check it: the file gets its name only once the copy opened again passes
    PRAGMA integrity_check and holds the service's schema revision. Raises PartFailed."""
    partial = target.with_name(target.name + ".partial")
    _remove_database_file(partial)
    try:
        with contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as copy:
            copy_database(source, copy)
            copy.execute("PRAGMA journal_mode=DELETE")
        checked = check_backup(partial, schema)
        if checked.problems:
            raise PartFailed(f"the copy failed its check, removed: {'; '.join(checked.problems)}")
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
        _fsync_folder(target.parent)
    finally:
        _remove_database_file(partial)
    return BackupFile(target, target.stat().st_size, "ok", checked.revision, now)


def _remove_database_file(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class BackupCheck:
    revision: str          # the schema revision it holds ("" when none)
    problems: list[str]    # [] when it can be restored by this build


def check_backup(path: Path, schema: Schema) -> BackupCheck:
    """Open `path` read-only and check it: an SQLite database that passes PRAGMA integrity_check,
    holding `schema`'s version table with a revision this build knows (a newer build's backup
    is refused: this code cannot run it)."""
    if not path.is_file():
        return BackupCheck("", [f"{path}: no such file"])
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return BackupCheck("", [f"cannot open {path}: {exc}"])
    with contextlib.closing(connection):
        problems = integrity_problems(connection)
        if problems:
            return BackupCheck("", [f"integrity check: {p}" for p in problems])
        revision, problem = _revision_of(connection, schema)
    return BackupCheck(revision, [problem] if problem else [])


def _revision_of(connection: sqlite3.Connection, schema: Schema) -> tuple[str, str | None]:
    """(revision, problem): the revision a copy holds, and why this build cannot use it."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if schema.version_table not in tables:
        if LEGACY_TABLE in tables:
            row = connection.execute(f"SELECT version FROM {LEGACY_TABLE} WHERE name = ?", (schema.service,)).fetchone()
            if row is not None and row[0] <= schema.legacy_version:
                return f"schema_info version {row[0]}", None
        return "", f"not a {schema.service} database: no {schema.version_table} table"
    revisions = [row[0] for row in connection.execute(f"SELECT version_num FROM {schema.version_table}")]
    if len(revisions) != 1:
        return ",".join(revisions), f"holds {len(revisions)} revisions of the {schema.service} schema, expected one"
    known = scripts(schema)
    try:
        found = known.get_revision(revisions[0])
    except Exception:  # noqa: BLE001 - alembic's resolution errors: a revision it does not know
        found = None
    if found is None:
        return revisions[0], (f"holds revision {revisions[0]!r} of the {schema.service} schema, which this build "
                              f"does not know (its newest is {known.get_current_head()!r}): a newer build wrote it")
    return revisions[0], None


_STAMP = "%Y%m%dT%H%M%SZ"


def _backup_name(folder: Path, service: str, now: datetime) -> Path:
    """`<service>-<UTC time>.db`, with `-2`, `-3`... when that second is taken."""
    stem = f"{service}-{now.astimezone(UTC).strftime(_STAMP)}"
    candidate, number = folder / f"{stem}.db", 1
    while candidate.exists():
        number += 1
        candidate = folder / f"{stem}-{number}.db"
    return candidate


def backup_files(folder: Path, service: str) -> list[tuple[datetime, Path]]:
    """The service's backups in `folder` (by their names), oldest first."""
    pattern = re.compile(rf"^{re.escape(service)}-(\d{{8}}T\d{{6}}Z)(?:-\d+)?\.db$")
    found = []
    for path in folder.glob(f"{service}-*.db") if folder.is_dir() else ():
        match = pattern.match(path.name)
        if match:
            found.append((datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC), path))
    return sorted(found)


def remove_old_backups(folder: Path, service: str, cutoff: datetime, keep: Path) -> list[Path]:
    """Delete the service's backups made before `cutoff`, except `keep` (the newest, just
    checked). Other files in the folder are never touched."""
    removed = []
    for made, path in backup_files(folder, service):
        if made < cutoff and path != keep:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# --- restore (python -m services.common.maintenance restore SERVICE BACKUP_FILE) ---


class RestoreRefused(Exception):
    """The backup cannot be put in place; the message says why and what to do."""


def database_url(service: str, environ: Mapping[str, str] | None = None) -> str:
    """The service's database URL as the service itself resolves it (TRADER_<SERVICE>_DB_URL,
    else `<TRADER_VAR_DIR>/<service>.db`)."""
    env = Env(environ)
    var_dir = Path(env.text("TRADER_VAR_DIR", str(REPO_ROOT / "var")))
    return env.text(db_url_variable(service), f"sqlite:///{var_dir / (service + '.db')}")


def sqlite_path(service: str, url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise RestoreRefused(f"the {service} database is {shown_url(url)}, not SQLite: restore a PostgreSQL "
                             "database from its pg_dump file with pg_restore")
    if not parsed.database or parsed.database == ":memory:":
        raise RestoreRefused(f"the {service} database {url} is in memory: there is no file to restore into")
    return Path(parsed.database)


def restore(service: str, backup: Path, url: str, now: datetime) -> tuple[BackupCheck, Path | None]:
    """Put `backup` in place of the service's SQLite database, once it is checked and the
    database is not in use: the current database is first copied beside itself as
    `<service>-<time>.before-restore.db`. Returns (the backup's check, that copy or None when
    there was no database). Raises RestoreRefused, changing nothing."""
    schema = load_schema(service)
    live = sqlite_path(service, url)
    checked = check_backup(backup, schema)
    if checked.problems:
        raise RestoreRefused(f"{backup} cannot be restored: {'; '.join(checked.problems)}")
    live.parent.mkdir(parents=True, exist_ok=True)
    existed = live.exists() and live.stat().st_size > 0
    with _exclusive(service, live) as connection:
        kept = None
        if existed:
            kept = live.with_name(f"{service}-{now.astimezone(UTC).strftime(_STAMP)}.before-restore.db")
            _keep_current(connection, live, kept)
        with contextlib.closing(sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)) as source:
            source.backup(connection)
        problems = integrity_problems(connection)
        if problems:  # the backup was checked: only a failing disk gets here
            raise RestoreRefused(f"the restored {live} fails its integrity check ({'; '.join(problems)}); "
                                 f"the database before the restore is {kept}")
    return checked, kept


def _keep_current(connection: sqlite3.Connection, live: Path, kept: Path) -> None:
    """Copy the database about to be replaced to `kept`: through SQLite, or, when SQLite cannot
    read it (the damage a restore is often for), byte for byte with its write-ahead log (the
    exclusive lock keeps both still)."""
    try:
        with contextlib.closing(sqlite3.connect(kept, isolation_level=None)) as copy:
            connection.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.DatabaseError:
        _remove_database_file(kept)
        for suffix in ("", "-wal"):
            if Path(f"{live}{suffix}").exists():
                shutil.copyfile(f"{live}{suffix}", f"{kept}{suffix}")


@contextlib.contextmanager
def _exclusive(service: str, live: Path) -> Iterator[sqlite3.Connection]:
    """A connection holding the database's exclusive lock until it closes: refused while any
    other connection (a running service) has the file open."""
    connection = sqlite3.connect(live, timeout=0.5, isolation_level=None)
    try:
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            connection.execute("BEGIN EXCLUSIVE")
            connection.execute("COMMIT")  # the lock stays: exclusive locking mode keeps it until close
        except sqlite3.OperationalError as exc:
            raise RestoreRefused(f"{live} is in use ({exc}): stop the {service} service first") from None
        except sqlite3.DatabaseError as exc:  # not a database at all: SQLite cannot even lock it
            raise RestoreRefused(f"{live} is not an SQLite database ({exc}): with the {service} service stopped, "
                                 "move it aside and restore again") from None
        yield connection
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.maintenance",
                                     description="Check a backup of a service's SQLite database, or restore it.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary in (("verify", "check a backup: integrity, and a schema revision this build knows"),
                          ("restore", "check a backup, then put it in place of the stopped service's database")):
        command = commands.add_parser(name, help=summary)
        command.add_argument("service", choices=STORES)
        command.add_argument("backup", type=Path)
        command.add_argument("--db-url", help="the database to restore into (default: as the service resolves it "
                                              "from TRADER_<SERVICE>_DB_URL and TRADER_VAR_DIR)")
    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            checked = check_backup(args.backup, load_schema(args.service))
            if checked.problems:
                print(f"{args.backup}: cannot be restored: {'; '.join(checked.problems)}", file=sys.stderr)
                return 1
            print(f"{args.backup}: integrity ok, {args.service} schema revision {checked.revision}")
            return 0
        url = args.db_url or database_url(args.service)
        checked, kept = restore(args.service, args.backup, url, datetime.now(UTC))
    except (RestoreRefused, ConfigError) as exc:
        print(f"restore refused: {exc}", file=sys.stderr)
        return 1
    head = scripts(load_schema(args.service)).get_current_head()
    print(f"restored {args.backup} (revision {checked.revision}) into {sqlite_path(args.service, url)}")
    if kept is not None:
        print(f"the database before the restore is kept as {kept}")
    if checked.revision != head:
        print(f"the {args.service} service migrates it to revision {head} when it starts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
