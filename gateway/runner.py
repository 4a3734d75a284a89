"""Runs the gateway's jobs (gateway/jobs/) and triggers them on the wall clock.

`JobRunner.run` runs one job: one at a time per job (a lock: a scheduled trigger that finds
the job running is recorded SKIPPED; RunJob is refused with FAILED_PRECONDITION job_running),
in its own span, with a row in the gateway's database from start to end (status, detail,
trace id). A job that failed FAILURES_TO_FLIP times within an hour, its latest run included,
turns its grpc.health.v1 status (`job/<name>`) NOT_SERVING and posts `<NAME> FAILING: ...` to
the display's error pool (refreshed at each further failure, cleared once it recovers). The
gateway's own status ("" and trader.gateway.v1.Gateway) stays SERVING: the gateway still serves,
and a restart would not mend a job whose peer or broker fails.

`Scheduler` ticks every TICK_S: it re-evaluates the jobs' health (failures age out of the hour)
and, when triggering (paper, research and live mode), starts each job gateway/schedule.py says
is due, in a worker thread of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from trader.display.v1 import display_pb2

from gateway import store
from gateway.jobs.base import FAILURE_WINDOW, Job, JobFailed, JobPeers, failing, rpc_problem
from gateway.schedule import CronSchedule, due, next_fire
from services.common import clock
from services.common.db import Database
from services.common.errors import FailedPrecondition, NotFound
from services.common.logs import event
from services.common.tracing import current_trace_id, step_span

log = logging.getLogger("trader.jobs")
tracer = trace.get_tracer("trader.gateway.jobs")

SCHEDULE, MANUAL, REPLAY = "SCHEDULE", "MANUAL", "REPLAY"  # what triggered a run
TICK_S = 0.5
DETAIL_CHARS = 4000
DISPLAY_TEXT_CHARS = 120
ERROR_TTL_SECONDS = 3600
INTERRUPTED = "interrupted: the gateway stopped while the job ran"


@dataclass(frozen=True)
class JobRun:
    id: int
    job: str
    status: str            # RUNNING, OK, FAILED, SKIPPED (gateway/store.py)
    trigger: str           # SCHEDULE, MANUAL, REPLAY
    as_of: datetime        # the run's "now"
    simulated: bool
    started_at: datetime   # wall clock
    finished_at: datetime | None
    duration_ms: float | None
    detail: str
    trace_id: str

    @classmethod
    def of(cls, row: store.JobRunRow) -> JobRun:
        return cls(row.id, row.job, row.status, row.trigger, row.as_of, row.simulated, row.started_at,
                   row.finished_at, row.duration_ms, row.detail, row.trace_id)


@dataclass(frozen=True)
class JobView:
    """A job as ListJobs shows it."""

    job: Job
    schedule: CronSchedule | None   # None: off
    next_run: datetime | None
    last_run: JobRun | None
    running: bool
    failures_last_hour: int
    healthy: bool


def run_line(run: JobRun) -> str:
    """`2026-11-30T14:15:00Z  sync_cycle  OK  1.2 s  cycle ...`: a run on one line."""
    seconds = f"{(run.duration_ms or 0) / 1000:.1f} s"
    detail = " | ".join(run.detail.splitlines())
    return f"{run.as_of:%Y-%m-%dT%H:%M:%SZ}  {run.job}  {run.status}  {seconds}  {detail[:300]}"


class JobRunner:
    """Runs jobs by name (see the module's docstring). `display` is the display's stub (None:
    nothing is posted); `set_health(service_name, serving)` is attached once the server runs."""

    def __init__(self, db: Database, jobs: Sequence[Job], peers: JobPeers, schedules: Mapping[str, CronSchedule | None],
                 display=None, wall_now: Callable[[], datetime] = clock.wall_now):
        self._db = db
        self._jobs = {job.name: job for job in jobs}
        self._schedules = dict(schedules)
        self._peers = peers
        self._display = display
        self._wall_now = wall_now
        self._locks = {name: threading.Lock() for name in self._jobs}
        self._guard = threading.Lock()  # the in-memory state below
        self._running: dict[str, tuple[int, datetime]] = {}
        self._failures: dict[str, deque[datetime]] = {name: deque() for name in self._jobs}
        self._last_status: dict[str, str | None] = dict.fromkeys(self._jobs)
        self._healthy = dict.fromkeys(self._jobs, True)
        self._last_triggered: dict[str, datetime] = {}
        self._set_health: Callable[[str, bool], None] = lambda service, serving: None
        self._load()

    def _load(self) -> None:
        now = self._wall_now()
        with self._db.transaction() as session:
            interrupted = store.interrupt_running_jobs(session, now, INTERRUPTED)
            for job, started_at in store.failures_since(session, now - FAILURE_WINDOW):
                if job in self._failures:
                    self._failures[job].append(started_at)
            for name in self._jobs:
                finished = store.last_job_run(session, name, finished=True)
                self._last_status[name] = finished.status if finished is not None else None
                wall = store.last_job_run(session, name, simulated=False)
                if wall is not None:
                    self._last_triggered[name] = wall.as_of
        if interrupted:
            event(log, "job runs interrupted by the last stop marked failed", logging.WARNING, runs=interrupted)
        self._healthy = {name: not failing(self._failures[name], self._last_status[name], now) for name in self._jobs}

    # --- health ---

    def attach_health(self, set_health: Callable[[str, bool], None]) -> None:
        """Publish every job's health now and on each change."""
        self._set_health = set_health
        with self._guard:
            healthy = dict(self._healthy)
        for name, ok in healthy.items():
            set_health(self._jobs[name].health_service, ok)

    def refresh_health(self, now: datetime) -> None:
        """Re-evaluate every job's health at `now` (wall clock): failures age out of the hour."""
        for name in self._jobs:
            self._update_health(name, now, failed_detail=None)

    def failing_jobs(self) -> list[str]:
        with self._guard:
            return [name for name, ok in self._healthy.items() if not ok]

    def _update_health(self, name: str, now: datetime, failed_detail: str | None) -> None:
        with self._guard:
            failures = self._failures[name]
            while failures and failures[0] <= now - FAILURE_WINDOW:
                failures.popleft()
            healthy = not failing(failures, self._last_status[name], now)
            changed = healthy != self._healthy[name]
            self._healthy[name] = healthy
        job = self._jobs[name]
        if changed:
            self._set_health(job.health_service, healthy)
            event(log, "job health changed", logging.INFO if healthy else logging.ERROR, job=name,
                  health="SERVING" if healthy else "NOT_SERVING")
        if not healthy and failed_detail is not None:  # post, or refresh the post's time to live
            text = f"{name.upper()} FAILING: {failed_detail.splitlines()[0] if failed_detail else ''}"
            self._tell_display(name, display_pb2.PostMessageRequest(
                pool=display_pb2.ERROR, text=text[:DISPLAY_TEXT_CHARS], ttl_seconds=ERROR_TTL_SECONDS,
                source=f"job.{name}"))
        elif healthy and changed:
            self._tell_display(name, display_pb2.ClearMessageRequest(pool=display_pb2.ERROR, source=f"job.{name}"))

    def _tell_display(self, name: str, request) -> None:
        if self._display is None:
            return
        try:
            if isinstance(request, display_pb2.PostMessageRequest):
                self._display.PostMessage(request)
            else:
                self._display.ClearMessage(request)
        except grpc.RpcError as exc:
            event(log, "the display could not be told about a job's health", logging.WARNING, job=name,
                  problem=rpc_problem(exc))

    # --- runs ---

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    def job(self, name: str) -> Job:
        if name not in self._jobs:
            raise NotFound(f"unknown job {name[:64]!r}; the jobs: {', '.join(self._jobs)}")
        return self._jobs[name]

    def run(self, name: str, trigger: str, now: datetime) -> JobRun:
        """Run job `name` at `now` (the run's clock: the wall clock, or a replay's simulated time
        when the call carries it) and return its record. A trigger that finds it running: MANUAL
        is refused (FailedPrecondition job_running), others are recorded SKIPPED."""
        job = self.job(name)
        simulated = clock.as_of() is not None
        lock = self._locks[name]
        if not lock.acquire(blocking=False):
            return self._skipped(name, trigger, now, simulated)
        try:
            run = self._run_locked(job, trigger, now, simulated)
        finally:
            with self._guard:
                self._running.pop(name, None)
            lock.release()
        self._update_health(name, self._wall_now(), run.detail if run.status == store.FAILED else None)
        return run

    def run_scheduled(self, name: str, now: datetime) -> None:
        """`run` for the scheduler's worker threads: nothing escapes (a bug is logged). Prints one
        line per run (the gateway's output under `make run`), only failures for a quiet job."""
        try:
            run = self.run(name, SCHEDULE, now)
        except Exception:  # noqa: BLE001 - e.g. the database refused the run's row; the next trigger tries again
            event(log, "scheduled job could not run", logging.ERROR, exc_info=True, job=name)
            return
        if self._jobs[name].announce or run.status != store.OK:
            print(run_line(run), flush=True)

    def _skipped(self, name: str, trigger: str, now: datetime, simulated: bool) -> JobRun:
        with self._guard:
            run_id, since = self._running.get(name, (0, now))
        detail = f"still running since {since:%Y-%m-%dT%H:%M:%SZ} (run {run_id})"
        if trigger == MANUAL:
            raise FailedPrecondition("job_running", f"the {name} job is {detail}; try again when it ends")
        wall, trace_id = self._wall_now(), current_trace_id()
        with self._db.transaction() as session:
            run_id = store.start_job_run(session, name, store.SKIPPED, trigger, now, simulated, wall, trace_id, detail)
        run = JobRun(run_id, name, store.SKIPPED, trigger, now.astimezone(UTC), simulated, wall.astimezone(UTC),
                     wall.astimezone(UTC), 0.0, detail, trace_id)
        self._triggered(name, now, simulated)
        event(log, "job trigger skipped", logging.WARNING, job=name, detail=detail)
        return run

    def _run_locked(self, job: Job, trigger: str, now: datetime, simulated: bool) -> JobRun:
        with step_span(tracer, f"job.{job.name}", attributes={
                "job.name": job.name, "job.trigger": trigger, "job.simulated": simulated}) as span:
            started_at, trace_id = self._wall_now(), current_trace_id()
            with self._db.transaction() as session:
                run_id = store.start_job_run(session, job.name, store.RUNNING, trigger, now, simulated, started_at,
                                             trace_id)
            with self._guard:
                self._running[job.name] = (run_id, started_at)
            self._triggered(job.name, now, simulated)
            started = time.perf_counter()
            status, detail = self._call(job, now)
            duration_ms = (time.perf_counter() - started) * 1000
            span.set_attribute("job.status", status)
            if status == store.FAILED:
                span.set_status(Status(StatusCode.ERROR, detail[:200]))
            detail, finished_at = detail[:DETAIL_CHARS], self._wall_now()
            with self._db.transaction() as session:
                store.finish_job_run(session, run_id, status, detail, finished_at, duration_ms)
            run = JobRun(run_id, job.name, status, trigger, now.astimezone(UTC), simulated,
                         started_at.astimezone(UTC), finished_at.astimezone(UTC), duration_ms, detail, trace_id)
        with self._guard:
            self._last_status[job.name] = status
            if status == store.FAILED:
                self._failures[job.name].append(started_at)
        event(log, "job ran", logging.INFO if status == store.OK else logging.WARNING, job=job.name, status=status,
              trigger=trigger, ms=round(duration_ms, 1), detail=detail[:300])
        return run

    def _call(self, job: Job, now: datetime) -> tuple[str, str]:
        try:
            return store.OK, job.run(self._peers, now) or ""
        except JobFailed as exc:
            return store.FAILED, str(exc)
        except grpc.RpcError as exc:
            return store.FAILED, rpc_problem(exc)
        except Exception as exc:  # noqa: BLE001 - a bug of ours: recorded as the run's failure, with the traceback logged
            event(log, "job raised", logging.ERROR, exc_info=True, job=job.name)
            return store.FAILED, f"{type(exc).__name__}: {exc}"

    def _triggered(self, name: str, now: datetime, simulated: bool) -> None:
        if not simulated:
            self.mark_triggered(name, now)

    # --- what the scheduler and ListJobs read ---

    def mark_triggered(self, name: str, at: datetime) -> None:
        with self._guard:
            self._last_triggered[name] = max(at, self._last_triggered.get(name, at))

    def last_triggered(self) -> dict[str, datetime]:
        """Job -> when it was last run or triggered on the wall clock."""
        with self._guard:
            return dict(self._last_triggered)

    def views(self, now: datetime) -> list[JobView]:
        """Every job with its schedule, next run after `now`, last run and health."""
        wall = self._wall_now()
        with self._db.transaction() as session:
            last = {name: store.last_job_run(session, name) for name in self._jobs}
            last_runs = {name: JobRun.of(row) if row is not None else None for name, row in last.items()}
        views = []
        with self._guard:
            for name, job in self._jobs.items():
                schedule = self._schedules.get(name)
                recent = sum(1 for at in self._failures[name] if at > wall - FAILURE_WINDOW)
                views.append(JobView(job, schedule, next_fire(schedule, now) if schedule else None, last_runs[name],
                                     name in self._running, recent, self._healthy[name]))
        return views

    def history(self, name: str | None, limit: int, before_id: int = 0) -> list[JobRun]:
        if name is not None:
            self.job(name)
        with self._db.transaction() as session:
            return [JobRun.of(row) for row in store.job_runs(session, name, limit, before_id)]


class Scheduler(threading.Thread):
    """Ticks every `tick_s`: refreshes the jobs' health and, when `triggering`, starts the due
    jobs on the wall clock, each in a worker thread (gateway/schedule.py decides which)."""

    def __init__(self, runner: JobRunner, schedules: Mapping[str, CronSchedule | None], triggering: bool,
                 tick_s: float = TICK_S, wall_now: Callable[[], datetime] = clock.wall_now):
        super().__init__(name="scheduler", daemon=True)
        self._runner = runner
        self._schedules = dict(schedules)
        self._triggering = triggering
        self._tick_s = tick_s
        self._wall_now = wall_now
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._schedules)), thread_name_prefix="job")

    def run(self) -> None:
        since = self._wall_now()
        while not self._stopping.wait(self._tick_s):
            try:
                self.tick(since)
            except Exception:  # noqa: BLE001 - the scheduler keeps ticking
                event(log, "scheduler tick failed", logging.ERROR, exc_info=True)

    def tick(self, since: datetime) -> list[str]:
        """One tick at the wall clock's now; returns the jobs it started."""
        now = self._wall_now()
        self._runner.refresh_health(now)
        if not self._triggering:
            return []
        started = []
        for item in due(self._schedules, self._runner.last_triggered(), now, since):
            self._runner.mark_triggered(item.name, now)
            self._pool.submit(self._runner.run_scheduled, item.name, now)
            started.append(item.name)
        return started

    def stop(self, timeout_s: float = 5.0) -> None:
        """No new trigger; runs in progress finish in their threads."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
