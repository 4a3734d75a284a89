"""Target weights from PyPortfolioOpt: mean-variance on Ledoit-Wolf shrunk covariance.

Tries max Sharpe first; when no asset beats the risk-free rate (max Sharpe is then undefined)
falls back to minimum volatility. The solver is fixed for deterministic results.
"""

from __future__ import annotations

import pandas as pd
from pypfopt import EfficientFrontier, expected_returns, risk_models
from pypfopt.exceptions import OptimizationError

from services.common.errors import FailedPrecondition
from services.planner import defaults

SOLVER = "CLARABEL"


def target_weights(closes: pd.DataFrame, max_weight: float = defaults.MAX_WEIGHT) -> tuple[dict[str, float], str]:
    """Weights summing to 1 over the columns of `closes` (one column per symbol, rows by date).

    Columns with fewer than MIN_HISTORY_BARS closes are dropped first. Returns (weights, method).
    """
    usable = closes.loc[:, closes.count() >= defaults.MIN_HISTORY_BARS].ffill().dropna()
    if usable.shape[1] < 2 or len(usable) < defaults.MIN_HISTORY_BARS:
        raise FailedPrecondition(
            "insufficient_history",
            f"need at least 2 securities with {defaults.MIN_HISTORY_BARS} common daily closes",
        )
    mu = expected_returns.mean_historical_return(usable, frequency=252)
    cov = risk_models.CovarianceShrinkage(usable, frequency=252).ledoit_wolf()
    upper = max(max_weight, 1.0 / usable.shape[1])  # bounds must admit a fully invested portfolio
    for method in ("max_sharpe", "min_volatility"):
        frontier = EfficientFrontier(mu, cov, weight_bounds=(0, upper), solver=SOLVER)
        try:
            if method == "max_sharpe":
                frontier.max_sharpe(risk_free_rate=0.0)
            else:
                frontier.min_volatility()
        except (OptimizationError, ValueError):
            continue
        weights = frontier.clean_weights(cutoff=defaults.WEIGHT_CUTOFF, rounding=6)
        total = sum(weights.values())
        return {s: w / total for s, w in weights.items() if w > 0}, method
    raise FailedPrecondition("optimiser_failed", "neither max Sharpe nor minimum volatility converged")
