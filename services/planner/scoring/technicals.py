"""Technicals group (planner.md section 1): RSI 0.35, Bollinger 0.35, EMA 0.30.

From the data service's RSI_14 (Wilder), BB_POSITION (20 bars, 2σ population, clamped 0..1)
and DISTANCE_FROM_EMA_200. With fewer than 200 bars the data service has no EMA(200) and the
EMA part is neutral (the original used the plain mean of the closes instead).
"""

from __future__ import annotations

from services.planner.scoring.curves import NEUTRAL, GroupScore, clamp, group, known
from services.planner.scoring.inputs import Metrics

WEIGHTS = {"rsi": 0.35, "bollinger": 0.35, "ema": 0.30}
MIN_CLOSES = 20  # fewer: the whole group is neutral


def rsi_score(rsi: float | None) -> float:
    """RSI < 30 -> 1; > 70 -> 0; else 1 - (RSI - 30)/40; missing -> 0.5."""
    r = known(rsi)
    if r is None:
        return NEUTRAL
    if r < 30:
        return 1.0
    if r > 70:
        return 0.0
    return 1 - (r - 30) / 40


def bollinger_score(position: float | None) -> float:
    """1 - clamp((price - lower)/(upper - lower), 0, 1); missing -> 0.5."""
    p = known(position)
    return NEUTRAL if p is None else 1 - clamp(p)


def ema_score(distance: float | None) -> float:
    """d = price/EMA - 1: d >= 0.1 -> 0.2; [0, 0.1) -> 0.5 - 3d; [-0.05, 0) -> 0.5 + 4|d|;
    [-0.1, -0.05) -> 0.7 + 6(|d| - 0.05); below -> 1; missing -> 0.5."""
    d = known(distance)
    if d is None:
        return NEUTRAL
    if d >= 0.1:
        return 0.2
    if d >= 0:
        return 0.5 - 3 * d
    if d >= -0.05:
        return 0.5 + 4 * abs(d)
    if d >= -0.1:
        return 0.7 + 6 * (abs(d) - 0.05)
    return 1.0


def score(metrics: Metrics) -> GroupScore:
    if metrics.daily_bars < MIN_CLOSES:
        return group({"rsi": NEUTRAL, "bollinger": NEUTRAL, "ema": NEUTRAL}, WEIGHTS)
    return group({"rsi": rsi_score(metrics.rsi_14), "bollinger": bollinger_score(metrics.bb_position),
                  "ema": ema_score(metrics.distance_from_ema_200)}, WEIGHTS)
