"""What every scoring group shares: missing values, clamping, weighted sums, the bell curve.

Scores are fractions in [0, 1]. A value that is None, NaN or infinite is missing (decisions.md
rule 2): a curve never turns it into 0, it returns the documented neutral value instead
(`NEUTRAL` unless the curve's docstring says otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

NEUTRAL = 0.5


def known(value: float | None) -> float | None:
    """`value` as a float when it is a finite number, else None (missing)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(high, max(low, value))


def weighted(parts: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Σ part × weight / Σ weight over the weights' keys (the weights are renormalised)."""
    total = sum(weights.values())
    return sum(parts[name] * weight for name, weight in weights.items()) / total


def bell(value: float | None, target: float, sigma_below: float, sigma_above: float, floor: float = 0.15) -> float:
    """The original's bell curve for growth rates (planner.md section 1, long-term CAGR and
    end-state total return): `floor` at or below 0, else floor + (1 - floor)·exp(-(v - T)²/(2σ²))
    with σ = `sigma_below` under the target and `sigma_above` over it; missing -> NEUTRAL."""
    value = known(value)
    if value is None:
        return NEUTRAL
    if value <= 0:
        return floor
    z = (value - target) / (sigma_below if value < target else sigma_above)
    return floor + (1 - floor) * math.exp(-0.5 * min(z * z, 1e4))  # far out: exp underflows to 0


@dataclass(frozen=True)
class GroupScore:
    """A group's score in [0, 1] and the component scores it was made of."""

    score: float
    components: dict[str, float] = field(default_factory=dict)


def group(components: Mapping[str, float], weights: Mapping[str, float]) -> GroupScore:
    """A group score: the weighted components, capped at 1 and rounded to 3 dp as the original."""
    return GroupScore(round(clamp(weighted(components, weights)), 3),
                      {name: round(value, 3) for name, value in components.items()})
