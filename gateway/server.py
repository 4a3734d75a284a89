"""gRPC servicer for trader.gateway.v1.Gateway."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime

import grpc
from trader.common.v1 import info_pb2, info_pb2_grpc
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc

from gateway import store
from gateway.cycle import CycleResult, KeptLedgerCursor, Services, StepResult, run_cycle
from gateway.jobs.base import rpc_problem
from gateway.replay import CycleNotOk, history_end
from gateway.runner import MANUAL, REPLAY, SCHEDULE, JobRun, JobRunner, JobView
from services.common import clock
from services.common.client import Clients, health_status, raw_channel
from services.common.config import SERVICES, SIMULATED_MODES, CommonConfig
from services.common.db import Database
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.maintenance import Maintenance
from services.common.maintenance_rpc import MaintenanceRpc
from services.common.timestamps import from_timestamp, to_timestamp

MAX_HISTORY = 1000
DEFAULT_HISTORY = 20
MAX_LOG_RECORDS = 50
DEFAULT_LOG_RECORDS = 10
STATUS_CALL_TIMEOUT_S = 3.0  # GetSystemStatus asks every service at once and waits at most this long
MAX_JOBS_BEFORE = 20  # RunSyncCycle's jobs_before (a replay's day has a few due jobs)
_RUN_STATUS = {store.RUNNING: gateway_pb2.JOB_RUNNING, store.OK: gateway_pb2.JOB_OK,
               store.FAILED: gateway_pb2.JOB_FAILED, store.SKIPPED: gateway_pb2.JOB_SKIPPED}
_TRIGGER = {SCHEDULE: gateway_pb2.TRIGGER_SCHEDULE, MANUAL: gateway_pb2.TRIGGER_MANUAL,
            REPLAY: gateway_pb2.TRIGGER_REPLAY}


def result_to_proto(result: CycleResult) -> gateway_pb2.RunSyncCycleResponse:
    return gateway_pb2.RunSyncCycleResponse(
        trace_id=result.trace_id, as_of=to_timestamp(result.as_of), ok=result.ok,
        steps=[gateway_pb2.CycleStep(name=s.name, status=gateway_pb2.StepStatus.Value(s.status),
                                     duration_ms=s.duration_ms, detail=s.detail) for s in result.steps],
        total_value_base=result.total_value_base, cash_base=result.cash_base,
        base_currency=result.base_currency, last_trade=result.last_trade, display_text=result.display_text,
    )


def result_from_proto(reply: gateway_pb2.RunSyncCycleResponse) -> CycleResult:
    """RunSyncCycle's reply as the CycleResult it was made from (a client driving the cycle)."""
    return CycleResult(
        as_of=from_timestamp(reply.as_of, "as_of"), trace_id=reply.trace_id,
        steps=[StepResult(s.name, gateway_pb2.StepStatus.Name(s.status), s.duration_ms, s.detail) for s in reply.steps],
        base_currency=reply.base_currency, total_value_base=reply.total_value_base, cash_base=reply.cash_base,
        last_trade=reply.last_trade, display_text=reply.display_text)


class CycleRunner:
    """Runs cycles one at a time (a cycle holds the lock) and records each run.

    `simulated` (replay and backtest mode): the book lives on the replay's simulated clock, which
    only moves forward, and every cycle keeps to it (`check_clock`). `follows_replay`: a replay
    driver in this process (`make run`) moves that clock; `follow_replay()` is what it calls with
    each instant it reaches. `exchange`: the replay's primary exchange (the history's end)."""

    def __init__(self, db: Database, services: Services, simulated: bool = False, exchange: str = "XNYS",
                 follows_replay: bool = False):
        self._db = db
        self._services = services
        self._lock = threading.Lock()
        self._ledger = KeptLedgerCursor()  # the portfolio's cursor from one cycle's sync to the next's
        self._simulated = simulated
        self._exchange = exchange
        self._follows_replay = follows_replay
        self._replay_at: datetime | None = None  # the replay driver's current instant
        self._last_as_of: datetime | None = None  # the last recorded cycle's (read once, then kept)
        self._last_read = False
        self._history_end: datetime | None = None  # kept; read again before it refuses

    def run(self, settle_only: bool = False) -> CycleResult:
        with self._lock:
            now = clock.now()
            if self._simulated:
                self._check_clock(now, "the cycle")
            result = run_cycle(self._services, now, settle_only, self._ledger)
            with self._db.transaction() as session:
                store.add_run(session, result.as_of, clock.as_of() is not None, result.ok, result.trace_id,
                              [asdict(s) for s in result.steps], clock.wall_now())
            self._last_as_of, self._last_read = result.as_of, True
            return result

    def follow_replay(self) -> Callable[[datetime], None]:
        """The replay driver's report of each instant its clock reaches (a day's cycle instant,
        then the close-out's): cycles and jobs may run up to it, and not beyond."""
        self._follows_replay = True

        def reached(at: datetime) -> None:
            with self._lock:
                self._replay_at = at
        return reached

    def check_clock(self, at: datetime, what: str) -> None:
        """In replay and backtest mode, FailedPrecondition unless `what` at `at` keeps the replay's
        clock (nothing is checked in the other modes). See `_check_clock`."""
        if self._simulated:
            with self._lock:
                self._check_clock(at, what)

    def _check_clock(self, at: datetime, what: str) -> None:
        """The rules of a simulated instant (held under the lock):
        - simulated_clock: the call carries one (the wall clock would value a replay's book at
          today's prices);
        - as_of_before_last_cycle: not before the last recorded cycle's as-of (the broker and the
          books have moved on: an earlier cycle books the past into them, README "Replay");
        - as_of_after_replay_clock: not after the instant the replay driver in this process reached;
        - as_of_after_history: without a driver, not after the end of the history (the first
          session's open after the latest close: a replay's close-out)."""
        if clock.as_of() is None:
            raise FailedPrecondition("simulated_clock", f"{what} runs at a simulated instant in replay and "
                                     "backtest mode; give x-trader-as-of (the CLI's --as-of)")
        last = self._last_cycle_as_of()
        if last is not None and at < last:
            raise FailedPrecondition("as_of_before_last_cycle", f"{what} at {_iso(at)} is before the last "
                                     f"cycle's as-of {_iso(last)}: a replay's simulated time only moves forward")
        if self._follows_replay:
            if self._replay_at is None or at > self._replay_at:
                reached = _iso(self._replay_at) if self._replay_at else "not started yet"
                raise FailedPrecondition("as_of_after_replay_clock", f"{what} at {_iso(at)} is after the "
                                         f"replay's clock ({reached}): the replay runs its days in order")
            return
        if self._history_end is None or at > self._history_end:
            self._history_end = self._read_history_end(what)
        if at > self._history_end:
            raise FailedPrecondition("as_of_after_history", f"{what} at {_iso(at)} is after the end of the "
                                     f"history ({_iso(self._history_end)}, the open after the latest close)")

    def _last_cycle_as_of(self) -> datetime | None:
        if not self._last_read:
            with self._db.transaction() as session:
                last = store.last_run(session, simulated=True)
            self._last_as_of, self._last_read = (last.as_of if last is not None else None), True
        return self._last_as_of

    def _read_history_end(self, what: str) -> datetime:
        try:
            return history_end(self._services, self._exchange)
        except CycleNotOk as exc:  # fail closed: without a history there is no simulated clock
            raise FailedPrecondition("as_of_after_history", f"{what}: {exc}") from exc


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_to_proto(run: JobRun) -> gateway_pb2.JobRun:
    message = gateway_pb2.JobRun(
        id=run.id, job=run.job, status=_RUN_STATUS[run.status], trigger=_TRIGGER.get(run.trigger, 0),
        as_of=to_timestamp(run.as_of), simulated=run.simulated, started_at=to_timestamp(run.started_at),
        duration_ms=run.duration_ms or 0.0, detail=run.detail, trace_id=run.trace_id)
    if run.finished_at is not None:
        message.finished_at.CopyFrom(to_timestamp(run.finished_at))
    return message


def job_to_proto(view: JobView) -> gateway_pb2.Job:
    job = view.job
    message = gateway_pb2.Job(
        name=job.name, description=job.description, variable=job.variable, running=view.running,
        schedule=view.schedule.text if view.schedule else "off", time_zone=view.schedule.zone if view.schedule else "",
        failures_last_hour=view.failures_last_hour, health="SERVING" if view.healthy else "NOT_SERVING",
        health_service=job.health_service, simulated=job.simulated)
    if view.next_run is not None:
        message.next_run.CopyFrom(to_timestamp(view.next_run))
    if view.last_run is not None:
        message.last_run.CopyFrom(run_to_proto(view.last_run))
        message.status = _RUN_STATUS[view.last_run.status]
    return message


def _bounded(field: str, value: int, maximum: int, default: int) -> int:
    """`value` in 1..maximum, 0 for `default`; else InvalidArgument naming `field`."""
    if not 0 <= value <= maximum:
        raise InvalidArgument(field, f"must be between 0 ({default}) and {maximum}, got {value}")
    return value or default


def _run_trigger(trigger: int) -> str:
    """RunJob's trigger: MANUAL (unset too), or REPLAY at a simulated time; else InvalidArgument."""
    if trigger in (gateway_pb2.JOB_TRIGGER_UNSPECIFIED, gateway_pb2.TRIGGER_MANUAL):
        return MANUAL
    if trigger == gateway_pb2.TRIGGER_REPLAY:
        if clock.as_of() is None:
            raise InvalidArgument("trigger", "TRIGGER_REPLAY is a replay's simulated day: the call must carry "
                                             "x-trader-as-of")
        return REPLAY
    raise InvalidArgument("trigger", f"must be TRIGGER_MANUAL or TRIGGER_REPLAY, got {trigger}")


class GatewayServicer(MaintenanceRpc, gateway_pb2_grpc.GatewayServicer):
    def __init__(self, config: CommonConfig, db: Database, runner: CycleRunner, maintenance: Maintenance | None = None,
                 jobs: JobRunner | None = None, clients: Clients | None = None, scheduler: str = "off"):
        """`jobs` runs the jobs (ListJobs, RunJob, GetJobHistory), `scheduler` says who triggers
        them; `clients` reach the services for GetSystemStatus."""
        self.use_maintenance(maintenance)
        self._config = config
        self._db = db
        self._runner = runner
        self._jobs = jobs
        self._clients = clients
        self._scheduler = scheduler

    def RunSyncCycle(self, request, context):
        self._simulated_instant("a cycle")
        jobs = self._jobs_before(request.jobs_before)
        # Refused before anything runs: the jobs before it too act on the book.
        for name, at in jobs:
            self._runner.check_clock(at, f"the {name} job")
        self._runner.check_clock(clock.now(), "the cycle")
        runs = []
        for name, at in jobs:
            with clock.use_as_of(at):
                runs.append(self._job_runner().run(name, REPLAY, at))
        reply = result_to_proto(self._runner.run(request.settle_only))
        reply.job_runs.extend(run_to_proto(run) for run in runs)
        return reply

    def _jobs_before(self, entries) -> list[tuple[str, datetime]]:
        """RunSyncCycle's jobs_before as (name, as-of), all checked before any runs: at most
        MAX_JOBS_BEFORE, known jobs, each at or before the call's simulated instant."""
        if not entries:
            return []
        if len(entries) > MAX_JOBS_BEFORE:
            raise InvalidArgument("jobs_before", f"at most {MAX_JOBS_BEFORE} jobs, got {len(entries)}")
        call_as_of = clock.as_of()
        if call_as_of is None:
            raise InvalidArgument("jobs_before", "jobs run at a replay's simulated instants: the call must carry "
                                                 "x-trader-as-of")
        runner = self._job_runner()
        jobs = []
        for index, entry in enumerate(entries):
            field = f"jobs_before[{index}]"
            name = entry.name.strip()
            if not name:
                raise InvalidArgument(f"{field}.name", f"is empty; one of {', '.join(runner.names)}")
            runner.job(name)
            if not entry.HasField("as_of"):
                raise InvalidArgument(f"{field}.as_of", "is required: the job's scheduled time")
            at = from_timestamp(entry.as_of, f"{field}.as_of")
            if at > call_as_of:
                raise InvalidArgument(f"{field}.as_of", f"{at.isoformat()} is after the cycle's as-of "
                                                        f"{call_as_of.isoformat()}: a job before it runs no later")
            jobs.append((name, at))
        return jobs

    def _simulated_instant(self, what: str) -> None:
        """In replay and backtest mode the book lives on simulated time: what acts on it runs at the
        caller's simulated instant, never at the wall clock (which would value a replay's book at
        today's prices and write that snapshot into it). FailedPrecondition simulated_clock."""
        if self._config.mode in SIMULATED_MODES and clock.as_of() is None:
            raise FailedPrecondition("simulated_clock", f"the gateway runs in {self._config.mode} mode: {what} "
                                     "runs at a simulated instant; give x-trader-as-of (the CLI's --as-of)")

    def GetSystemStatus(self, request, context):
        records = _bounded("log_records_per_service", request.log_records_per_service, MAX_LOG_RECORDS,
                           DEFAULT_LOG_RECORDS)
        response = gateway_pb2.GetSystemStatusResponse(mode=self._config.mode,
                                                       checked_at=to_timestamp(clock.wall_now()))
        with ThreadPoolExecutor(max_workers=len(SERVICES), thread_name_prefix="status") as pool:
            response.services.extend(pool.map(lambda name: self._service_status(name, records), SERVICES))
        with self._db.transaction() as session:
            last = store.last_run(session)
            response.cycles_run = store.run_count(session)
            if last is not None:
                response.last_cycle_as_of.CopyFrom(to_timestamp(last.as_of))
                response.last_cycle_ok = last.ok
                response.last_cycle_trace_id = last.trace_id
                response.last_cycle_finished_at.CopyFrom(to_timestamp(last.finished_at))
                response.last_cycle_steps.extend(
                    gateway_pb2.CycleStep(name=s["name"], status=gateway_pb2.StepStatus.Value(s["status"]),
                                          duration_ms=s["duration_ms"], detail=s["detail"])
                    for s in json.loads(last.steps))
        if self._jobs is not None:
            response.failing_jobs.extend(self._jobs.failing_jobs())
        return response

    def _service_status(self, name: str, records: int) -> gateway_pb2.ServiceStatus:
        """A service's health and what it says about itself (each asked with a short deadline)."""
        service_name = SERVICES[name][0]
        address = self._config.address_of(name)
        with raw_channel(address, self._config.client_tls) as channel:
            status = gateway_pb2.ServiceStatus(service=service_name, address=address,
                                               health=health_status(channel, service_name))
        if self._clients is None:
            status.info_error = "the gateway was started without clients"
            return status
        try:
            status.info.CopyFrom(info_pb2_grpc.ServiceInfoStub(self._clients.channel(name)).GetServiceInfo(
                info_pb2.GetServiceInfoRequest(max_log_records=records), timeout=STATUS_CALL_TIMEOUT_S,
                wait_for_ready=False))
        except grpc.RpcError as exc:
            status.info_error = rpc_problem(exc)
        return status

    # --- jobs ---

    def _job_runner(self) -> JobRunner:
        if self._jobs is None:  # a servicer built without jobs (unit tests of other RPCs)
            raise FailedPrecondition("jobs_unavailable", "this gateway was started without its jobs")
        return self._jobs

    def ListJobs(self, request, context):
        views = self._job_runner().views(clock.now())
        return gateway_pb2.ListJobsResponse(jobs=[job_to_proto(v) for v in views], scheduler=self._scheduler)

    def RunJob(self, request, context):
        runner = self._job_runner()
        name = request.name.strip()
        if not name:
            raise InvalidArgument("name", f"is empty; one of {', '.join(runner.names)}")
        trigger = _run_trigger(request.trigger)
        if runner.job(name).simulated_clock:
            self._simulated_instant(f"the {name} job")
            self._runner.check_clock(clock.now(), f"the {name} job")
        return gateway_pb2.RunJobResponse(run=run_to_proto(runner.run(name, trigger, clock.now())))

    def GetJobHistory(self, request, context):
        runner = self._job_runner()
        limit = _bounded("limit", request.limit, MAX_HISTORY, DEFAULT_HISTORY)
        if request.before_id < 0:
            raise InvalidArgument("before_id", f"must be 0 (the newest) or a run's id, got {request.before_id}")
        name = request.name.strip() or None
        return gateway_pb2.GetJobHistoryResponse(runs=[run_to_proto(r) for r in runner.history(
            name, limit, request.before_id)])
