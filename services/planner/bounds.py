"""Weight bounds per security and fitting weights inside them (issue 8 item 4). Pure.

planner.md section 3 "Bounds": every security starts at [0, MAX_WEIGHT]; its min/max portfolio
targets (percent, data service) divided by 100 narrow that range. Decisions here:
- a maximum is a hard bound and the MAX_WEIGHT cap is never raised: when the caps add up to
  less than 100%, what cannot be placed stays cash (`unallocated`), and the plan says so;
- a minimum above its security's maximum is lowered to that maximum (never the reverse);
- minimums adding up to more than 100% are scaled down proportionally to sum to 100%.
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


def weight_bounds(targets: Mapping[str, tuple[float | None, float | None]],
                  max_weight: float = defaults.MAX_WEIGHT) -> Bounds:
    """`targets`: symbol -> (min_portfolio_target, max_portfolio_target) in percent, None when
    unset. Returns bounds with lower <= upper <= max_weight and sum(lower) <= 1."""
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    notes: list[str] = []
    for symbol, (minimum, maximum) in sorted(targets.items()):
        upper[symbol] = max_weight if maximum is None else max(0.0, min(max_weight, maximum / 100))
        lower[symbol] = 0.0 if minimum is None else max(0.0, minimum / 100)
        if lower[symbol] > upper[symbol]:
            notes.append(f"{symbol}: minimum target {lower[symbol]:.1%} lowered to its maximum {upper[symbol]:.1%}")
            lower[symbol] = upper[symbol]
    total_lower = sum(lower.values())
    if total_lower > 1:
        notes.append(f"minimum targets add up to {total_lower:.1%}: scaled down to 100%")
        lower = {s: w / total_lower for s, w in lower.items()}
    return Bounds(lower, upper, notes)


def fit_to_bounds(raw: Mapping[str, float], bounds: Bounds, cutoff: float = defaults.WEIGHT_CUTOFF,
                  decimals: int = 6) -> dict[str, float]:
    """Weights inside `bounds` that sum to at most 1, from an optimiser's raw weights.

    planner.md section 3 post-processing (clamp, drop below the cutoff, normalise, clamp), with
    the normalisation done by water-filling so it never lifts a weight above its upper bound:
    the shortfall to 100% is spread over the kept weights in proportion to their size, among
    those still below their bound, until it is placed or every kept weight is at its bound.
    Weights are rounded to `decimals` places; weights of 0 are left out of the result.
    """
    weights = {}
    for symbol, upper in bounds.upper.items():
        lower = bounds.lower.get(symbol, 0.0)
        value = min(upper, max(lower, raw.get(symbol, 0.0)))
        if value < cutoff and lower <= 0:
            value = 0.0  # too small to trade; a minimum target is kept even below the cutoff
        weights[symbol] = value
    _trim_excess(weights, bounds.lower)
    _water_fill(weights, bounds.upper)
    return _rounded(weights, bounds, decimals)


def _rounded(weights: dict[str, float], bounds: Bounds, decimals: int) -> dict[str, float]:
    """Round to `decimals` places, never above an upper bound; if rounding up pushed the sum over
    1, take one unit off the largest weights, those with room above their minimum first (a
    minimum may then be missed by less than one unit)."""
    rounded = {s: min(bounds.upper[s], round(w, decimals)) for s, w in weights.items()}
    unit = 10.0 ** -decimals
    order = sorted(rounded, key=lambda s: (rounded[s] - unit < bounds.lower.get(s, 0.0), -rounded[s], s))
    for symbol in order:
        if sum(rounded.values()) <= 1 + EPSILON:
            break
        rounded[symbol] = max(0.0, round(rounded[symbol] - unit, decimals))
    return {s: w for s, w in sorted(rounded.items()) if w > 0}


def _trim_excess(weights: dict[str, float], lower: Mapping[str, float]) -> None:
    """Above 100% (raw weights lifted to their minimums): shrink what lies above the minimums."""
    total = sum(weights.values())
    floor = sum(min(weights[s], lower.get(s, 0.0)) for s in weights)
    if total <= 1 or total <= floor:
        return
    keep = max(0.0, 1 - floor) / (total - floor)
    for symbol, weight in weights.items():
        minimum = min(weight, lower.get(symbol, 0.0))
        weights[symbol] = minimum + (weight - minimum) * keep


def _water_fill(weights: dict[str, float], upper: Mapping[str, float]) -> None:
    while True:
        shortfall = 1.0 - sum(weights.values())
        room = {s: w for s, w in weights.items() if w > 0 and upper[s] - w > EPSILON}
        if shortfall <= EPSILON or not room:
            return
        share = shortfall / sum(room.values())
        for symbol, weight in room.items():
            weights[symbol] = min(upper[symbol], weight * (1 + share))
