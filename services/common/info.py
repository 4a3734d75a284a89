"""`trader.common.v1.ServiceInfo`, served by every service (services/common/server.py): its
version and uptime, its database's size, revision and row counts, the free space where it
writes, and its latest warnings and errors (the in-memory tail of its log, logs.RECENT).

The gateway's GetSystemStatus asks each service once. Every figure is read when asked; a
database that cannot answer is reported in `database.error`, never as a failed call.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

from sqlalchemy import func, select, table, text
from sqlalchemy.exc import SQLAlchemyError
from trader.common.v1 import info_pb2, info_pb2_grpc

from services.common import clock
from services.common.db import Database, shown_url
from services.common.errors import InvalidArgument
from services.common.logs import RECENT, Recorded
from services.common.timestamps import to_timestamp

SERVICE_NAME = "trader.common.v1.ServiceInfo"
MAX_LOG_RECORDS = 50


@dataclass(frozen=True)
class DatabaseFigures:
    backend: str
    url: str
    size_bytes: int = 0
    schema_revision: str = ""
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows
    error: str = ""


@dataclass(frozen=True)
class DiskFigures:
    path: Path
    free_bytes: int = 0
    total_bytes: int = 0
    error: str = ""


def version() -> str:
    """The installed trader package's version (pyproject.toml), or "unknown"."""
    try:
        return metadata.version("trader")
    except metadata.PackageNotFoundError:
        return "unknown"


def sqlite_path(db: Database) -> Path | None:
    """The SQLite file of `db`, None for another backend or an in-memory database."""
    if db.engine.dialect.name != "sqlite" or db.engine.url.database in (None, "", ":memory:"):
        return None
    return Path(db.engine.url.database)


def database_figures(db: Database) -> DatabaseFigures:
    """Size, revision and rows per table of the service's own tables."""
    backend = db.engine.dialect.name
    url = shown_url(db.engine.url.render_as_string(hide_password=False))
    tables = sorted(db.schema.tables)
    try:
        with db.engine.connect() as connection:
            rows = {name: connection.scalar(select(func.count()).select_from(table(name))) or 0 for name in tables}
            revision = connection.scalar(text(f'SELECT version_num FROM "{db.schema.version_table}"')) or ""
            if backend == "postgresql":
                size = connection.scalar(text(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname = ANY(:names)"),
                    {"names": tables}) or 0
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        return DatabaseFigures(backend, url, error=f"{type(exc).__name__}: {reason}"[:300])
    path = sqlite_path(db)
    if path is not None:
        size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return DatabaseFigures(backend, url, int(size), revision, rows)


def disk_figures(path: Path) -> DiskFigures:
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return DiskFigures(path, error=exc.strerror or str(exc))
    return DiskFigures(path, usage.free, usage.total)


def _record_to_proto(record: Recorded) -> info_pb2.LogRecord:
    return info_pb2.LogRecord(at=to_timestamp(record.at), level=record.level, logger=record.logger,
                              message=record.message, trace_id=record.trace_id)


class ServiceInfoServicer(info_pb2_grpc.ServiceInfoServicer):
    def __init__(self, service: str, database: Database | None, var_dir: Path, started_at: datetime):
        self._service = service
        self._db = database
        self._var_dir = var_dir
        self._started_at = started_at

    def GetServiceInfo(self, request, context):
        if not 0 <= request.max_log_records <= MAX_LOG_RECORDS:
            raise InvalidArgument("max_log_records", f"must be between 0 and {MAX_LOG_RECORDS}, "
                                                     f"got {request.max_log_records}")
        now = clock.wall_now()
        reply = info_pb2.GetServiceInfoResponse(
            service=self._service, version=version(), started_at=to_timestamp(self._started_at),
            uptime_s=max(0.0, (now - self._started_at).total_seconds()), pid=os.getpid(),
            log_records=[_record_to_proto(r) for r in RECENT.latest(request.max_log_records)])
        disk_path = self._var_dir
        if self._db is not None:
            figures = database_figures(self._db)
            reply.database.CopyFrom(info_pb2.DatabaseInfo(
                backend=figures.backend, url=figures.url, size_bytes=figures.size_bytes,
                schema_revision=figures.schema_revision, error=figures.error,
                tables=[info_pb2.TableRows(table=name, rows=rows) for name, rows in figures.tables.items()]))
            path = sqlite_path(self._db)
            disk_path = path.parent if path is not None else self._var_dir
        disk = disk_figures(disk_path)
        reply.disk.CopyFrom(info_pb2.DiskInfo(path=str(disk.path), free_bytes=disk.free_bytes,
                                              total_bytes=disk.total_bytes, error=disk.error))
        return reply
