"""Weight bounds per security and fitting weights inside them (planner.md section 3 "Bounds";
issue 8 item 4). Pure.

Every security starts at [0, MAX_WEIGHT]; its min/max portfolio targets (percent, data service)
divided by 100 narrow that range; then, as the original's constraints manager does:
- allow_buy false: upper = min(upper, current weight) (it can only shrink);
- allow_sell false, or a holding of at most one lot (all or nothing): lower = max(lower, current);
- a larger holding: lower = max(lower, one lot's weight), unless that is above upper.
Decisions here (where the original would raise a bound):
- a maximum is a hard bound and the MAX_WEIGHT cap is never raised: when the caps add up to
  less than what may be invested, the rest stays cash (`unallocated`), and the plan says so;
- a minimum above its security's maximum is lowered to that maximum (never the reverse; the
  original set both to the current weight, which can lie above the maximum);
- minimums adding up to more than what may be invested are scaled down proportionally.
Each adjustment is reported as a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.planner import defaults

EPSILON = 1e-9


@dataclass(frozen=True)
class Bounds:
    lower: dict[str, float]  # fraction of the portfolio, 0..1
    upper: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def upper_total(self) -> float:
        return sum(self.upper.values())


@dataclass(frozen=True)
class BoundInput:
    """What decides a security's bounds. Targets in percent (None: unset); the holding's
    `quantity` and `value_base` (its market value in the base currency); `price_base` of one
    share in the base currency."""

    min_target: float | None = None
    max_target: float | None = None
    allow_buy: bool = True
    allow_sell: bool = True
    lot_size: int = 1
    price_base: float = 0.0
    quantity: int = 0
    value_base: float = 0.0


def security_bounds(securities: Mapping[str, BoundInput], portfolio_value_base: float,
                    max_weight: float = defaults.MAX_WEIGHT, investable: float = 1.0) -> Bounds:
    """Bounds with lower <= upper <= max_weight and sum(lower) <= investable (the share of the
    portfolio the optimiser may place, planner.md section 3 "normalise to 1 - reserve/value")."""
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    notes: list[str] = []
    for symbol, security in sorted(securities.items()):
        low, high, note = _one(symbol, security, portfolio_value_base, max_weight)
        lower[symbol], upper[symbol] = low, high
        if note:
            notes.append(note)
    total_lower = sum(lower.values())
    if total_lower > investable + EPSILON:
        notes.append(f"minimum targets add up to {total_lower:.1%}: scaled down to {investable:.1%}")
        scale = max(0.0, investable) / total_lower
        lower = {s: w * scale for s, w in lower.items()}
    return Bounds(lower, upper, notes)


def _one(symbol: str, security: BoundInput, portfolio_value: float, max_weight: float) -> tuple[float, float, str]:
    upper = max_weight if security.max_target is None else max(0.0, min(max_weight, security.max_target / 100))
    lower = 0.0 if security.min_target is None else max(0.0, security.min_target / 100)
    current = security.value_base / portfolio_value if portfolio_value > 0 and security.value_base > 0 else 0.0
    held = security.quantity > 0 and security.price_base > 0 and portfolio_value > 0
    if not security.allow_buy:
        upper = min(upper, current)
    if not security.allow_sell or (held and security.quantity <= max(1, security.lot_size)):
        lower = max(lower, current)
    elif held:
        lot_weight = max(1, security.lot_size) * security.price_base / portfolio_value
        if lot_weight <= upper:
            lower = max(lower, lot_weight)
    if lower > upper:
        why = "minimum target" if security.min_target is not None and security.min_target / 100 > upper else \
            "held weight (it may not be sold down)"
        return upper, upper, f"{symbol}: {why} {lower:.1%} lowered to its maximum {upper:.1%}"
    return lower, upper, ""


def weight_bounds(targets: Mapping[str, tuple[float | None, float | None]],
                  max_weight: float = defaults.MAX_WEIGHT) -> Bounds:
    """Bounds from min/max portfolio targets alone (percent, None when unset), nothing held."""
    return security_bounds({s: BoundInput(minimum, maximum) for s, (minimum, maximum) in targets.items()}, 0.0,
                           max_weight)


def fit_to_bounds(raw: Mapping[str, float], bounds: Bounds, cutoff: float = defaults.WEIGHT_CUTOFF,
                  decimals: int = 6, total: float = 1.0) -> dict[str, float]:
    """Weights inside `bounds` that sum to at most `total`, from an optimiser's raw weights.

    planner.md section 3 post-processing (clamp, drop below the cutoff, normalise, clamp), with
    the normalisation done by water-filling so it never lifts a weight above its upper bound:
    the shortfall to `total` is spread over the kept weights in proportion to their size, among
    those still below their bound, until it is placed or every kept weight is at its bound.
    Weights are rounded to `decimals` places; weights of 0 are left out of the result.
    """
    return rounded(normalised(clamped_cut(raw, bounds, cutoff), bounds, total), bounds, decimals, total)


def clamped(raw: Mapping[str, float], bounds: Bounds) -> dict[str, float]:
    """Each weight of `bounds`' securities moved into its [lower, upper] (absent = 0)."""
    return {s: min(upper, max(bounds.lower.get(s, 0.0), raw.get(s, 0.0))) for s, upper in bounds.upper.items()}


def clamped_cut(raw: Mapping[str, float], bounds: Bounds, cutoff: float = defaults.WEIGHT_CUTOFF) -> dict[str, float]:
    """clamped, then weights below `cutoff` set to 0 (too small to trade); a weight a minimum
    holds up is kept even below the cutoff."""
    return {s: 0.0 if w < cutoff and bounds.lower.get(s, 0.0) <= 0 else w for s, w in clamped(raw, bounds).items()}


def normalised(weights: Mapping[str, float], bounds: Bounds, total: float) -> dict[str, float]:
    """Scaled toward `total`: above it, what lies above the minimums shrinks; below it, the
    shortfall is water-filled over the non-zero weights without passing an upper bound."""
    result = dict(weights)
    _trim_excess(result, bounds.lower, total)
    _water_fill(result, bounds.upper, total)
    return result


def rounded(weights: Mapping[str, float], bounds: Bounds, decimals: int = 6, total: float = 1.0) -> dict[str, float]:
    """Round to `decimals` places, never above an upper bound; if rounding up pushed the sum over
    `total`, take one unit off the largest weights, those with room above their minimum first (a
    minimum may then be missed by at most 1.5 units: half a unit of rounding, one taken off).
    Weights of 0 are left out."""
    result = {s: min(bounds.upper[s], round(w, decimals)) for s, w in weights.items()}
    unit = 10.0 ** -decimals
    order = sorted(result, key=lambda s: (result[s] - unit < bounds.lower.get(s, 0.0), -result[s], s))
    for symbol in order:
        if sum(result.values()) <= total + EPSILON:
            break
        result[symbol] = max(0.0, round(result[symbol] - unit, decimals))
    return {s: w for s, w in sorted(result.items()) if w > 0}


def _trim_excess(weights: dict[str, float], lower: Mapping[str, float], total: float) -> None:
    """Above `total` (raw weights lifted to their minimums): shrink what lies above the minimums."""
    current = sum(weights.values())
    floor = sum(min(weights[s], lower.get(s, 0.0)) for s in weights)
    if current <= total or current <= floor:
        return
    keep = max(0.0, total - floor) / (current - floor)
    for symbol, weight in weights.items():
        minimum = min(weight, lower.get(symbol, 0.0))
        weights[symbol] = minimum + (weight - minimum) * keep


def _water_fill(weights: dict[str, float], upper: Mapping[str, float], total: float) -> None:
    while True:
        shortfall = total - sum(weights.values())
        room = {s: w for s, w in weights.items() if w > 0 and upper[s] - w > EPSILON}
        if shortfall <= EPSILON or not room:
            return
        share = shortfall / sum(room.values())
        for symbol, weight in room.items():
            weights[symbol] = min(upper[symbol], weight * (1 + share))
