"""Order rules: the life cycle (states and transitions), identities, fees, conversions. Pure functions."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.money import from_base, to_base

BUY, SELL = "BUY", "SELL"

# The order life cycle: explicit states and the only moves between them (as nautilus_trader's
# order state machine). FILLED, CANCELLED and REJECTED are final; every other state is resolved
# by a sync or the start-up reconciliation (`resolution` below), so no order stays open forever.
NEW, SUBMITTED, PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED, UNKNOWN_OUTCOME = (
    "NEW", "SUBMITTED", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "UNKNOWN_OUTCOME")
STATES = (NEW, SUBMITTED, PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED, UNKNOWN_OUTCOME)
FINAL_STATES = frozenset({FILLED, CANCELLED, REJECTED})
OPEN_STATES = tuple(s for s in STATES if s not in FINAL_STATES)
TRANSITIONS: dict[str, frozenset[str]] = {
    # the intent is stored; then it is sent, refused before sending, or found (not) at the broker
    NEW: frozenset({SUBMITTED, REJECTED, CANCELLED}),
    # handed to the broker: fills, a refusal, a cancel or expiry, or a lost reply
    SUBMITTED: frozenset({PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED, UNKNOWN_OUTCOME}),
    # part filled, the rest still working: more fills, or the rest cancelled by the broker
    PARTIALLY_FILLED: frozenset({PARTIALLY_FILLED, FILLED, CANCELLED}),
    # the reply was lost: a lookup at the broker finds it open, (partly) filled, or absent
    UNKNOWN_OUTCOME: frozenset({SUBMITTED, PARTIALLY_FILLED, FILLED, REJECTED}),
    FILLED: frozenset(), CANCELLED: frozenset(), REJECTED: frozenset(),
}


class IllegalTransition(Exception):
    """A move the order life cycle does not allow: a bug on our side, never a caller's mistake."""


def transition(current: str, new: str) -> str:
    """`new` when the life cycle allows current -> new; raises IllegalTransition otherwise."""
    if new not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"an order cannot move from {current} to {new}")
    return new


def fill_state(quantity: int, filled: int) -> str:
    """The state an order's imported fills put it in."""
    return FILLED if filled >= quantity else PARTIALLY_FILLED


# A broker's list of active orders can lag an accepted order by a few seconds (Tradernet's
# getNotifyOrderJson): a SUBMITTED order it does not list yet stays open this long, so it keeps
# counting against the caps and blocking a duplicate instead of being closed while still live.
ACTIVE_LIST_GRACE = timedelta(minutes=10)


def resolution(state: str, filled: int, quantity: int, open_at_broker: bool,
               submitted_for: timedelta = ACTIVE_LIST_GRACE) -> tuple[str, str] | None:
    """Where a lookup at the broker moves an open order: (state, reason), or None to stay.

    The order's fills are imported before (so `filled` is complete and a (partly) filled order
    is already PARTIALLY_FILLED), and `open_at_broker` was read before those fills, so an order
    that is not open has no fill still to come. `submitted_for` is the time since the order's
    last state change; a SUBMITTED order unlisted for less than ACTIVE_LIST_GRACE stays."""
    if state in FINAL_STATES:
        return None
    if open_at_broker:
        return (SUBMITTED, "found open at the broker") if state in (NEW, UNKNOWN_OUTCOME) else None
    if state == SUBMITTED and filled == 0 and submitted_for < ACTIVE_LIST_GRACE:
        return None
    if filled > 0:
        return CANCELLED, f"the broker closed it with {filled} of {quantity} filled: the rest was cancelled"
    if state == NEW:
        return REJECTED, "never sent: the broker has it neither open nor executed"
    if state == UNKNOWN_OUTCOME:
        return REJECTED, "the broker has no such order: it never executed"
    return CANCELLED, "not open at the broker and never filled (not sent, expired or cancelled there)"


COMMISSION_FIXED_BASE = 2.00  # EUR (base currency) per order: the broker's real fee
COMMISSION_RATE = 0.002       # plus 0.2% of the order value
FX_BUFFER = 0.02              # a conversion for a foreign BUY covers the deficit plus 2%


@dataclass(frozen=True)
class OrderIntent:
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    reason: str


def plan_client_order_id(plan_id: str, step: int, symbol: str, side: str) -> str:
    """Deterministic id of a plan step's order (decisions.md rule 13)."""
    return hashlib.sha256(f"{plan_id}:{step}:{symbol}:{side}".encode()).hexdigest()[:32]


def broker_reference(client_order_id: str) -> str:
    """The numeric id sent to a broker as its client-side order id (Tradernet's user_order_id),
    derived from the client order id so it can be recomputed at any time."""
    return str(int(hashlib.sha256(client_order_id.encode()).hexdigest()[:15], 16))


def validate_intent(client_order_id: str, symbol: str, side: str, quantity: int, reason: str) -> OrderIntent:
    if not client_order_id.strip():
        raise InvalidArgument("client_order_id", "is required")
    if len(client_order_id) > 64:
        raise InvalidArgument("client_order_id", "longer than 64 characters")
    if not symbol.strip():
        raise InvalidArgument("symbol", "is required")
    if side not in (BUY, SELL):
        raise InvalidArgument("side", "must be BUY or SELL")
    if quantity <= 0:
        raise InvalidArgument("quantity", f"must be a positive whole number, got {quantity}")
    return OrderIntent(client_order_id.strip(), symbol.strip(), side, quantity, reason.strip()[:200])


def check_lot(quantity: int, lot_size: int) -> None:
    if quantity % max(1, lot_size):
        raise InvalidArgument("quantity", f"{quantity} is not a multiple of the lot size {lot_size}")


def commission(value: float, currency: str, base: str, rates: Mapping[str, float]) -> float:
    """The broker fee for an order of `value` in `currency`, in that currency."""
    return from_base(COMMISSION_FIXED_BASE, currency, base, rates) + COMMISSION_RATE * value


def conversion_for(required: float, available: float, currency: str, base_available: float, base: str,
                   rates: Mapping[str, float]) -> float:
    """Base-currency amount to convert so a foreign BUY is covered, in whole cents rounded up
    (what the broker debits): the deficit plus 2% when the base balance allows, else the bare
    deficit; 0 when nothing is missing. `available` may be negative (the deficit covers it).
    Raises the cash rule when even the bare deficit, rounded up, is more than `base_available`:
    the check and the conversion both use this one function, so a conversion the check allowed
    is never refused by the broker for want of a cent."""
    deficit = required - available
    if deficit <= 1e-9:
        return 0.0
    with_buffer = round_cents_up(to_base(deficit * (1 + FX_BUFFER), currency, base, rates))
    bare = round_cents_up(to_base(deficit, currency, base, rates))
    if base_available >= with_buffer:
        return with_buffer
    if base_available >= bare:
        return bare
    raise FailedPrecondition(
        "cash", f"needs {bare:.2f} {base} converted to {currency}, {max(base_available, 0):.2f} {base} available"
    )


def round_cents_up(amount: float) -> float:
    """Up to the next whole cent (a hair of float noise above a whole cent does not count)."""
    return math.ceil(amount * 100 - 1e-9) / 100
