"""Windfall: how much of a holding's gain is luck beyond its usual growth, and how much of it
to take as profit (planner.md section 1, windfall rules)."""

from __future__ import annotations

from services.planner.scoring.curves import known

DEFAULT_CAGR = 0.10        # the growth assumed without a 5- or 10-year CAGR
DEFAULT_YEARS = 1.0        # the holding period assumed when the first buy is unknown
MIN_YEARS = 0.1


def excess_gain(gain: float, days_held: int | None, cagr_5y: float | None, cagr_10y: float | None) -> float:
    """gain - ((1 + cagr)^years - 1), with cagr = CAGR_5Y, else CAGR_10Y, else 0.10 and
    years = max(0.1, days/365) (1 year when unknown). `gain` = price / average cost - 1."""
    cagr = next((c for c in (known(cagr_5y), known(cagr_10y)) if c is not None), DEFAULT_CAGR)
    years = DEFAULT_YEARS if days_held is None else max(MIN_YEARS, days_held / 365)
    try:
        expected = (1 + cagr) ** years - 1 if cagr > -1 else -1.0
    except OverflowError:
        expected = float("inf")
    return gain - expected


def windfall_score(excess: float | None) -> float:
    """excess >= 0.5 -> 1; >= 0.25 -> 0.5 + 2(excess - 0.25); > 0 -> 2·excess; else 0
    (missing: no windfall, 0)."""
    e = known(excess)
    if e is None or e <= 0:
        return 0.0
    if e >= 0.5:
        return 1.0
    if e >= 0.25:
        return 0.5 + 2 * (e - 0.25)
    return 2 * e


def profit_taking_fraction(gain: float | None, excess: float | None) -> float:
    """The share of the holding to sell: a gain of 100% or more -> 0.5 when excess > 0.3, else
    0.3; otherwise excess >= 0.5 -> 0.4, excess >= 0.25 -> 0.2, else 0."""
    g, e = known(gain), known(excess)
    if g is None or e is None:
        return 0.0
    if g >= 1.0:
        return 0.5 if e > 0.3 else 0.3
    if e >= 0.5:
        return 0.4
    if e >= 0.25:
        return 0.2
    return 0.0
