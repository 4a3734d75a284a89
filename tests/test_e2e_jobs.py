"""Paper mode on a fast schedule, the six services as processes: the scheduler runs sync cycles
with nobody calling RunSyncCycle; the maintenance job leaves a verified backup of every
service's database; GetSystemStatus reports every service's version, uptime and database."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc

from services.common.config import SERVICES
from tests.helpers import TOKEN
from tests.suite import Suite

pytestmark = pytest.mark.e2e
AUTH = [("authorization", f"Bearer {TOKEN}")]
# Paper mode takes live prices (yfinance): offline here, and with an empty universe nothing is fetched.
FAST = {"TRADER_MODE": "paper", "TRADER_DATA_PROVIDER": "yfinance", "TRADER_JOB_SYNC_CYCLE_SCHEDULE": "*/2 * * * * *",
        **{f"TRADER_JOB_{name}_SCHEDULE": "off" for name in (
            "SECURITIES_DATA_SYNC", "FUNDAMENTALS_SYNC", "PLANNER_BATCH", "MAINTENANCE", "INTEGRITY_CHECK",
            "DIVIDEND_REINVESTMENT", "BUCKET_RECONCILIATION", "DISPLAY_TICKER")}}


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    suite = Suite(tmp_path_factory.mktemp("paper"), FAST).start()
    with suite.channel("gateway") as channel:
        yield suite, gateway_pb2_grpc.GatewayStub(channel)
    exits = suite.terminate()
    assert {name: code for name, (code, _) in exits.items()} == dict.fromkeys(exits, 0), suite.log("gateway")[-2000:]


def scheduled_cycles(stub) -> list[gateway_pb2.JobRun]:
    runs = stub.GetJobHistory(gateway_pb2.GetJobHistoryRequest(name="sync_cycle", limit=100), metadata=AUTH,
                              timeout=10).runs
    return [r for r in runs if r.trigger == gateway_pb2.TRIGGER_SCHEDULE and r.status != gateway_pb2.JOB_RUNNING]


def test_paper_mode_runs_cycles_on_its_schedule_without_anyone_calling_run_sync_cycle(paper):
    suite, stub = paper
    deadline = time.monotonic() + 90
    while len([r for r in scheduled_cycles(stub) if r.status != gateway_pb2.JOB_SKIPPED]) < 2:
        assert time.monotonic() < deadline, suite.log("gateway")[-3000:]
        time.sleep(0.5)
    ran = [r for r in scheduled_cycles(stub) if r.status != gateway_pb2.JOB_SKIPPED]
    assert all(not r.simulated and len(r.trace_id) == 32 and r.detail for r in ran)
    status = stub.GetSystemStatus(gateway_pb2.GetSystemStatusRequest(), metadata=AUTH, timeout=30)
    assert status.mode == "paper" and status.cycles_run >= 2  # each job run is a cycle run too
    assert {r.trace_id for r in ran} >= {status.last_cycle_trace_id} or status.last_cycle_trace_id
    jobs = {job.name: job for job in stub.ListJobs(gateway_pb2.ListJobsRequest(), metadata=AUTH, timeout=10).jobs}
    assert stub.ListJobs(gateway_pb2.ListJobsRequest(), metadata=AUTH, timeout=10).scheduler == "wall clock"
    assert jobs["sync_cycle"].schedule == "*/2 * * * * *" and jobs["sync_cycle"].HasField("next_run")
    assert jobs["maintenance"].schedule == "off" and not jobs["maintenance"].HasField("last_run")
    # the gateway prints one line per scheduled run (make run passes it through)
    assert "  sync_cycle  " in suite.log("gateway")


def test_the_maintenance_job_leaves_a_verified_backup_of_every_database(paper):
    suite, stub = paper
    run = stub.RunJob(gateway_pb2.RunJobRequest(name="maintenance"), metadata=AUTH, timeout=300).run
    assert run.status == gateway_pb2.JOB_OK, run.detail
    lines = run.detail.splitlines()
    assert [line.split(":")[0] for line in lines] == ["data", "portfolio", "planner", "trading", "display", "gateway"]
    for service, line in zip(("data", "portfolio", "planner", "trading", "display", "gateway"), lines, strict=True):
        path = Path(line.split("backup ", 1)[1].split(" (", 1)[0])
        assert "integrity ok" in line and path.parent == suite.workdir / "backups" / service
        with sqlite3.connect(path) as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with pytest.raises(grpc.RpcError) as raised:
        stub.RunJob(gateway_pb2.RunJobRequest(name="backup"), metadata=AUTH, timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_system_status_reports_every_service(paper):
    _, stub = paper
    status = stub.GetSystemStatus(gateway_pb2.GetSystemStatusRequest(log_records_per_service=5), metadata=AUTH,
                                  timeout=30)
    assert [s.service for s in status.services] == [name for name, _ in SERVICES.values()]
    for service in status.services:
        assert service.health == "SERVING" and service.info_error == "", service
        info = service.info
        assert info.version and info.uptime_s > 0 and info.pid > 0 and info.disk.total_bytes > 0
        assert info.database.backend == "sqlite" and info.database.size_bytes > 0 and info.database.schema_revision
        assert info.database.tables and len(info.log_records) <= 5
    rows = {s.info.service: {t.table: t.rows for t in s.info.database.tables} for s in status.services}
    assert rows["data"]["daily_bars"] == 0 and rows["gateway"]["job_runs"] >= 2 and rows["gateway"]["cycle_runs"] >= 2
