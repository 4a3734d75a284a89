"""gRPC servicer for trader.display.v1.Display.

Message lifetimes are real time: the owner reads the matrix on the wall clock, so expiry uses
the wall clock even when a replay sends a simulated as-of time.
"""

from __future__ import annotations

from trader.display.v1 import display_pb2, display_pb2_grpc

from services.common import clock
from services.common.db import Database
from services.common.timestamps import to_timestamp
from services.display import pools, store

_POOLS = {display_pb2.ERROR: pools.ERROR, display_pb2.PROCESSING: pools.PROCESSING,
          display_pb2.NEXT_ACTIONS: pools.NEXT_ACTIONS}


class DisplayServicer(display_pb2_grpc.DisplayServicer):
    def __init__(self, db: Database):
        self._db = db

    def _state(self, session) -> display_pb2.DisplayState:
        message = pools.shown(store.messages(session), clock.wall_now())
        if message is None:
            return display_pb2.DisplayState()
        state = display_pb2.DisplayState(text=message.text, pool=display_pb2.Pool.Value(message.pool))
        if message.expires_at is not None:
            state.expires_at.CopyFrom(to_timestamp(message.expires_at))
        return state

    def PostMessage(self, request, context):
        message = pools.new_message(_POOLS.get(request.pool, ""), request.text, request.ttl_seconds,
                                    clock.wall_now())
        with self._db.transaction() as session:
            store.put(session, message)
            return self._state(session)

    def ClearMessage(self, request, context):
        pool = pools.check_pool(_POOLS.get(request.pool, ""))
        with self._db.transaction() as session:
            store.clear(session, pool)
            return self._state(session)

    def GetDisplayState(self, request, context):
        with self._db.transaction() as session:
            return self._state(session)
