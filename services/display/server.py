"""gRPC servicer for trader.display.v1.Display: proto <-> domain, nothing else."""

from __future__ import annotations

import grpc
from trader.display.v1 import display_pb2, display_pb2_grpc
from trader.planner.v1 import planner_pb2, planner_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.common import clock
from services.common.client import Clients
from services.common.db import Database
from services.common.maintenance import Maintenance
from services.common.maintenance_rpc import MaintenanceRpc
from services.common.timestamps import to_timestamp
from services.display import pools, store
from services.display.controller import CONNECTED, MISSING, NOT_CONFIGURED, DisplayController, Shown
from services.display.text import next_actions_text

_POOLS = {display_pb2.ERROR: pools.ERROR, display_pb2.PROCESSING: pools.PROCESSING,
          display_pb2.NEXT_ACTIONS: pools.NEXT_ACTIONS}
_MODES = {display_pb2.MODE_NORMAL: "normal", display_pb2.MODE_SYNCING: "syncing",
          display_pb2.MODE_TRADE: "trade", display_pb2.MODE_ERROR: "error"}
_MODE_VALUES = {name: value for value, name in _MODES.items()}
# RefreshNextActions posts under this source; the gateway's cycle uses its own ("sync_cycle").
NEXT_ACTIONS_SOURCE = "next_actions"
_DEVICE = {NOT_CONFIGURED: display_pb2.DEVICE_NOT_CONFIGURED, CONNECTED: display_pb2.DEVICE_CONNECTED,
           MISSING: display_pb2.DEVICE_MISSING}


def shown_to_proto(shown: Shown) -> display_pb2.DisplayState:
    state = display_pb2.DisplayState(
        text=shown.text, pool=display_pb2.Pool.Value(shown.pool) if shown.pool else display_pb2.POOL_UNSPECIFIED,
        brightness=shown.brightness, speed_ms=shown.speed_ms, mode=_MODE_VALUES[shown.mode],
        device_text=shown.device_text, device=_DEVICE[shown.device_status], device_detail=shown.device_detail,
        source=shown.source,
    )
    if shown.expires_at is not None:
        state.expires_at.CopyFrom(to_timestamp(shown.expires_at))
    return state


def _pool(value: int) -> str:
    return pools.check_pool(_POOLS.get(value, ""))


def _mode(value: int) -> str | None:
    if value == display_pb2.MODE_UNSPECIFIED:
        return None
    return _MODES.get(value, "invalid")


class DisplayServicer(MaintenanceRpc, display_pb2_grpc.DisplayServicer):
    def __init__(self, db: Database, controller: DisplayController, clients: Clients,
                 maintenance: Maintenance | None = None):
        self.use_maintenance(maintenance)
        self._db = db
        self._controller = controller
        self._portfolio = clients.stub("portfolio", portfolio_pb2_grpc.PortfolioStub)
        self._planner = clients.stub("planner", planner_pb2_grpc.PlannerStub)

    def _changed(self) -> display_pb2.DisplayState:
        return shown_to_proto(self._controller.refresh())

    def PostMessage(self, request, context):
        message = pools.new_message(_POOLS.get(request.pool, ""), request.text, request.ttl_seconds,
                                    clock.wall_now(), _mode(request.mode), request.source)
        with self._db.transaction() as session:
            store.put(session, message)
        return self._changed()

    def ClearMessage(self, request, context):
        pool = _pool(request.pool)
        source = pools.check_source(request.source)
        with self._db.transaction() as session:
            store.clear(session, pool, source)
        return self._changed()

    def GetDisplayState(self, request, context):
        return self._changed()

    def SetBrightness(self, request, context):
        brightness = pools.check_brightness(request.brightness)
        with self._db.transaction() as session:
            store.save_settings(session, brightness, store.settings(session)[1])
        return self._changed()

    def SetSpeed(self, request, context):
        speed_ms = pools.check_speed(request.speed_ms)
        with self._db.transaction() as session:
            store.save_settings(session, store.settings(session)[0], speed_ms)
        return self._changed()

    def RefreshNextActions(self, request, context):
        portfolio = self._portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest())
        try:
            plan = self._planner.GetRecommendations(planner_pb2.GetRecommendationsRequest())
            first = plan.steps[0] if plan.steps else None
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            first = None  # the planner has no plan for this state (e.g. too little history): show the rest
        next_step = (planner_pb2.Side.Name(first.side), first.symbol, first.estimated_value_base) if first else None
        text = next_actions_text(portfolio.base_currency, portfolio.total_value_base, portfolio.cash_base, next_step)
        with self._db.transaction() as session:
            store.put(session, pools.new_message(pools.NEXT_ACTIONS, text, 0, clock.wall_now(),
                                                 source=NEXT_ACTIONS_SOURCE))
        return self._changed()

    def WatchDisplay(self, request, context):
        version, shown = self._controller.wait_for_change(-1, 0)
        yield shown_to_proto(shown)
        while context.is_active():
            new_version, shown = self._controller.wait_for_change(version, 1.0)
            if new_version != version and shown is not None:
                version = new_version
                yield shown_to_proto(shown)
