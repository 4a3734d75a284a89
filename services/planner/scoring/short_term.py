"""Short-term performance group (planner.md section 1): momentum 0.5, drawdown 0.5.

Momentum is 0.6·r30 + 0.4·r90 (r30 alone without 90 days of history), from the data service's
MOMENTUM_30D/90D (price / price n bars ago - 1). The drawdown is the deepest of the last 252
bars (MAX_DRAWDOWN_1Y): the original scored the drawdown of the year it read.
"""

from __future__ import annotations

from services.planner.scoring.curves import NEUTRAL, GroupScore, group, known
from services.planner.scoring.inputs import Metrics

WEIGHTS = {"momentum": 0.5, "drawdown": 0.5}


def momentum(r30: float | None, r90: float | None) -> float | None:
    r30, r90 = known(r30), known(r90)
    if r30 is None:
        return None
    return r30 if r90 is None else 0.6 * r30 + 0.4 * r90


def momentum_score(m: float | None) -> float:
    """[0.05, 0.15] -> 1; [0, 0.05) -> 0.6 + 8m; (0.15, 0.3] -> 0.8 + (0.3 - m)·4/3;
    > 0.3 -> max(0.5, 0.8 - 2(m - 0.3)); [-0.1, 0) -> 0.5 + (m + 0.1);
    < -0.1 -> max(0.2, 0.5 + 3m); missing -> 0.5."""
    m = known(m)
    if m is None:
        return NEUTRAL
    if 0.05 <= m <= 0.15:
        return 1.0
    if 0 <= m < 0.05:
        return 0.6 + 8 * m
    if 0.15 < m <= 0.3:
        return 0.8 + (0.3 - m) * 4 / 3
    if m > 0.3:
        return max(0.5, 0.8 - 2 * (m - 0.3))
    if m >= -0.1:
        return 0.5 + (m + 0.1)
    return max(0.2, 0.5 + 3 * m)


def drawdown_score(max_drawdown: float | None) -> float:
    """d = |max drawdown|: d <= 0.1 -> 1; <= 0.2 -> 0.8 + 2(0.2 - d); <= 0.3 -> 0.6 + 2(0.3 - d);
    <= 0.5 -> 0.2 + 2(0.5 - d); else max(0, 0.2 - (d - 0.5)); missing -> 0.5."""
    value = known(max_drawdown)
    if value is None:
        return NEUTRAL
    d = abs(value)
    if d <= 0.1:
        return 1.0
    if d <= 0.2:
        return 0.8 + 2 * (0.2 - d)
    if d <= 0.3:
        return 0.6 + 2 * (0.3 - d)
    if d <= 0.5:
        return 0.2 + 2 * (0.5 - d)
    return max(0.0, 0.2 - (d - 0.5))


def score(metrics: Metrics) -> GroupScore:
    return group({"momentum": momentum_score(momentum(metrics.momentum_30d, metrics.momentum_90d)),
                  "drawdown": drawdown_score(metrics.max_drawdown_1y)}, WEIGHTS)
