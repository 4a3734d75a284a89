"""RunMaintenance over gRPC on the six services as processes: bad input refused naming the field
with nothing changed; every part on every service after a real cycle; then each database
restored from its backup with `python -m services.common.maintenance restore` (refused while
the service runs) and the services started again on what the backups held."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest
from trader.common.v1 import maintenance_pb2
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common.config import REPO_ROOT, SERVICES
from services.common.migrations import load_schema, scripts
from tests import fuzz
from tests.helpers import TOKEN
from tests.suite import Suite

pytestmark = pytest.mark.e2e
AUTH = [("authorization", f"Bearer {TOKEN}")]
RULES = {"data": "indicator_cache", "portfolio": "snapshots", "planner": "plans", "trading": None,
         "display": "expired_messages", "gateway": "cycle_runs"}


def run_maintenance(channel: grpc.Channel, service: str, request: maintenance_pb2.RunMaintenanceRequest,
                    as_of: str | None = None) -> maintenance_pb2.RunMaintenanceResponse:
    metadata = AUTH + ([("x-trader-as-of", as_of)] if as_of else [])
    return channel.unary_unary(f"/{SERVICES[service][0]}/RunMaintenance",
                               request_serializer=maintenance_pb2.RunMaintenanceRequest.SerializeToString,
                               response_deserializer=maintenance_pb2.RunMaintenanceResponse.FromString)(
        request, metadata=metadata, timeout=120)


def day_of_business(suite: Suite, day: str, reference: str) -> None:
    """A paper deposit booked in both services, then the day's cycle inside the session and, after
    the close, a settling cycle that books its market-on-close fill (two cycle runs)."""
    metadata = AUTH + [("x-trader-as-of", f"{day}T20:30:00+00:00")]
    trading_pb2_grpc.TradingStub(suite.channel("trading")).FundPaperAccount(
        trading_pb2.FundPaperAccountRequest(amount=10_000, reference=reference), metadata=metadata)
    portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio")).RecordDeposit(
        portfolio_pb2.RecordDepositRequest(amount=10_000, reference=reference), metadata=metadata)
    gateway = gateway_pb2_grpc.GatewayStub(suite.channel("gateway"))
    reply = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=metadata, timeout=120)
    assert reply.ok, reply
    settled = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(settle_only=True),
                                   metadata=AUTH + [("x-trader-as-of", f"{day}T22:00:00+00:00")], timeout=120)
    assert settled.ok, settled


def read_state(suite: Suite) -> dict:
    channels = {name: suite.channel(name) for name in suite.addresses}
    state = fuzz.State(channels, AUTH).read()
    state["cycles"] = gateway_pb2_grpc.GatewayStub(channels["gateway"]).GetSystemStatus(
        gateway_pb2.GetSystemStatusRequest(), metadata=AUTH).cycles_run
    for channel in channels.values():
        channel.close()
    return state


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """Six services with real rows in every database: a deposit and a cycle that bought."""
    workdir = tmp_path_factory.mktemp("maintenance")
    holder = {"suite": Suite(workdir).start(), "workdir": workdir}
    day_of_business(holder["suite"], "2018-01-02", "first-deposit")
    yield holder
    holder["suite"].terminate()


def test_bad_input_is_invalid_argument_naming_the_field_and_changes_nothing(running):
    suite = running["suite"]
    before = read_state(suite)
    for service, rule in RULES.items():
        channel = suite.channel(service)
        bad = [(maintenance_pb2.RunMaintenanceRequest(backup=True, backup_keep_days=-1), "backup_keep_days: "),
               (maintenance_pb2.RunMaintenanceRequest(backup_keep_days=0), "backup_keep_days: "),
               (maintenance_pb2.RunMaintenanceRequest(backup=True, retention_days={"nope": 1}),
                "retention_days['nope']: not a retention rule")]
        if rule is not None:
            bad += [(maintenance_pb2.RunMaintenanceRequest(retention=True, retention_days={rule: -1}),
                     f"retention_days['{rule}']: must be between 0"),
                    (maintenance_pb2.RunMaintenanceRequest(retention_days={rule: 100_001}),
                     f"retention_days['{rule}']: must be between 0")]
        for request, message in bad:
            with pytest.raises(grpc.RpcError) as refused:
                run_maintenance(channel, service, request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (service, request)
            assert refused.value.details().startswith(message), (service, refused.value.details())
        channel.close()
    assert not (running["workdir"] / "backups").exists()
    assert read_state(suite) == before


def test_every_service_maintained_then_restored_from_its_backup(running):
    suite, workdir = running["suite"], running["workdir"]
    backups = {}
    for service in SERVICES:
        channel = suite.channel(service)
        reply = run_maintenance(channel, service, maintenance_pb2.RunMaintenanceRequest(),
                                as_of="2018-01-02T22:00:00+00:00")
        channel.close()
        assert reply.ok and reply.service == service and reply.backend == "sqlite", reply
        assert [p.name for p in reply.parts] == ["backup", "retention", "optimize", "checkpoint", "integrity_check"]
        assert all(p.status == maintenance_pb2.PART_OK for p in reply.parts), reply
        backup = reply.parts[0].backup
        assert backup.integrity == "ok" and backup.size_bytes > 0
        assert backup.schema_revision == scripts(load_schema(service)).get_current_head()
        assert os.path.dirname(backup.path) == str(workdir / "backups" / service)
        backups[service] = backup.path
    at_backup = read_state(suite)
    assert at_backup["trades"].trades and at_backup["snapshots"].snapshots and at_backup["cycles"] == 2

    day_of_business(suite, "2018-01-03", "second-deposit")  # what the restore must undo
    assert read_state(suite) != at_backup
    env = {**os.environ, "TRADER_VAR_DIR": str(workdir)}

    def restore(service: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.common.maintenance", "restore", service,
                               backups[service]], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)

    refused = restore("trading")
    assert refused.returncode == 1 and "stop the trading service first" in refused.stderr
    suite.terminate()
    for service in SERVICES:
        done = restore(service)
        assert done.returncode == 0, (service, done.stderr)
    running["suite"] = Suite(workdir).start()

    assert read_state(running["suite"]) == at_backup
