"""Per-service database: SQLAlchemy engine, transactions, schema creation and version check.

Each service owns one database (SQLite file under var/ by default, any SQLAlchemy URL through
TRADER_<SERVICE>_DB_URL). The schema is created at start; an older schema is migrated step by
step with the service's migrations, in one transaction. A database without a migration path
(or written by a newer build) is refused at start rather than used half-compatible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, event, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator


class SchemaMismatch(Exception):
    pass


class UtcDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no offset).
    A naive datetime is refused: every time in this system is UTC and aware (decision 3)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


_schema_info = Table(
    "schema_info",
    MetaData(),
    Column("name", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    """An engine plus a session factory for one service's schema."""

    def __init__(self, url: str, metadata: MetaData, schema_name: str, schema_version: int,
                 migrations: Mapping[int, Callable[[Connection], None]] | None = None):
        """`migrations[v]` upgrades a database at version v to v + 1."""
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        _schema_info.create(self.engine, checkfirst=True)
        with self.engine.begin() as connection:
            found = connection.execute(
                select(_schema_info.c.version).where(_schema_info.c.name == schema_name)
            ).scalar_one_or_none()
            if found is None:
                connection.execute(_schema_info.insert().values(name=schema_name, version=schema_version))
            elif found < schema_version and all(v in (migrations or {}) for v in range(found, schema_version)):
                for version in range(found, schema_version):
                    migrations[version](connection)
                connection.execute(_schema_info.update().where(_schema_info.c.name == schema_name)
                                   .values(version=schema_version))
            elif found != schema_version:
                raise SchemaMismatch(
                    f"database {self.engine.url.render_as_string(hide_password=True)} holds schema "
                    f"{schema_name!r} version {found}, this build needs {schema_version}: "
                    "migrate it or point TRADER_<SERVICE>_DB_URL at a new database"
                )
        metadata.create_all(self.engine)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
