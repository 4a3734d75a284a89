"""Target weights from PyPortfolioOpt: mean-variance on Ledoit-Wolf shrunk covariance, inside
each security's weight bounds (services/planner/bounds.py).

Tries max Sharpe first; when no asset beats the risk-free rate (max Sharpe is then undefined)
falls back to minimum volatility. The solver is fixed for deterministic results. When the
securities' caps add up to 100% or less, nothing is left to choose: each gets its cap (the most
that can be invested) and the rest stays cash; no cap is ever raised to make the problem
feasible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from pypfopt import EfficientFrontier, expected_returns, risk_models
from pypfopt.exceptions import OptimizationError

from services.common.errors import FailedPrecondition
from services.planner import defaults
from services.planner.bounds import EPSILON, Bounds, fit_to_bounds

SOLVER = "CLARABEL"
AT_CAPS = "at_caps"  # the method reported when the caps alone decide the weights


@dataclass(frozen=True)
class Allocation:
    weights: dict[str, float]  # symbol -> fraction of the portfolio; sums to at most 1
    method: str                # max_sharpe, min_volatility or at_caps
    notes: list[str] = field(default_factory=list)

    @property
    def unallocated(self) -> float:
        """The share of the portfolio the targets leave in cash (caps, rounding)."""
        return max(0.0, 1.0 - sum(self.weights.values()))


def target_weights(closes: pd.DataFrame, bounds: Bounds) -> Allocation:
    """Weights over the columns of `closes` (one column per symbol, rows by date, valid closes
    only) within `bounds` (one entry per column). Columns with fewer than MIN_HISTORY_BARS closes
    are dropped first. Raises FailedPrecondition `insufficient_history` when nothing is left."""
    usable = closes.loc[:, closes.count() >= defaults.MIN_HISTORY_BARS].ffill().dropna()
    if usable.shape[1] == 0 or len(usable) < defaults.MIN_HISTORY_BARS:
        raise FailedPrecondition("insufficient_history",
                                 f"no security has {defaults.MIN_HISTORY_BARS} common valid daily closes")
    symbols = list(usable.columns)
    bounds = Bounds({s: bounds.lower.get(s, 0.0) for s in symbols}, {s: bounds.upper[s] for s in symbols},
                    bounds.notes)
    if bounds.upper_total <= 1 + EPSILON:
        weights, method = fit_to_bounds(bounds.upper, bounds), AT_CAPS
    else:
        raw, method = _mean_variance(usable, bounds)
        weights = fit_to_bounds(raw, bounds)
    notes = list(bounds.notes)
    unplaced = 1.0 - sum(weights.values())
    if unplaced > 0.0005:
        notes.append(f"{unplaced:.1%} stays cash: the weight caps of the {len(symbols)} eligible securities "
                     f"add up to {min(bounds.upper_total, 1.0):.1%}" if method == AT_CAPS else
                     f"{unplaced:.1%} stays cash: the weights above the cutoff are at their caps")
    return Allocation(weights, method, notes)


def _mean_variance(prices: pd.DataFrame, bounds: Bounds) -> tuple[dict[str, float], str]:
    mu = expected_returns.mean_historical_return(prices, frequency=252)
    cov = risk_models.CovarianceShrinkage(prices, frequency=252).ledoit_wolf()
    weight_bounds = [(bounds.lower[s], bounds.upper[s]) for s in prices.columns]
    for method in ("max_sharpe", "min_volatility"):
        frontier = EfficientFrontier(mu, cov, weight_bounds=weight_bounds, solver=SOLVER)
        try:
            if method == "max_sharpe":
                frontier.max_sharpe(risk_free_rate=0.0)
            else:
                frontier.min_volatility()
        except (OptimizationError, ValueError):
            continue
        return dict(frontier.clean_weights(cutoff=0.0, rounding=None)), method
    raise FailedPrecondition("optimiser_failed", "neither max Sharpe nor minimum volatility converged")
