"""Opportunity group (planner.md section 1): below the 52-week high 0.5, P/E 0.5.

The 52-week high is the data service's HIGH_52W (the highest high, else close, of the last 252
bars); the distance below it is DISTANCE_FROM_52W_HIGH.
"""

from __future__ import annotations

from services.planner.scoring.curves import NEUTRAL, GroupScore, group, known
from services.planner.scoring.inputs import Fundamentals, Metrics

WEIGHTS = {"below_52w_high": 0.5, "pe": 0.5}
MARKET_AVG_PE = 22.0      # the original's setting `market_avg_pe`
NON_POSITIVE_PE = 0.3     # a loss-making company (P/E <= 0)
MIN_DAYS = 50             # fewer daily bars: the whole group is neutral


def below_high_score(distance: float | None) -> float:
    """p = (high - price)/high: p <= 0 -> 0.2; p < 0.1 -> 0.2 + 3p; p < 0.2 -> 0.5 + 3(p - 0.1);
    p < 0.3 -> 0.8 + 2(p - 0.2); else 1; missing -> 0.5."""
    p = known(distance)
    if p is None:
        return NEUTRAL
    if p <= 0:
        return 0.2
    if p < 0.1:
        return 0.2 + 3 * p
    if p < 0.2:
        return 0.5 + 3 * (p - 0.1)
    if p < 0.3:
        return 0.8 + 2 * (p - 0.2)
    return 1.0


def pe_score(trailing_pe: float | None, forward_pe: float | None, market_avg_pe: float = MARKET_AVG_PE) -> float:
    """eff = mean(P/E, forward P/E) when forward > 0, else P/E; d = eff/market - 1:
    d >= 0.2 -> 0.2; [0, 0.2) -> 0.5 - 1.5d; [-0.1, 0) -> 0.5 + 2|d|; [-0.2, -0.1) ->
    0.7 + 3(|d| - 0.1); below -0.2 -> 1. P/E <= 0 -> 0.3; P/E missing -> 0.5 (the original
    gave missing the 0.3 of a loss-maker)."""
    pe, forward = known(trailing_pe), known(forward_pe)
    if pe is None:
        return NEUTRAL
    if pe <= 0:
        return NON_POSITIVE_PE
    effective = (pe + forward) / 2 if forward is not None and forward > 0 else pe
    d = effective / market_avg_pe - 1
    if d >= 0.2:
        return 0.2
    if d >= 0:
        return 0.5 - 1.5 * d
    if d >= -0.1:
        return 0.5 + 2 * abs(d)
    if d >= -0.2:
        return 0.7 + 3 * (abs(d) - 0.1)
    return 1.0


def score(metrics: Metrics, fundamentals: Fundamentals) -> GroupScore:
    if metrics.daily_bars < MIN_DAYS:
        return group({"below_52w_high": NEUTRAL, "pe": NEUTRAL}, WEIGHTS)
    return group({"below_52w_high": below_high_score(metrics.distance_from_52w_high),
                  "pe": pe_score(fundamentals.trailing_pe, fundamentals.forward_pe)}, WEIGHTS)
