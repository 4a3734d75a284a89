"""Fundamentals group (planner.md section 1): financial strength 0.60, consistency 0.40.

Each missing input scores the neutral 0.5 on its own (so no fundamentals at all -> 0.5, as the
original), where the original substituted a number into the formula (margin 0, debt/equity 50%,
current ratio 1). A debt/equity of 0 (no debt) is a real value and scores 1; a negative one
(negative equity) scores 0.
"""

from __future__ import annotations

from services.planner.scoring.curves import NEUTRAL, GroupScore, clamp, group, known
from services.planner.scoring.inputs import Fundamentals, Metrics

WEIGHTS = {"financial_strength": 0.60, "consistency": 0.40}
STRENGTH_WEIGHTS = {"margin": 0.4, "debt_to_equity": 0.3, "current_ratio": 0.3}
NO_TEN_YEAR_CONSISTENCY = 0.6  # the original's value when there is no 10-year CAGR


def margin_score(margin: float | None) -> float:
    """m >= 0 -> min(1, 0.5 + 2.5m); m < 0 -> max(0, 0.5 + 2m); missing -> 0.5."""
    m = known(margin)
    if m is None:
        return NEUTRAL
    return min(1.0, 0.5 + 2.5 * m) if m >= 0 else max(0.0, 0.5 + 2 * m)


def debt_to_equity_score(ratio: float | None) -> float:
    """1 - min(2, D/E)/2 with D/E as a ratio (the original's 1 - min(200, de)/200 on Yahoo's
    percent); negative equity -> 0; missing -> 0.5."""
    de = known(ratio)
    if de is None:
        return NEUTRAL
    if de < 0:
        return 0.0
    return 1 - min(2.0, de) / 2


def current_ratio_score(ratio: float | None) -> float:
    """min(1, min(3, cr)/2); missing -> 0.5."""
    cr = known(ratio)
    if cr is None:
        return NEUTRAL
    return clamp(min(3.0, cr) / 2)


def financial_strength(fundamentals: Fundamentals) -> float:
    """0.4·margin + 0.3·debt/equity + 0.3·current-ratio score."""
    parts = {"margin": margin_score(fundamentals.profit_margin),
             "debt_to_equity": debt_to_equity_score(fundamentals.debt_to_equity),
             "current_ratio": current_ratio_score(fundamentals.current_ratio)}
    return sum(parts[name] * weight for name, weight in STRENGTH_WEIGHTS.items())


def consistency_score(cagr_5y: float | None, cagr_10y: float | None) -> float:
    """How close the 5-year CAGR is to the 10-year one: |Δ| < 0.02 -> 1; < 0.05 -> 0.8; else
    max(0.4, 1 - 4|Δ|). No 10-year CAGR -> 0.6; no 5-year CAGR -> 0.5."""
    five, ten = known(cagr_5y), known(cagr_10y)
    if five is None:
        return NEUTRAL
    if ten is None:
        return NO_TEN_YEAR_CONSISTENCY
    delta = abs(five - ten)
    if delta < 0.02:
        return 1.0
    if delta < 0.05:
        return 0.8
    return max(0.4, 1 - 4 * delta)


def score(metrics: Metrics, fundamentals: Fundamentals) -> GroupScore:
    return group({"financial_strength": financial_strength(fundamentals),
                  "consistency": consistency_score(metrics.cagr_5y, metrics.cagr_10y)}, WEIGHTS)
