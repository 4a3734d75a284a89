"""Order rules: identities, fees, and the checks an order must pass. Pure functions."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.money import from_base, to_base

BUY, SELL = "BUY", "SELL"

# Explicit order states (nautilus_trader style); FILLED, CANCELLED and REJECTED are final.
NEW, SUBMITTED, PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED, UNKNOWN_OUTCOME = (
    "NEW", "SUBMITTED", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "UNKNOWN_OUTCOME")
FINAL_STATES = frozenset({FILLED, CANCELLED, REJECTED})

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
    """Base-currency amount to convert so a foreign BUY is covered: the deficit plus 2% when
    the base balance allows, else the bare deficit; 0 when nothing is missing. Raises the cash
    rule when even the deficit is not there."""
    deficit = required - max(available, 0.0)
    if deficit <= 0:
        return 0.0
    with_buffer = to_base(deficit * (1 + FX_BUFFER), currency, base, rates)
    bare = to_base(deficit, currency, base, rates)
    if base_available >= with_buffer:
        return with_buffer
    if base_available >= bare:
        return bare
    raise FailedPrecondition(
        "cash", f"needs {bare:.2f} {base} converted to {currency}, {max(base_available, 0):.2f} {base} available"
    )


def round_cents_up(amount: float) -> float:
    return math.ceil(amount * 100 - 1e-9) / 100
