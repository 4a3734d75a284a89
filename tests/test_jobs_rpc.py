"""The gateway's job RPCs and GetSystemStatus over gRPC, in-process, with the real plumbing
(auth, error mapping, health, ServiceInfo) and stand-in jobs: answers, and bad input refused
with the precise status (hypothesis for the boundaries)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trader.common.v1 import info_pb2, info_pb2_grpc
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc

from gateway import store
from gateway.jobs.base import Job, JobFailed, JobPeers
from gateway.runner import JobRunner
from gateway.schedule import parse_schedule
from gateway.server import MAX_HISTORY, CycleRunner, GatewayServicer
from services.common import clock, logs
from services.common.client import Clients
from services.common.config import SERVICES
from services.common.errors import InvalidArgument
from services.common.info import ServiceInfoServicer
from services.common.server import start_server
from tests.helpers import TOKEN, free_port, make_config

AUTH = [("authorization", f"Bearer {TOKEN}")]
INT32 = st.integers(-(2 ** 31), 2 ** 31 - 1)
INT64 = st.integers(-(2 ** 63), 2 ** 63 - 1)


class Gateway:
    """A gateway server with three stand-in jobs; the five services are not running."""

    def __init__(self, tmp_path):
        addresses = {f"TRADER_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in SERVICES}
        self.config = make_config("gateway", **addresses, TRADER_VAR_DIR=str(tmp_path))
        self.db = store.open_database(f"sqlite:///{tmp_path / 'gateway.db'}")
        self.release = threading.Event()
        self.inside = threading.Event()
        jobs = [Job("tidy", "tidies", "0 3 * * *", lambda peers, now: "tidied"),
                Job("broken", "fails", "*/5 * * * *", self._broken),
                Job("slow", "waits", "off", self._slow)]
        schedules = {job.name: parse_schedule(job.default_schedule, "UTC") for job in jobs}
        self.clients = Clients(self.config)
        self.jobs = JobRunner(self.db, jobs, JobPeers(None, None), schedules)
        servicer = GatewayServicer(self.config, self.db, CycleRunner(self.db, None), None, self.jobs, self.clients,
                                   "off")
        info = ServiceInfoServicer("gateway", self.db, tmp_path, clock.wall_now())
        self.running = start_server(self.config, lambda server: gateway_pb2_grpc.add_GatewayServicer_to_server(
            servicer, server), max_workers=8, service_info=info)
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        self.jobs.attach_health(lambda name, ok: self.running.health.set(name, serving if ok else not_serving))
        self.channel = grpc.insecure_channel(self.config.listen_address)
        self.stub = gateway_pb2_grpc.GatewayStub(self.channel)

    @staticmethod
    def _broken(peers, now):
        raise JobFailed("the disk is full")

    def _slow(self, peers, now):
        self.inside.set()
        self.release.wait(10)
        return "slow done"

    def close(self):
        self.release.set()
        self.channel.close()
        self.running.stop(0)
        self.clients.close()
        self.db.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    server = Gateway(tmp_path_factory.mktemp("gateway"))
    yield server
    server.close()


def refused(call, request, code: grpc.StatusCode, text: str = "") -> None:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, metadata=AUTH, timeout=10)
    assert raised.value.code() == code, raised.value.details()
    assert text in raised.value.details()


def test_list_jobs_shows_every_job_with_its_schedule_and_next_run(gateway):
    reply = gateway.stub.ListJobs(gateway_pb2.ListJobsRequest(), metadata=AUTH, timeout=10)
    assert reply.scheduler == "off" and [job.name for job in reply.jobs] == ["tidy", "broken", "slow"]
    tidy, _, slow = reply.jobs
    assert (tidy.schedule, tidy.time_zone, tidy.variable) == ("0 3 * * *", "UTC", "TRADER_JOB_TIDY_SCHEDULE")
    assert tidy.next_run.ToDatetime(tzinfo=UTC).strftime("%H:%M") == "03:00"
    assert (slow.schedule, slow.HasField("next_run")) == ("off", False)
    assert tidy.health == "SERVING" and tidy.health_service == "job/tidy" and tidy.simulated
    # next runs follow the call's clock
    simulated = gateway.stub.ListJobs(gateway_pb2.ListJobsRequest(), timeout=10,
                                      metadata=AUTH + [("x-trader-as-of", "2019-06-03T12:00:00Z")])
    assert simulated.jobs[0].next_run.ToDatetime(tzinfo=UTC) == datetime(2019, 6, 4, 3, tzinfo=UTC)


def test_run_job_runs_it_now_and_records_it(gateway):
    reply = gateway.stub.RunJob(gateway_pb2.RunJobRequest(name=" tidy "), metadata=AUTH, timeout=10).run
    assert (reply.job, reply.status, reply.trigger, reply.detail) == ("tidy", gateway_pb2.JOB_OK,
                                                                     gateway_pb2.TRIGGER_MANUAL, "tidied")
    assert reply.HasField("finished_at") and not reply.simulated
    at = gateway.stub.RunJob(gateway_pb2.RunJobRequest(name="tidy"), timeout=10,
                             metadata=AUTH + [("x-trader-as-of", "2019-06-03T12:00:00Z")]).run
    assert at.simulated and at.as_of.ToDatetime(tzinfo=UTC) == datetime(2019, 6, 3, 12, tzinfo=UTC)
    history = gateway.stub.GetJobHistory(gateway_pb2.GetJobHistoryRequest(name="tidy", limit=1), metadata=AUTH,
                                         timeout=10).runs
    assert [r.id for r in history] == [at.id]
    listed = gateway.stub.ListJobs(gateway_pb2.ListJobsRequest(), metadata=AUTH, timeout=10).jobs[0]
    assert listed.last_run.id == at.id and listed.status == gateway_pb2.JOB_OK


def test_a_failing_job_turns_its_health_not_serving_after_five_failures(gateway):
    health = health_pb2_grpc.HealthStub(gateway.channel)
    for n in range(5):
        run = gateway.stub.RunJob(gateway_pb2.RunJobRequest(name="broken"), metadata=AUTH, timeout=10).run
        assert (run.status, run.detail) == (gateway_pb2.JOB_FAILED, "the disk is full")
        expected = health_pb2.HealthCheckResponse.NOT_SERVING if n == 4 else health_pb2.HealthCheckResponse.SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service="job/broken"), timeout=5).status == expected
    # the gateway itself still serves, and says which job is failing
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING
    statuses = health.List(health_pb2.HealthListRequest(), timeout=5).statuses
    assert statuses["job/broken"].status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert statuses["job/tidy"].status == health_pb2.HealthCheckResponse.SERVING
    broken = gateway.stub.ListJobs(gateway_pb2.ListJobsRequest(), metadata=AUTH, timeout=10).jobs[1]
    assert (broken.health, broken.failures_last_hour, broken.status) == ("NOT_SERVING", 5, gateway_pb2.JOB_FAILED)
    status = gateway.stub.GetSystemStatus(gateway_pb2.GetSystemStatusRequest(), metadata=AUTH, timeout=30)
    assert list(status.failing_jobs) == ["broken"]


def test_run_job_is_refused_while_the_job_runs(gateway):
    gateway.release.clear()
    thread = threading.Thread(target=gateway.stub.RunJob, args=(gateway_pb2.RunJobRequest(name="slow"),),
                              kwargs={"metadata": AUTH, "timeout": 30})
    thread.start()
    try:
        assert gateway.inside.wait(10)
        refused(gateway.stub.RunJob, gateway_pb2.RunJobRequest(name="slow"), grpc.StatusCode.FAILED_PRECONDITION,
                "job_running: the slow job is still running since")
        listed = gateway.stub.ListJobs(gateway_pb2.ListJobsRequest(), metadata=AUTH, timeout=10).jobs[2]
        assert listed.running and listed.last_run.status == gateway_pb2.JOB_RUNNING
    finally:
        gateway.release.set()
        thread.join(30)


@pytest.mark.parametrize("name, code, text", [
    ("", grpc.StatusCode.INVALID_ARGUMENT, "name: is empty; one of tidy, broken, slow"),
    ("   ", grpc.StatusCode.INVALID_ARGUMENT, "name: is empty"),
    ("nope", grpc.StatusCode.NOT_FOUND, "unknown job 'nope'; the jobs: tidy, broken, slow"),
    ("x" * 20_000, grpc.StatusCode.NOT_FOUND, "unknown job"),
    ("TIDY", grpc.StatusCode.NOT_FOUND, "unknown job"),
])
def test_run_job_refuses_bad_names(gateway, name, code, text):
    refused(gateway.stub.RunJob, gateway_pb2.RunJobRequest(name=name), code, text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=80).filter(lambda text: text.strip() not in ("tidy", "broken", "slow")))
def test_run_job_refuses_any_other_name(gateway, name):
    with pytest.raises(grpc.RpcError) as raised:
        gateway.stub.RunJob(gateway_pb2.RunJobRequest(name=name), metadata=AUTH, timeout=10)
    if name.strip():
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "unknown job" in raised.value.details()
    else:
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details().startswith("name: is empty")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=INT32, before_id=INT64, name=st.sampled_from(["", "tidy", "nope", " broken "]))
def test_get_job_history_bounds(gateway, limit, before_id, name):
    request = gateway_pb2.GetJobHistoryRequest(name=name, limit=limit, before_id=before_id)
    try:
        runs = gateway.stub.GetJobHistory(request, metadata=AUTH, timeout=10).runs
    except grpc.RpcError as exc:
        if not 0 <= limit <= MAX_HISTORY:
            assert (exc.code(), exc.details().split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "limit")
        elif before_id < 0:
            assert (exc.code(), exc.details().split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "before_id")
        else:
            assert name == "nope" and exc.code() == grpc.StatusCode.NOT_FOUND
        return
    assert 0 <= limit <= MAX_HISTORY and before_id >= 0 and name != "nope"
    assert len(runs) <= (limit or 20)
    assert all(r.id < before_id for r in runs) if before_id else True
    assert all(r.job == name.strip() for r in runs) if name.strip() else True
    assert [r.id for r in runs] == sorted((r.id for r in runs), reverse=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=INT32)
def test_get_system_status_bounds(gateway, records):
    request = gateway_pb2.GetSystemStatusRequest(log_records_per_service=records)
    if 0 <= records <= 50:
        assert len(gateway.stub.GetSystemStatus(request, metadata=AUTH, timeout=30).services) == len(SERVICES)
    else:
        refused(gateway.stub.GetSystemStatus, request, grpc.StatusCode.INVALID_ARGUMENT,
                f"log_records_per_service: must be between 0 (10) and 50, got {records}")


def test_get_system_status_reports_each_service_and_the_last_cycle(gateway):
    with gateway.db.transaction() as session:
        store.add_run(session, datetime(2019, 6, 3, 22, tzinfo=UTC), True, False, "ab" * 16,
                      [{"name": "sync_prices", "status": "FAILED", "duration_ms": 1.5, "detail": "UNAVAILABLE: x"}],
                      clock.wall_now())
    logging.getLogger().addHandler(logs.RECENT)
    try:
        logging.getLogger("trader.test").warning("the broker is slow")
        status = gateway.stub.GetSystemStatus(gateway_pb2.GetSystemStatusRequest(log_records_per_service=50),
                                              metadata=AUTH, timeout=30)
    finally:
        logging.getLogger().removeHandler(logs.RECENT)
    assert [s.service for s in status.services] == [name for name, _ in SERVICES.values()]
    own, *others = status.services
    assert own.health == "SERVING" and own.info_error == "" and own.info.service == "gateway"
    assert own.info.version and own.info.uptime_s >= 0 and own.info.disk.free_bytes > 0
    assert own.info.database.backend == "sqlite" and own.info.database.size_bytes > 0
    assert own.info.database.schema_revision == "gateway_0002"
    rows = {t.table: t.rows for t in own.info.database.tables}
    assert rows["cycle_runs"] >= 1 and rows["job_runs"] >= 1
    assert "the broker is slow" in [r.message for r in own.info.log_records]
    for other in others:  # not running here: said so, and the call still answers
        assert other.health == "UNREACHABLE" and other.info_error.startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED"))
    assert (status.last_cycle_ok, status.last_cycle_trace_id, status.cycles_run) == (False, "ab" * 16, 1)
    [step] = status.last_cycle_steps
    assert (step.name, step.status, step.detail) == ("sync_prices", gateway_pb2.FAILED, "UNAVAILABLE: x")
    assert status.HasField("checked_at") and status.mode == "replay"


@pytest.mark.parametrize("records", [-1, 51, 2 ** 31 - 1])
def test_service_info_refuses_too_many_log_records(gateway, records):
    stub = info_pb2_grpc.ServiceInfoStub(gateway.channel)
    refused(stub.GetServiceInfo, info_pb2.GetServiceInfoRequest(max_log_records=records),
            grpc.StatusCode.INVALID_ARGUMENT, "max_log_records: must be between 0 and 50")


def test_the_new_rpcs_need_the_token(gateway):
    for call, request in ((gateway.stub.ListJobs, gateway_pb2.ListJobsRequest()),
                          (gateway.stub.RunJob, gateway_pb2.RunJobRequest(name="tidy")),
                          (gateway.stub.GetJobHistory, gateway_pb2.GetJobHistoryRequest()),
                          (info_pb2_grpc.ServiceInfoStub(gateway.channel).GetServiceInfo,
                           info_pb2.GetServiceInfoRequest())):
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED



def test_run_job_records_a_replay_trigger_at_a_simulated_time_only(gateway):
    replayed = gateway.stub.RunJob(gateway_pb2.RunJobRequest(name="tidy", trigger=gateway_pb2.TRIGGER_REPLAY),
                                   timeout=10, metadata=AUTH + [("x-trader-as-of", "2019-06-04T03:00:00Z")]).run
    assert (replayed.trigger, replayed.status, replayed.simulated) == (gateway_pb2.TRIGGER_REPLAY, gateway_pb2.JOB_OK,
                                                                       True)
    assert replayed.as_of.ToDatetime(tzinfo=UTC) == datetime(2019, 6, 4, 3, tzinfo=UTC)
    refused(gateway.stub.RunJob, gateway_pb2.RunJobRequest(name="tidy", trigger=gateway_pb2.TRIGGER_REPLAY),
            grpc.StatusCode.INVALID_ARGUMENT, "trigger")
    for trigger in (gateway_pb2.TRIGGER_SCHEDULE, 99):
        refused(gateway.stub.RunJob, gateway_pb2.RunJobRequest(name="tidy", trigger=trigger),
                grpc.StatusCode.INVALID_ARGUMENT, "trigger")


def _jobs_before(*entries: tuple[str, str | None]) -> gateway_pb2.RunSyncCycleRequest:
    def entry(name, at):
        run = gateway_pb2.ReplayJobRun(name=name)
        if at is not None:
            run.as_of.FromDatetime(datetime.fromisoformat(at))
        return run
    return gateway_pb2.RunSyncCycleRequest(jobs_before=[entry(name, at) for name, at in entries])


def _counts(gateway) -> tuple[int, int]:
    """(job runs, cycle runs) recorded."""
    with gateway.db.transaction() as session:
        return len(store.job_runs(session, None, MAX_HISTORY)), store.run_count(session)


CYCLE_AT = [("x-trader-as-of", "2019-06-05T20:30:00Z")]


def test_run_sync_cycle_runs_the_jobs_before_it_each_at_its_slot(gateway):
    jobs, cycles = _counts(gateway)
    reply = gateway.stub.RunSyncCycle(_jobs_before(("broken", "2019-06-05T03:30:00"), (" tidy", "2019-06-05T03:45:00")),
                                      metadata=AUTH + CYCLE_AT, timeout=30)
    replayed = gateway_pb2.TRIGGER_REPLAY
    assert [(r.job, r.status, r.trigger, r.simulated, r.as_of.ToDatetime(tzinfo=UTC).strftime("%d %H:%M"))
            for r in reply.job_runs] == [("broken", gateway_pb2.JOB_FAILED, replayed, True, "05 03:30"),
                                         ("tidy", gateway_pb2.JOB_OK, replayed, True, "05 03:45")]
    assert reply.job_runs[0].detail == "the disk is full" and reply.job_runs[0].id < reply.job_runs[1].id
    # the cycle ran after them, at the call's instant (its steps fail here: no services run)
    assert reply.steps and reply.as_of.ToDatetime(tzinfo=UTC) == datetime(2019, 6, 5, 20, 30, tzinfo=UTC)
    assert _counts(gateway) == (jobs + 2, cycles + 1)
    history = gateway.stub.GetJobHistory(gateway_pb2.GetJobHistoryRequest(limit=2), metadata=AUTH, timeout=10).runs
    assert [r.id for r in history] == [r.id for r in reversed(reply.job_runs)]
    # without jobs_before: the cycle alone, as before
    assert not gateway.stub.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=AUTH + CYCLE_AT,
                                         timeout=30).job_runs


@pytest.mark.parametrize(("request_", "metadata", "code", "text"), [
    (_jobs_before(("tidy", "2019-06-05T03:30:00+00:00")), AUTH, grpc.StatusCode.FAILED_PRECONDITION,
     "simulated_clock"),  # this gateway replays: its cycles need the instant (on the wall clock: below)
    (_jobs_before(("tidy", "2019-06-05T03:30:00+00:00"), ("nope", "2019-06-05T03:30:00+00:00")), AUTH + CYCLE_AT,
     grpc.StatusCode.NOT_FOUND, "unknown job 'nope'"),
    (_jobs_before((" ", "2019-06-05T03:30:00+00:00")), AUTH + CYCLE_AT, grpc.StatusCode.INVALID_ARGUMENT,
     "jobs_before[0].name: is empty"),
    (_jobs_before(("tidy", "2019-06-05T03:30:00+00:00"), ("tidy", None)), AUTH + CYCLE_AT,
     grpc.StatusCode.INVALID_ARGUMENT, "jobs_before[1].as_of: is required"),
    (_jobs_before(("tidy", "2019-06-05T20:30:01+00:00")), AUTH + CYCLE_AT, grpc.StatusCode.INVALID_ARGUMENT,
     "jobs_before[0].as_of: 2019-06-05T20:30:01+00:00 is after the cycle's as-of"),
    (_jobs_before(("tidy", "1800-01-01T00:00:00+00:00")), AUTH + CYCLE_AT, grpc.StatusCode.INVALID_ARGUMENT,
     "jobs_before[0].as_of: 1800-01-01T00:00:00+00:00 is outside the supported range"),
    (_jobs_before(*[("tidy", "2019-06-05T03:30:00+00:00")] * 21), AUTH + CYCLE_AT, grpc.StatusCode.INVALID_ARGUMENT,
     "jobs_before: at most 20 jobs, got 21"),
])
def test_run_sync_cycle_refuses_bad_jobs_before_and_runs_nothing(gateway, request_, metadata, code, text):
    before = _counts(gateway)
    with pytest.raises(grpc.RpcError) as raised:
        gateway.stub.RunSyncCycle(request_, metadata=metadata, timeout=30)
    assert raised.value.code() == code and text in raised.value.details(), raised.value.details()
    assert _counts(gateway) == before


def test_jobs_before_need_the_calls_simulated_instant(gateway):
    """Where cycles run on the wall clock (paper, live), jobs_before still needs x-trader-as-of."""
    servicer = GatewayServicer(gateway.config, gateway.db, None, None, gateway.jobs)
    with pytest.raises(InvalidArgument, match="jobs_before: jobs run at a replay's simulated instants"):
        servicer._jobs_before(_jobs_before(("tidy", "2019-06-05T03:30:00+00:00")).jobs_before)
    with clock.use_as_of(datetime(2019, 6, 5, 20, 30, tzinfo=UTC)):
        assert servicer._jobs_before(_jobs_before(("tidy", "2019-06-05T03:30:00+00:00")).jobs_before) == [
            ("tidy", datetime(2019, 6, 5, 3, 30, tzinfo=UTC))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seconds=INT64, nanos=INT32, name=st.sampled_from(["tidy", "", "nope", "TIDY"]))
def test_run_sync_cycle_jobs_before_boundaries(gateway, seconds, nanos, name):
    """Any slot: run (at or before the cycle's instant, in the clock's range) or INVALID_ARGUMENT
    naming it; any name: run, or refused by name. Never INTERNAL, nothing run when refused."""
    entry = gateway_pb2.ReplayJobRun(name=name)
    entry.as_of.seconds, entry.as_of.nanos = seconds, nanos
    before = _counts(gateway)
    try:
        reply = gateway.stub.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(jobs_before=[entry]),
                                          metadata=AUTH + CYCLE_AT, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), exc.details()
        assert ("jobs_before[0]" in exc.details()) if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else \
            "unknown job" in exc.details()
        assert _counts(gateway) == before
        return
    assert name == "tidy" and len(reply.job_runs) == 1
    assert reply.job_runs[0].as_of.ToDatetime(tzinfo=UTC) <= datetime(2019, 6, 5, 20, 30, tzinfo=UTC)
