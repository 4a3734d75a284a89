"""Dividends group (planner.md section 1): yield 0.7, consistency 0.3 (½ payout + ½ growth).

Yields are fractions (0.03 = 3%). A missing yield is unknown, not zero: it scores 0.5, while a
real yield of 0 scores the original's 0.3.
"""

from __future__ import annotations

from services.planner.scoring.curves import NEUTRAL, GroupScore, clamp, group, known
from services.planner.scoring.inputs import Fundamentals

WEIGHTS = {"yield": 0.7, "consistency": 0.3}
NO_YIELD = 0.3  # a yield of 0 (or below)


def yield_score(dividend_yield: float | None) -> float:
    """y <= 0 -> 0.3; y >= 0.06 -> 1; [0.03, 0.06) -> 0.7 + 10(y - 0.03); [0.01, 0.03) ->
    0.4 + 15(y - 0.01); (0, 0.01) -> 0.3 + 10y; missing -> 0.5."""
    y = known(dividend_yield)
    if y is None:
        return NEUTRAL
    if y <= 0:
        return NO_YIELD
    if y >= 0.06:
        return 1.0
    if y >= 0.03:
        return 0.7 + 10 * (y - 0.03)
    if y >= 0.01:
        return 0.4 + 15 * (y - 0.01)
    return 0.3 + 10 * y


def payout_score(payout_ratio: float | None) -> float:
    """p in [0.3, 0.6] -> 1; p < 0.3 -> 0.5 + p/0.6 (floored at 0); p <= 0.8 -> 1 - 1.5(p - 0.6);
    above -> 0.4; missing -> 0.5."""
    p = known(payout_ratio)
    if p is None:
        return NEUTRAL
    if 0.3 <= p <= 0.6:
        return 1.0
    if p < 0.3:
        return clamp(0.5 + p / 0.6)
    if p <= 0.8:
        return 1 - 1.5 * (p - 0.6)
    return 0.4


def growth_score(five_year_avg_yield: float | None) -> float:
    """min(1, 0.5 + 5·five-year average yield); missing -> 0.5."""
    y = known(five_year_avg_yield)
    return NEUTRAL if y is None else clamp(0.5 + 5 * y)


def consistency_score(fundamentals: Fundamentals) -> float:
    return 0.5 * payout_score(fundamentals.payout_ratio) + 0.5 * growth_score(fundamentals.five_year_avg_dividend_yield)


def score(fundamentals: Fundamentals) -> GroupScore:
    return group({"yield": yield_score(fundamentals.dividend_yield),
                  "consistency": consistency_score(fundamentals)}, WEIGHTS)
