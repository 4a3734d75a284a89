"""Recommendations keyed by state (planner.md section 7; decisions.md rule 19). Pure.

A recommendation is one step of a plan for one state (`portfolio:settings:allocations`,
services/planner/settings.py), identified by (state, symbol, side): its id is a UUID derived
from those three, so the same state always names the same step the same way (replays
reproduce it). Within a state a step is stored once; the original's upsert rules apply when a
plan is computed again:

    no row     -> insert, pending
    pending    -> update the fields (quantity, price, reason, plan), keep the id
    executed   -> reset to pending (the state came back after the trade)
    dismissed  -> suppressed: the step is not planned again for this state

The original's key also held the reason; here the reason carries numbers that move with the
day's prices, so the key is (state, symbol, side) and a dismissal holds for the whole state.
Statuses: pending -> executed (trading filled the step's order) or dismissed (the owner).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import InvalidArgument

PENDING, EXECUTED, DISMISSED = "pending", "executed", "dismissed"
INSERT, UPDATE, RESET, SUPPRESS = "insert", "update", "reset", "suppress"
UPSERT_RULES: dict[str | None, str] = {None: INSERT, PENDING: UPDATE, EXECUTED: RESET, DISMISSED: SUPPRESS}
_NAMESPACE = uuid.UUID("6f1c1f8e-3d0a-5d43-9a57-5d1e1c0f7a11")  # fixed: ids stay stable across builds


@dataclass(frozen=True)
class Recommendation:
    uuid: str
    state_key: str
    symbol: str
    side: str                  # BUY or SELL
    quantity: int
    estimated_price: float     # in `currency`
    currency: str
    estimated_value_base: float
    reason: str
    status: str                # pending, executed or dismissed
    plan_id: str
    step: int                  # 1-based position in the plan
    created_at: datetime
    updated_at: datetime
    executed_at: datetime | None = None
    dismissed_at: datetime | None = None


def recommendation_id(state_key: str, symbol: str, side: str) -> str:
    """The step's id for this state: a version-5 UUID of `state:symbol:side`."""
    return str(uuid.uuid5(_NAMESPACE, f"{state_key}:{symbol.upper()}:{side.upper()}"))


def upsert_action(status: str | None) -> str:
    """What planning a step again does to its stored row (None: there is none)."""
    return UPSERT_RULES[status]


def parse_uuid(field: str, text: str) -> str:
    """A recommendation id in its canonical form; INVALID_ARGUMENT naming `field` otherwise."""
    if not text.strip():
        raise InvalidArgument(field, "is required")
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError as exc:
        raise InvalidArgument(field, f"not a UUID: {text[:64]!r}") from exc
