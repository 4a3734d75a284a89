"""Risk inputs of the optimiser from valid daily closes only (planner.md section 3 "Covariance").
Pure.

The closes are those the data service has not flagged (services/planner/eligibility.py
valid_closes): a flagged bar is absent, and its date is forward-filled from the close before it,
exactly as if the provider had never sent it. Rows before every security has a close are
dropped rather than back-filled, so no price is invented for a security not yet listed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from services.planner import defaults

if TYPE_CHECKING:  # at run time imported where used (bench/footprint.py: they are heavy)
    import pandas as pd

TRADING_DAYS = 252


@dataclass(frozen=True)
class Correlation:
    first: str
    second: str
    rho: float  # Pearson correlation of daily returns


def aligned_closes(closes: Mapping[str, Sequence[tuple[str, float]]],
                   lookback: int = defaults.LOOKBACK_BARS) -> pd.DataFrame:
    """One column per symbol (sorted), rows by date: each symbol's last `lookback` valid closes,
    gaps forward-filled, leading rows where any symbol has no close yet dropped."""
    import pandas as pd  # noqa: PLC0415 - heavy: loaded on first use, not at start (bench/footprint.py)

    series = {symbol: rows[-lookback:] for symbol, rows in sorted(closes.items())}
    if not series:
        return pd.DataFrame()
    dates = sorted({day for rows in series.values() for day, _ in rows})  # ISO dates sort as dates
    row_of = {day: i for i, day in enumerate(dates)}
    matrix = np.full((len(dates), len(series)), np.nan)
    for column, rows in enumerate(series.values()):
        matrix[[row_of[day] for day, _ in rows], column] = [close for _, close in rows]
    frame = pd.DataFrame(matrix, index=dates, columns=list(series)).ffill().dropna()
    frame.index = pd.to_datetime(frame.index)
    return frame


def daily_returns(prices: pd.DataFrame) -> pd.DataFrame:
    from pypfopt.expected_returns import returns_from_prices  # noqa: PLC0415 - as in aligned_closes

    return returns_from_prices(prices)


def ledoit_wolf(prices: pd.DataFrame) -> pd.DataFrame:
    """Annualised Ledoit-Wolf shrunk covariance (PyPortfolioOpt `CovarianceShrinkage.ledoit_wolf`,
    constant-variance target)."""
    from pypfopt import risk_models  # noqa: PLC0415 - as in aligned_closes

    return risk_models.CovarianceShrinkage(prices, frequency=TRADING_DAYS).ledoit_wolf()


def top_correlations(returns: pd.DataFrame, threshold: float = defaults.CORRELATION_THRESHOLD,
                     limit: int = defaults.TOP_CORRELATIONS) -> list[Correlation]:
    """Pairs with |rho| >= threshold, strongest first (ties by symbol), at most `limit`."""
    if returns.shape[1] < 2:
        return []
    matrix = returns.corr().to_numpy()
    symbols = list(returns.columns)
    first, second = np.triu_indices(len(symbols), k=1)
    pairs = [Correlation(symbols[i], symbols[j], float(matrix[i, j])) for i, j in zip(first, second, strict=True)
             if np.isfinite(matrix[i, j]) and abs(matrix[i, j]) >= threshold]
    return sorted(pairs, key=lambda c: (-abs(c.rho), c.first, c.second))[:limit]
