"""gRPC servicer for trader.gateway.v1.Gateway."""

from __future__ import annotations

import threading
from dataclasses import asdict

from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc

from gateway import store
from gateway.cycle import CycleResult, Services, StepResult, run_cycle
from services.common import clock
from services.common.client import health_status, raw_channel
from services.common.config import SERVICES, CommonConfig
from services.common.db import Database
from services.common.maintenance import Maintenance
from services.common.maintenance_rpc import MaintenanceRpc
from services.common.timestamps import from_timestamp, to_timestamp


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
    """Runs cycles one at a time (a cycle holds the lock) and records each run."""

    def __init__(self, db: Database, services: Services):
        self._db = db
        self._services = services
        self._lock = threading.Lock()

    def run(self, settle_only: bool = False) -> CycleResult:
        with self._lock:
            result = run_cycle(self._services, clock.now(), settle_only)
            with self._db.transaction() as session:
                store.add_run(session, result.as_of, clock.as_of() is not None, result.ok, result.trace_id,
                              [asdict(s) for s in result.steps], clock.wall_now())
            return result


class GatewayServicer(MaintenanceRpc, gateway_pb2_grpc.GatewayServicer):
    def __init__(self, config: CommonConfig, db: Database, runner: CycleRunner, maintenance: Maintenance | None = None):
        self.use_maintenance(maintenance)
        self._config = config
        self._db = db
        self._runner = runner

    def RunSyncCycle(self, request, context):
        return result_to_proto(self._runner.run(request.settle_only))

    def GetSystemStatus(self, request, context):
        response = gateway_pb2.GetSystemStatusResponse(mode=self._config.mode)
        for name, (service_name, _) in SERVICES.items():
            address = self._config.address_of(name)
            with raw_channel(address, self._config.client_tls) as channel:
                health = health_status(channel, service_name)
            response.services.add(service=service_name, address=address, health=health)
        with self._db.transaction() as session:
            last = store.last_run(session)
            response.cycles_run = store.run_count(session)
            if last is not None:
                response.last_cycle_as_of.CopyFrom(to_timestamp(last.as_of))
                response.last_cycle_ok = last.ok
        return response
