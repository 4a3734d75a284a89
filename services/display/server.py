"""gRPC servicer for trader.display.v1.Display: proto <-> domain, nothing else."""

from __future__ import annotations

from trader.display.v1 import display_pb2, display_pb2_grpc

from services.common import clock
from services.common.db import Database
from services.common.errors import InvalidArgument
from services.common.maintenance import Maintenance
from services.common.maintenance_rpc import MaintenanceRpc
from services.common.timestamps import to_timestamp
from services.common.validate import currency_code, finite_amount, non_negative_amount, required_text
from services.display import pools
from services.display.controller import (
    CONNECTED,
    MISSING,
    NOT_CONFIGURED,
    Change,
    Clear,
    DisplayController,
    Post,
    Settings,
    Shown,
)
from services.display.text import next_actions_text

_POOLS = {display_pb2.ERROR: pools.ERROR, display_pb2.PROCESSING: pools.PROCESSING,
          display_pb2.NEXT_ACTIONS: pools.NEXT_ACTIONS}
_MODES = {display_pb2.MODE_NORMAL: "normal", display_pb2.MODE_SYNCING: "syncing",
          display_pb2.MODE_TRADE: "trade", display_pb2.MODE_ERROR: "error"}
_MODE_VALUES = {name: value for value, name in _MODES.items()}
# RefreshNextActions posts under this source; the gateway's cycle uses its own ("sync_cycle").
NEXT_ACTIONS_SOURCE = "next_actions"
MAX_CHANGES = 16  # ApplyChanges: a cycle makes 3
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


def _next_actions(request) -> tuple[str, float, float, tuple[str, str, float] | None]:
    """(base, value, cash, (side, symbol, value) of the next step or None), each checked."""
    base = currency_code("base_currency", request.base_currency)
    total = finite_amount("total_value_base", request.total_value_base)
    cash = finite_amount("cash_base", request.cash_base)
    if not request.HasField("next_step"):
        return base, total, cash, None
    step = request.next_step
    if step.side not in ("BUY", "SELL"):
        raise InvalidArgument("next_step.side", f"must be BUY or SELL, got {step.side!r}")
    symbol = required_text("next_step.symbol", step.symbol, 32)
    return base, total, cash, (step.side, symbol, non_negative_amount("next_step.value_base", step.value_base))


def _post(request: display_pb2.PostMessageRequest) -> Post:
    return Post(pools.new_message(_POOLS.get(request.pool, ""), request.text, request.ttl_seconds, clock.wall_now(),
                                  _mode(request.mode), request.source))


def _clear(request: display_pb2.ClearMessageRequest) -> Clear:
    return Clear(_pool(request.pool), pools.check_source(request.source))


def _next_actions_post(request: display_pb2.RefreshNextActionsRequest) -> Post:
    text = next_actions_text(*_next_actions(request))
    return Post(pools.new_message(pools.NEXT_ACTIONS, text, 0, clock.wall_now(), source=NEXT_ACTIONS_SOURCE))


_CHANGES = {"post": _post, "clear": _clear, "next_actions": _next_actions_post}


def _changes(request: display_pb2.ApplyChangesRequest) -> list[Change]:
    """ApplyChanges' changes, each checked as its own RPC checks it; InvalidArgument names the
    change, e.g. `changes[1].post.text`."""
    if not request.changes:
        raise InvalidArgument("changes", f"is empty; give 1 to {MAX_CHANGES} changes")
    if len(request.changes) > MAX_CHANGES:
        raise InvalidArgument("changes", f"{len(request.changes)} changes; at most {MAX_CHANGES} in one call")
    changes = []
    for index, change in enumerate(request.changes):
        kind = change.WhichOneof("change")
        if kind is None:
            raise InvalidArgument(f"changes[{index}]", "sets none of post, clear, next_actions")
        try:
            changes.append(_CHANGES[kind](getattr(change, kind)))
        except InvalidArgument as exc:
            raise InvalidArgument(f"changes[{index}].{kind}.{exc.field}", exc.message.partition(": ")[2]) from None
    return changes


class DisplayServicer(MaintenanceRpc, display_pb2_grpc.DisplayServicer):
    def __init__(self, db: Database, controller: DisplayController, maintenance: Maintenance | None = None):
        self.use_maintenance(maintenance)
        self._db = db
        self._controller = controller

    def _changed(self, *changes: Change) -> display_pb2.DisplayState:
        """The state shown once `changes` (if any) are stored: one transaction."""
        return shown_to_proto(self._controller.refresh(changes))

    def PostMessage(self, request, context):
        return self._changed(_post(request))

    def ClearMessage(self, request, context):
        return self._changed(_clear(request))

    def GetDisplayState(self, request, context):
        return self._changed()

    def SetBrightness(self, request, context):
        return self._changed(Settings(brightness=pools.check_brightness(request.brightness)))

    def SetSpeed(self, request, context):
        return self._changed(Settings(speed_ms=pools.check_speed(request.speed_ms)))

    def RefreshNextActions(self, request, context):
        return self._changed(_next_actions_post(request))

    def ApplyChanges(self, request, context):
        return self._changed(*_changes(request))

    def WatchDisplay(self, request, context):
        version, shown = self._controller.wait_for_change(-1, 0)
        yield shown_to_proto(shown)
        while context.is_active():
            new_version, shown = self._controller.wait_for_change(version, 1.0)
            if new_version != version and shown is not None:
                version = new_version
                yield shown_to_proto(shown)
