"""Mean-variance weights with the original's fallback chain (planner.md section 3 "Mean-variance").
Pure.

At each relaxation level of the sector constraints (full, minimums halved, none) the objectives
are tried in order: `efficient_return(target)`, `min_volatility`, `efficient_risk(0.15)`,
`max_sharpe`; the first that solves gives the weights (`clean_weights`). The solver is named, so
the same inputs give the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.planner import defaults
from services.planner.optimizer.bounds import Bounds
from services.planner.optimizer.sectors import SectorConstraint

if TYPE_CHECKING:  # at run time imported where used (bench/footprint.py: they are heavy)
    import pandas as pd
    from pypfopt import EfficientFrontier

SOLVER = "CLARABEL"  # interior point, deterministic; solves every objective here (QP and SOCP)


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
    for level, constraints in levels:
        for objective, run in _objectives(target_return, target_volatility):
            frontier = EfficientFrontier(mu, cov, weight_bounds=weight_bounds, solver=solver)
            _add_sectors(frontier, constraints)
            try:
                run(frontier)
            except (OptimizationError, ValueError, cp.error.SolverError):
                continue  # infeasible, or the objective does not apply (no return above 0, ...)
            return MeanVarianceResult(dict(frontier.clean_weights(rounding=None)), level, objective)
    return None
