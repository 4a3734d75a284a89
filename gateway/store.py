"""Gateway storage: one row per sync cycle run, one per job run."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.maintenance import RetentionRule
from services.common.migrations import Schema

RUNNING, OK, FAILED, SKIPPED = "RUNNING", "OK", "FAILED", "SKIPPED"
KEEP_JOB_RUNS = 20


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


class JobRunRow(Base):
    """A job's run: triggered by its schedule, by RunJob, or by a replay's simulated day; a
    scheduled trigger that found the job still running is a SKIPPED row."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_id", "job", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))   # RUNNING, OK, FAILED, SKIPPED
    trigger: Mapped[str] = mapped_column(String(16))  # SCHEDULE, MANUAL, REPLAY
    as_of: Mapped[datetime] = mapped_column(UtcDateTime())  # the run's "now" (simulated in a replay)
    simulated: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)  # wall clock
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)  # wall clock
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    trace_id: Mapped[str] = mapped_column(String(32))


SCHEMA = Schema("gateway", (Base.metadata,), Path(__file__).with_name("migrations") / "versions",
                legacy_version=1)


def open_database(url: str) -> Database:
    return Database(url, SCHEMA)


# The statements the cycle and the jobs run on every call: on the tables (no ORM bookkeeping),
# built once (compiled once), the values given as parameters.
_ADD_RUN = insert(CycleRunRow.__table__)
_START_JOB_RUN = insert(JobRunRow.__table__)
_FINISH_JOB_RUN = update(JobRunRow.__table__).where(JobRunRow.__table__.c.id == bindparam("run_id"))


def add_run(session: Session, as_of: datetime, simulated: bool, ok: bool, trace_id: str, steps: list[dict],
            finished_at: datetime) -> None:
    session.execute(_ADD_RUN, {"as_of": as_of, "simulated": simulated, "ok": ok, "trace_id": trace_id,
                               "steps": json.dumps(steps), "finished_at": finished_at})


def last_run(session: Session, simulated: bool | None = None, ok: bool | None = None) -> CycleRunRow | None:
    query = select(CycleRunRow).order_by(CycleRunRow.id.desc()).limit(1)
    if simulated is not None:
        query = query.where(CycleRunRow.simulated.is_(simulated))
    if ok is not None:
        query = query.where(CycleRunRow.ok.is_(ok))
    return session.scalars(query).first()


def run_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(CycleRunRow)) or 0


# --- job runs ---

def start_job_run(session: Session, job: str, status: str, trigger: str, as_of: datetime, simulated: bool,
                  started_at: datetime, trace_id: str, detail: str = "") -> int:
    """Records a run (RUNNING, or already finished as SKIPPED); returns its id. One INSERT."""
    finished = status != RUNNING
    return session.execute(_START_JOB_RUN, {
        "job": job, "status": status, "trigger": trigger, "as_of": as_of, "simulated": simulated,
        "started_at": started_at, "finished_at": started_at if finished else None,
        "duration_ms": 0.0 if finished else None, "detail": detail, "trace_id": trace_id}).inserted_primary_key[0]


def finish_job_run(session: Session, run_id: int, status: str, detail: str, finished_at: datetime,
                   duration_ms: float) -> None:
    """One UPDATE."""
    session.execute(_FINISH_JOB_RUN, {"run_id": run_id, "status": status, "detail": detail,
                                      "finished_at": finished_at, "duration_ms": duration_ms})


def interrupt_running_jobs(session: Session, finished_at: datetime, detail: str) -> int:
    """Rows left RUNNING by a gateway that stopped mid-run become FAILED with `detail`."""
    return session.execute(update(JobRunRow).where(JobRunRow.status == RUNNING).values(
        status=FAILED, detail=detail, finished_at=finished_at)).rowcount or 0


def last_job_run(session: Session, job: str, simulated: bool | None = None, finished: bool = False
                 ) -> JobRunRow | None:
    """The job's latest row (on one clock, or either); `finished`: the latest that ran to its end (OK or FAILED)."""
    query = select(JobRunRow).where(JobRunRow.job == job).order_by(JobRunRow.id.desc()).limit(1)
    if simulated is not None:
        query = query.where(JobRunRow.simulated.is_(simulated))
    if finished:
        query = query.where(JobRunRow.status.in_((OK, FAILED)))
    return session.scalars(query).first()


def job_runs(session: Session, job: str | None, limit: int, before_id: int = 0) -> list[JobRunRow]:
    """The newest `limit` runs (of `job`, or of every job), newest first, with ids below `before_id` (0: any)."""
    query = select(JobRunRow).order_by(JobRunRow.id.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRunRow.job == job)
    if before_id:
        query = query.where(JobRunRow.id < before_id)
    return list(session.scalars(query))


def failures_since(session: Session, since: datetime) -> list[tuple[str, datetime]]:
    """(job, started_at) of the FAILED runs started at or after `since` (wall clock), oldest first."""
    query = (select(JobRunRow.job, JobRunRow.started_at)
             .where(JobRunRow.status == FAILED, JobRunRow.started_at >= since).order_by(JobRunRow.id))
    return [(job, started_at) for job, started_at in session.execute(query)]


# --- retention (services/common/maintenance.py) ---

def delete_runs_finished_before(session: Session, cutoff: datetime) -> int:
    return session.execute(delete(CycleRunRow).where(CycleRunRow.finished_at < cutoff)).rowcount or 0


def delete_job_runs_started_before(session: Session, cutoff: datetime) -> int:
    """Job runs started before `cutoff`, except each job's newest KEEP_JOB_RUNS (a weekly job keeps its history)."""
    newest = (select(JobRunRow.id, func.row_number().over(partition_by=JobRunRow.job, order_by=JobRunRow.id.desc())
                     .label("rank")).subquery())
    kept = select(newest.c.id).where(newest.c.rank <= KEEP_JOB_RUNS)
    return session.execute(delete(JobRunRow).where(JobRunRow.started_at < cutoff, JobRunRow.id.not_in(kept))
                           ).rowcount or 0


# By when a run was recorded (the wall clock), so a replay's simulated years are not taken for old rows.
RETENTION_RULES = (
    RetentionRule("cycle_runs", "sync cycle runs recorded before the cutoff", "TRADER_CYCLE_RUN_RETENTION_DAYS",
                  365, delete_runs_finished_before, wall_clock=True),
    RetentionRule("job_runs", "job runs started before the cutoff (each job's newest 20 stay)",
                  "TRADER_JOB_RUN_RETENTION_DAYS", 7, delete_job_runs_started_before, wall_clock=True),
)
