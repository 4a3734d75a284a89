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


@dataclass(frozen=True)
class Closes:
    """A security's valid daily closes, oldest first: `days` (numpy datetime64[D]) and `values`
    (float64: the adjusted close where the provider has one), of equal length. What the
    adapter hands the optimiser without building a tuple per bar (adapters/closes.py)."""

    days: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.days)

    def rows(self) -> list[tuple[str, float]]:
        """(ISO date, close) pairs, oldest first."""
        return list(zip(np.datetime_as_string(self.days, unit="D").tolist(), self.values.tolist(), strict=True))


NO_CLOSES = Closes(np.empty(0, dtype="datetime64[D]"), np.empty(0))


def as_closes(rows: Closes | Sequence[tuple[str, float]]) -> Closes:
    """`rows` as Closes: (ISO date, close) pairs are converted, Closes pass as they are."""
    if isinstance(rows, Closes):
        return rows
    if not rows:
        return NO_CLOSES
    days, values = zip(*rows, strict=True)
    return Closes(np.array(days, dtype="datetime64[D]"), np.array(values, dtype=float))


@dataclass(frozen=True)
class Aligned:
    """Closes on common dates: `matrix` has a row per date of `days` (ascending) and a column
    per symbol of `symbols`."""

    days: np.ndarray      # datetime64[D]
    symbols: list[str]
    matrix: np.ndarray    # float64, rows x symbols

    def returns(self) -> np.ndarray:
        """Daily simple returns, close / previous close - 1, one row fewer (rows where every
        return is NaN dropped): PyPortfolioOpt `returns_from_prices` on these closes, value for
        value."""
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = self.matrix[1:] / self.matrix[:-1] - 1
        return returns[~np.isnan(returns).all(axis=1)] if returns.size else returns

    def frame(self) -> pd.DataFrame:
        """The closes as a DataFrame indexed by date (datetime64[us], [s] when empty: what
        `pd.to_datetime` of the ISO dates gives)."""
        import pandas as pd  # noqa: PLC0415 - heavy: loaded on first use, not at start (bench/footprint.py)

        if not self.symbols:
            return pd.DataFrame()
        unit = "datetime64[us]" if len(self.days) else "datetime64[s]"
        return pd.DataFrame(self.matrix, index=pd.DatetimeIndex(self.days.astype(unit)), columns=self.symbols)


def aligned(closes: Mapping[str, Closes | Sequence[tuple[str, float]]],
            lookback: int = defaults.LOOKBACK_BARS) -> Aligned:
    """One column per symbol (sorted), rows by date: each symbol's last `lookback` valid closes,
    gaps (and NaN closes) forward-filled, leading rows where any symbol has no close yet
    dropped."""
    series = [(symbol, as_closes(rows)) for symbol, rows in sorted(closes.items())]
    series = [(symbol, Closes(c.days[-lookback:], c.values[-lookback:])) for symbol, c in series]
    symbols = [symbol for symbol, _ in series]
    days = np.unique(np.concatenate([c.days for _, c in series])) if series else NO_CLOSES.days
    matrix = np.full((len(days), len(series)), np.nan)
    for column, (_, c) in enumerate(series):
        matrix[np.searchsorted(days, c.days), column] = c.values
    # forward fill: each cell takes the last non-NaN value at or above it in its column
    present = ~np.isnan(matrix)
    source = np.maximum.accumulate(np.where(present, np.arange(len(days))[:, None], 0), axis=0)
    filled = matrix[source, np.arange(len(series))[None, :]] if matrix.size else matrix
    complete = ~np.isnan(filled).any(axis=1)
    return Aligned(days[complete], symbols, filled[complete])


def aligned_closes(closes: Mapping[str, Closes | Sequence[tuple[str, float]]],
                   lookback: int = defaults.LOOKBACK_BARS) -> pd.DataFrame:
    """`aligned` as a DataFrame indexed by date."""
    return aligned(closes, lookback).frame()


def daily_returns(prices: Aligned) -> np.ndarray:
    """Daily simple returns of the aligned closes, rows x symbols: PyPortfolioOpt
    `returns_from_prices` value for value, and column-major as pandas hands its values over, so
    that what is computed from them (np.cov, sklearn's Ledoit-Wolf) sums in the same order and
    gives the same bits."""
    return np.asfortranarray(prices.returns())


def ledoit_wolf(returns: np.ndarray) -> np.ndarray:
    """Annualised Ledoit-Wolf shrunk covariance (constant-variance target), symbols x symbols,
    from `daily_returns`: PyPortfolioOpt `CovarianceShrinkage(prices, frequency=252).ledoit_wolf()`
    value for value (sklearn.covariance.ledoit_wolf on the returns, NaN as 0, times 252, the
    spectral fix when not positive semidefinite), without its pandas frames and unused sample
    covariance."""
    from pypfopt.risk_models import fix_nonpositive_semidefinite  # noqa: PLC0415 - as in aligned_closes
    from sklearn import config_context  # noqa: PLC0415
    from sklearn.covariance import ledoit_wolf as shrunk_covariance  # noqa: PLC0415

    # Its keyword arguments are the defaults: checking them against their constraints on every
    # call cost more than the estimate (the data itself is still checked).
    with config_context(skip_parameter_validation=True):
        shrunk, _ = shrunk_covariance(np.nan_to_num(returns))
    return fix_nonpositive_semidefinite(shrunk * TRADING_DAYS, fix_method="spectral")


def top_correlations(returns: np.ndarray, symbols: Sequence[str], threshold: float = defaults.CORRELATION_THRESHOLD,
                     limit: int = defaults.TOP_CORRELATIONS) -> list[Correlation]:
    """Pairs with |rho| >= threshold (pandas' Pearson correlation of the daily returns, a column
    per symbol), strongest first (ties by symbol), at most `limit`."""
    import pandas as pd  # noqa: PLC0415 - as in Aligned.frame

    if returns.shape[1] < 2:
        return []
    matrix = pd.DataFrame(returns).corr().to_numpy()
    first, second = np.triu_indices(len(symbols), k=1)
    pairs = [Correlation(symbols[i], symbols[j], float(matrix[i, j])) for i, j in zip(first, second, strict=True)
             if np.isfinite(matrix[i, j]) and abs(matrix[i, j]) >= threshold]
    return sorted(pairs, key=lambda c: (-abs(c.rho), c.first, c.second))[:limit]
