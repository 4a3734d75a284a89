"""Long-term performance group (planner.md section 1): CAGR 0.40, Sortino 0.35, Sharpe 0.25.

CAGR is the data service's CAGR_5Y: monthly average adjusted closes over the last 60 months
(all months when fewer, none below 12). Sharpe and Sortino come from all daily returns up to
the date (rf 0, ×√252).
"""

from __future__ import annotations

from services.planner.scoring.curves import NEUTRAL, GroupScore, bell, group, known
from services.planner.scoring.inputs import Metrics

WEIGHTS = {"cagr": 0.40, "sortino": 0.35, "sharpe": 0.25}
TARGET_CAGR = 0.11  # the original's target annual return


def cagr_score(cagr: float | None, target: float = TARGET_CAGR) -> float:
    """Bell curve around `target`: c <= 0 -> 0.15, else 0.15 + 0.85·exp(-(c - T)²/(2σ²)) with
    σ 0.06 below T and 0.10 above; missing -> 0.5."""
    return bell(cagr, target, 0.06, 0.10)


def sharpe_score(sharpe: float | None) -> float:
    """>= 2 -> 1; [1, 2) -> 0.7 + 0.3(s - 1); [0.5, 1) -> 0.4 + 0.6(s - 0.5); [0, 0.5) -> 0.8s;
    < 0 -> 0; missing -> 0.5."""
    s = known(sharpe)
    if s is None:
        return NEUTRAL
    if s >= 2:
        return 1.0
    if s >= 1:
        return 0.7 + 0.3 * (s - 1)
    if s >= 0.5:
        return 0.4 + 0.6 * (s - 0.5)
    if s >= 0:
        return 0.8 * s
    return 0.0


def sortino_score(sortino: float | None) -> float:
    """>= 2 -> 1; [1.5, 2) -> 0.8 + 0.4(s - 1.5); [1, 1.5) -> 0.6 + 0.4(s - 1);
    [0.5, 1) -> 0.4 + 0.4(s - 0.5); [0, 0.5) -> 0.8s; < 0 -> 0; missing -> 0.5."""
    s = known(sortino)
    if s is None:
        return NEUTRAL
    if s >= 2:
        return 1.0
    if s >= 1.5:
        return 0.8 + 0.4 * (s - 1.5)
    if s >= 1:
        return 0.6 + 0.4 * (s - 1)
    if s >= 0.5:
        return 0.4 + 0.4 * (s - 0.5)
    if s >= 0:
        return 0.8 * s
    return 0.0


def score(metrics: Metrics) -> GroupScore:
    return group({"cagr": cagr_score(metrics.cagr_5y), "sortino": sortino_score(metrics.sortino),
                  "sharpe": sharpe_score(metrics.sharpe)}, WEIGHTS)
