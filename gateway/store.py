"""Gateway storage: one row per sync cycle run."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import Boolean, Integer, String, Text, delete, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.maintenance import RetentionRule
from services.common.migrations import Schema


class Base(DeclarativeBase):
    pass


class CycleRunRow(Base):
    __tablename__ = "cycle_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    as_of: Mapped[datetime] = mapped_column(UtcDateTime())
    simulated: Mapped[bool] = mapped_column(Boolean)
    ok: Mapped[bool] = mapped_column(Boolean)
    trace_id: Mapped[str] = mapped_column(String(32))
    steps: Mapped[str] = mapped_column(Text)  # JSON list of {name, status, duration_ms, detail}
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime())


SCHEMA = Schema("gateway", (Base.metadata,), Path(__file__).with_name("migrations") / "versions",
                legacy_version=1)


def open_database(url: str) -> Database:
    return Database(url, SCHEMA)


def add_run(session: Session, as_of: datetime, simulated: bool, ok: bool, trace_id: str, steps: list[dict],
            finished_at: datetime) -> None:
    session.add(CycleRunRow(as_of=as_of, simulated=simulated, ok=ok, trace_id=trace_id,
                            steps=json.dumps(steps), finished_at=finished_at))


def last_run(session: Session, simulated: bool | None = None, ok: bool | None = None) -> CycleRunRow | None:
    query = select(CycleRunRow).order_by(CycleRunRow.id.desc()).limit(1)
    if simulated is not None:
        query = query.where(CycleRunRow.simulated.is_(simulated))
    if ok is not None:
        query = query.where(CycleRunRow.ok.is_(ok))
    return session.scalars(query).first()


def run_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(CycleRunRow)) or 0


# --- retention (services/common/maintenance.py) ---

def delete_runs_finished_before(session: Session, cutoff: datetime) -> int:
    return session.execute(delete(CycleRunRow).where(CycleRunRow.finished_at < cutoff)).rowcount or 0


# By when a run was recorded (the wall clock), so a replay's simulated years are not taken for old rows.
RETENTION_RULES = (
    RetentionRule("cycle_runs", "sync cycle runs recorded before the cutoff", "TRADER_CYCLE_RUN_RETENTION_DAYS",
                  365, delete_runs_finished_before, wall_clock=True),
)
