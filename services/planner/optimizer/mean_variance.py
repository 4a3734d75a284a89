"""Mean-variance weights with the original's fallback chain (planner.md section 3 "Mean-variance").
Pure.

At each relaxation level of the sector constraints (full, minimums halved, none) the objectives
are tried in order: `efficient_return(target)`, `min_volatility`, `efficient_risk(0.15)`,
`max_sharpe`; the first that solves gives the weights (`clean_weights`). The solver is named, so
the same inputs give the same weights. Whether `efficient_return`'s target can be reached is
told from the bounds (`highest_return`) when it clearly can or cannot, instead of by the
highest-return LP PyPortfolioOpt solves first; the weights are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from services.planner import defaults
from services.planner.optimizer.bounds import Bounds
from services.planner.optimizer.sectors import SectorConstraint

if TYPE_CHECKING:  # at run time imported where used (bench/footprint.py: they are heavy)
    import pandas as pd
    from pypfopt import EfficientFrontier

SOLVER = "CLARABEL"  # interior point, deterministic; solves every objective here (QP and SOCP)
# How far the target return must be from the highest one for highest_return to decide whether
# it is reachable (far above the solver's tolerance; nearer, the solver decides as before).
CLEAR_MARGIN = 1e-4


@dataclass(frozen=True)
class MeanVarianceResult:
    weights: dict[str, float]  # sums to 1
    level: str                 # full, relaxed_sectors or no_sectors
    objective: str             # efficient_return, min_volatility, efficient_risk or max_sharpe


def _objectives(target_return: float, target_volatility: float) -> list[tuple[str, Callable]]:
    return [
        ("efficient_return", lambda f: f.efficient_return(target_return=float(target_return))),
        ("min_volatility", lambda f: f.min_volatility()),
        ("efficient_risk", lambda f: f.efficient_risk(target_volatility=float(target_volatility))),
        ("max_sharpe", lambda f: f.max_sharpe(risk_free_rate=0.0)),
    ]


def _add_sectors(frontier: EfficientFrontier, constraints: list[SectorConstraint]) -> None:
    for kind in sorted({c.kind for c in constraints}):
        of_kind = [c for c in constraints if c.kind == kind]
        mapper = {symbol: c.name for c in of_kind for symbol in c.symbols}
        frontier.add_sector_constraints(mapper, {c.name: c.lower for c in of_kind},
                                        {c.name: c.upper for c in of_kind})


def mean_variance(mu: pd.Series, cov: pd.DataFrame, bounds: Bounds,
                  levels: list[tuple[str, list[SectorConstraint]]],
                  target_return: float = defaults.OPTIMIZER_TARGET_RETURN,
                  target_volatility: float = defaults.TARGET_VOLATILITY,
                  solver: str = SOLVER) -> MeanVarianceResult | None:
    """The first (level, objective) that solves, or None when none does. `mu` and `cov` share
    their symbols' order; `bounds` has an entry per symbol."""
    import cvxpy as cp  # noqa: PLC0415 - heavy: loaded on first use, not at start (bench/footprint.py)
    from pypfopt import EfficientFrontier  # noqa: PLC0415
    from pypfopt.exceptions import OptimizationError  # noqa: PLC0415

    symbols = list(mu.index)
    weight_bounds = [(bounds.lower[s], bounds.upper[s]) for s in symbols]
    highest = highest_return(mu.to_numpy(dtype=float), weight_bounds)
    for level, constraints in levels:
        for objective, run in _objectives(target_return, target_volatility):
            clear = None if objective != "efficient_return" or highest is None else float(target_return) - highest
            if clear is not None and clear > CLEAR_MARGIN:
                continue  # above the highest return: efficient_return raises (ValueError)
            frontier = EfficientFrontier(mu, cov, weight_bounds=weight_bounds, solver=solver)
            _add_sectors(frontier, constraints)
            if clear is not None and clear < -CLEAR_MARGIN and not constraints:
                # efficient_return would solve the highest-return LP only to compare the target with it
                frontier._max_return_value = highest  # noqa: SLF001 - the value it compares with
            try:
                run(frontier)
            except (OptimizationError, ValueError, cp.error.SolverError):
                continue  # infeasible, or the objective does not apply (no return above 0, ...)
            return MeanVarianceResult(dict(frontier.clean_weights(rounding=None)), level, objective)
    return None


def highest_return(mu: np.ndarray, weight_bounds: list[tuple[float, float]]) -> float | None:
    """The highest return mu . w with lower <= w <= upper and sum(w) = 1 (PyPortfolioOpt's
    `_max_return` without sector constraints, an upper bound of it with them): each weight at its
    lower bound, the rest given to the highest returns first (a fractional knapsack). None when
    the bounds do not allow sum(w) = 1 clearly (then the solver decides)."""
    lower = np.array([low for low, _ in weight_bounds], dtype=float)
    upper = np.array([high for _, high in weight_bounds], dtype=float)
    left = 1.0 - lower.sum()
    if left < CLEAR_MARGIN or upper.sum() < 1.0 + CLEAR_MARGIN or not np.isfinite(mu).all():
        return None
    weights = lower.copy()
    for index in np.argsort(-mu, kind="stable"):
        step = min(upper[index] - lower[index], left)
        weights[index] += step
        left -= step
    return float(mu @ weights)
