"""Indicators and risk metrics of one security as of a date. Pure: arrays in, a dict out.

All valid history up to the date is used (decisions.md 5a), so recursive indicators (EMA,
Wilder RSI) do not depend on where a window starts. TA-Lib computes the technical indicators
(Bollinger bands use the population standard deviation, as TA-Lib does); numpy the rest.
A value that cannot be computed (too little data, zero variance) is absent, never 0.
The keys ending in _1Y (volatility, drawdowns) use the last 252 bars only: they measure the
last year by definition (the scoring's short-term drawdown and volatility spike).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import talib
from numpy.lib.stride_tricks import sliding_window_view

TRADING_DAYS = 252
MIN_CLOSES = {"VOLATILITY": 30, "SHARPE": 50, "DRAWDOWN": 30, "RANGE_52W": 20}
MIN_MONTHS_CAGR = 12


def monthly_average_closes(ordinals: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """The average close of each calendar month, in order. `ordinals` (year*12+month per bar)
    are non-decreasing, as bars are chronological, so months are runs of equal ordinals."""
    if len(closes) == 0:
        return np.empty(0)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ordinals)) + 1))
    counts = np.diff(np.append(starts, len(closes)))
    return np.add.reduceat(closes, starts) / counts


def cagr(monthly: np.ndarray, months: int) -> float | None:
    """Compound annual growth over the last `months` monthly prices (None with fewer than 12)."""
    window = monthly[-months:]
    if len(window) < MIN_MONTHS_CAGR or window[0] <= 0 or window[-1] <= 0:
        return None
    return float((window[-1] / window[0]) ** (12 / (len(window) - 1)) - 1)


def _last(values: np.ndarray) -> float | None:
    value = float(values[-1]) if len(values) else math.nan
    return None if math.isnan(value) else value


def technical(closes: np.ndarray) -> dict[str, np.ndarray]:
    """TA-Lib's RSI, EMAs, SMAs and Bollinger bands of chronological `closes`, one value per bar
    (NaN before a value can be computed). Each is causal, computed bar after bar from the first:
    a bar's value depends on it and the bars before only, so those of the first k closes are
    the first k values of these (a series' can be computed once for every date)."""
    closes = np.asarray(closes, dtype=float)
    found = {"RSI_14": talib.RSI(closes, timeperiod=14)}
    for period in (50, 200):
        found[f"EMA_{period}"] = talib.EMA(closes, timeperiod=period)
        found[f"SMA_{period}"] = talib.SMA(closes, timeperiod=period)
    found["BB_UPPER_20"], found["BB_MIDDLE_20"], found["BB_LOWER_20"] = talib.BBANDS(
        closes, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    return found


class Running(NamedTuple):
    """Causal values of a whole chronological series of closes, one per bar (or per return): each
    depends on its bar and the bars before only, so those of the series' first n closes are read
    at index n - 1 instead of recomputed from the first bar (compute's `running_values`). Each is exact
    (an elementwise operation, a running or windowed maximum or minimum, a complete month's
    average, a window's sums as numpy sums that window alone), so a value read here is the very
    float computing it from the first n closes gives (tests/test_data_derived.py)."""

    returns: np.ndarray       # closes[1:] / closes[:-1] - 1
    losses: np.ndarray        # the returns below 0, else 0 (Sortino's downside)
    peaks: np.ndarray         # the highest close so far
    drawdowns: np.ndarray     # closes / peaks - 1
    max_drawdown: np.ndarray  # the lowest drawdown so far
    high: np.ndarray          # the highest close of the last TRADING_DAYS bars up to each bar
    low: np.ndarray           # the lowest
    month_starts: np.ndarray  # the index of each calendar month's first bar
    monthly: np.ndarray       # monthly_average_closes of the whole series (its last month may be partial)
    windows: Windowed         # the last year's and last 60 returns' values, per bar, as asked for


def running(closes: np.ndarray, month_ordinals: np.ndarray) -> Running | None:
    """The Running values of chronological `closes` (`month_ordinals` as compute's); None unless
    every close is finite and above 0 (the running maximum's first bar then is the first close
    equal to it, which DAYS_IN_DRAWDOWN reads)."""
    closes = np.asarray(closes, dtype=float)
    if len(closes) == 0 or not (np.isfinite(closes).all() and (closes > 0).all()):
        return None
    returns = closes[1:] / closes[:-1] - 1
    peaks = np.maximum.accumulate(closes)
    drawdowns = closes / peaks - 1
    head = min(len(closes), TRADING_DAYS - 1)  # the bars with fewer than a year before them
    high, low = np.maximum.accumulate(closes[:head]), np.minimum.accumulate(closes[:head])
    if len(closes) >= TRADING_DAYS:
        windows = sliding_window_view(closes, TRADING_DAYS)
        high, low = np.concatenate((high, windows.max(axis=1))), np.concatenate((low, windows.min(axis=1)))
    months = np.asarray(month_ordinals)
    return Running(returns, np.minimum(returns, 0.0), peaks, drawdowns, np.minimum.accumulate(drawdowns), high, low,
                   np.concatenate(([0], np.flatnonzero(np.diff(months)) + 1)), monthly_average_closes(months, closes),
                   Windowed(closes, returns))


class Windowed:
    """What _risk computes over a fixed window ending at a bar, for every bar with a full window:
    the sample standard deviation of the last 60 returns and of the last year's (TRADING_DAYS - 1)
    returns, and _drawdowns of the last TRADING_DAYS closes. Computed for blocks of BLOCK bars as
    they are asked for (a replay reads a day after the other), each row with the very operations
    numpy's std and _drawdowns apply to one window: the windows are copied into a C-contiguous
    block whose rows numpy reduces one by one with the same pairwise sum as a 1-D array
    (numpy sums pairwise along the fast axis), so a value read here is bit for bit that of
    computing it from the window alone (tests/test_data_derived.py)."""

    BLOCK = 256
    SHORT = 60                  # VOLATILITY_60D's returns
    YEAR = TRADING_DAYS - 1     # VOLATILITY_1Y's returns (the returns of the last TRADING_DAYS closes)

    def __init__(self, closes: np.ndarray, returns: np.ndarray):
        self.closes, self._returns = closes, returns
        size = len(closes)
        self.std_short = np.full(size, np.nan)    # at bar i: std(returns[i - 60:i], ddof=1), from i = 60
        self.std_year = np.full(size, np.nan)     # at bar i: std(returns[i - 251:i], ddof=1), from i = 251
        self.max_drawdown = np.full(size, np.nan)  # at bar i: _drawdowns of closes[i - 251:i + 1], from i = 251
        self.drawdown = np.full(size, np.nan)
        self.days = np.zeros(size, dtype=np.int64)
        self._done: set[int] = set()

    def at(self, index: int) -> Windowed:
        """This object, with the values of the block holding bar `index` computed."""
        block = index // self.BLOCK
        if block not in self._done:
            self._compute(block * self.BLOCK, min(len(self.closes), (block + 1) * self.BLOCK))
            self._done.add(block)  # last: a concurrent reader computes a block again, never reads it half done
        return self

    def _compute(self, first: int, last: int) -> None:
        start = max(first, self.SHORT)
        if start < last:
            self.std_short[start:last] = _window_std(self._returns, self.SHORT, start, last)
        start = max(first, self.YEAR)
        if start < last:
            self.std_year[start:last] = _window_std(self._returns, self.YEAR, start, last)
            windows = sliding_window_view(self.closes, TRADING_DAYS)
            closes = np.ascontiguousarray(windows[start - self.YEAR:last - self.YEAR])
            peaks = np.maximum.accumulate(closes, axis=1)
            drawdowns = closes / peaks - 1
            self.max_drawdown[start:last] = drawdowns.min(axis=1)
            self.drawdown[start:last] = drawdowns[:, -1]
            self.days[start:last] = TRADING_DAYS - 1 - np.argmax(closes == peaks[:, -1:], axis=1)


def _window_std(values: np.ndarray, width: int, first: int, last: int) -> np.ndarray:
    """std(values[i - width:i], ddof=1) for i from first to last - 1, as numpy's _var computes
    each (sum, mean, squared deviations, their sum over width - 1, square root), row by row."""
    rows = np.ascontiguousarray(sliding_window_view(values, width)[first - width:last - width])
    mean = np.add.reduce(rows, axis=1, keepdims=True) / width
    deviations = rows - mean
    np.square(deviations, out=deviations)
    return np.sqrt(np.add.reduce(deviations, axis=1) / (width - 1))


def technical_at(values: dict[str, np.ndarray], index: int) -> dict[str, float | None]:
    """Each of technical()'s values at bar `index` (None where not computable)."""
    return {key: _last(series[index:index + 1]) for key, series in values.items()}


def compute(closes: np.ndarray, highs: np.ndarray | None, lows: np.ndarray | None,
            month_ordinals: np.ndarray, technical_values: dict[str, float | None] | None = None,
            running_values: Running | None = None) -> dict[str, float]:
    """Every indicator the planner and the safety checks use, from chronological daily bars.

    `highs`/`lows` are None (or hold NaN) where a provider has closes only; the 52-week range
    then uses closes. `month_ordinals` (year*12+month per bar) feed the monthly CAGR.
    `technical_values`: technical_at(technical(longer closes), len(closes) - 1) when the closes
    are the first of a longer series whose technical() is at hand, else computed here.
    `running_values`: running(longer closes, their month ordinals) when the closes are the first
    of that longer series: the same values, read instead of recomputed from the first bar.
    """
    closes = np.asarray(closes, dtype=float)
    n = len(closes)
    out: dict[str, float | None] = {}
    if n == 0:
        return {}
    price = closes[-1]
    out["PRICE"] = price
    out.update(technical_values if technical_values is not None else technical_at(technical(closes), n - 1))
    band_low, band_high = out["BB_LOWER_20"], out["BB_UPPER_20"]
    if band_high is not None and band_high > band_low:
        out["BB_POSITION"] = min(1.0, max(0.0, (price - band_low) / (band_high - band_low)))
    if out["EMA_200"] is not None:
        out["DISTANCE_FROM_EMA_200"] = (price - out["EMA_200"]) / out["EMA_200"]
    for days in (30, 90):
        if n > days:
            out[f"MOMENTUM_{days}D"] = price / closes[-1 - days] - 1
    _range_52w(out, closes, highs, lows, price, running_values)
    _risk(out, closes, running_values)
    if running_values is None:
        monthly = monthly_average_closes(np.asarray(month_ordinals), closes)
        month_count = len(monthly)
    else:
        monthly, month_count = _last_months(closes, running_values, 121)
    out["CAGR_5Y"] = cagr(monthly, 60)
    out["CAGR_10Y"] = cagr(monthly, 120) if month_count > 60 else None
    return {key: float(value) for key, value in out.items() if value is not None and math.isfinite(value)}


def _last_months(closes: np.ndarray, running_values: Running, count: int) -> tuple[np.ndarray, int]:
    """(the last `count` values of monthly_average_closes of `closes`, how many months they
    have), `closes` being the first of the series `running_values` come from: each month but
    the last is complete within them, so its average is the whole series' (np.add.reduceat sums
    each month on its own, over the same bars); the last month's is computed as reduceat does."""
    starts = running_values.month_starts
    months = int(starts.searchsorted(len(closes)))  # the months starting within `closes`
    first = starts[months - 1]
    last = np.add.reduceat(closes[first:], [0]) / np.array([len(closes) - first])
    return np.concatenate((running_values.monthly[max(0, months - count):months - 1], last)), months


def _range_52w(out: dict, closes: np.ndarray, highs: np.ndarray | None, lows: np.ndarray | None,
               price: float, running_values: Running | None = None) -> None:
    if len(closes) < MIN_CLOSES["RANGE_52W"]:
        return
    if running_values is None:
        window_close = closes[-TRADING_DAYS:]
        high, low = float(np.max(window_close)), float(np.min(window_close))
    else:
        high, low = float(running_values.high[len(closes) - 1]), float(running_values.low[len(closes) - 1])
    if highs is not None:  # intraday extremes where the provider has them, else closes
        window_high = np.asarray(highs[-TRADING_DAYS:], dtype=float)
        window_low = np.asarray(lows[-TRADING_DAYS:], dtype=float)
        high = max(high, float(np.nanmax(window_high, initial=-np.inf)))
        low = min(low, float(np.nanmin(window_low, initial=np.inf)))
    out["HIGH_52W"], out["LOW_52W"] = high, low
    out["DISTANCE_FROM_52W_HIGH"] = (high - price) / high


def _risk(out: dict, closes: np.ndarray, running_values: Running | None = None) -> None:
    if running_values is not None:
        _risk_running(out, len(closes), running_values)
        return
    n = len(closes)
    returns = closes[1:] / closes[:-1] - 1 if n > 1 else np.empty(0)
    annualise = math.sqrt(TRADING_DAYS)
    if n >= MIN_CLOSES["VOLATILITY"]:
        mean = float(returns.mean())
        std = float(returns.std(ddof=1))
        out["VOLATILITY_ANNUAL"] = std * annualise
        if n >= MIN_CLOSES["SHARPE"]:
            out["SHARPE"] = mean / std * annualise if std > 0 else None
            losses = np.minimum(returns, 0.0)
            downside = math.sqrt(float(losses @ losses) / len(losses))
            out["SORTINO"] = mean / downside * annualise if downside > 0 else None
    if n > 60:
        out["VOLATILITY_60D"] = float(returns[-60:].std(ddof=1)) * annualise
    if n >= MIN_CLOSES["VOLATILITY"]:  # the last year alone: the scoring's short-term view
        out["VOLATILITY_1Y"] = float(returns[-(TRADING_DAYS - 1):].std(ddof=1)) * annualise
    _drawdowns(out, closes, "")
    _drawdowns(out, closes[-TRADING_DAYS:], "_1Y")


def _risk_running(out: dict, n: int, running_values: Running) -> None:
    """_risk of the first `n` closes of the series `running_values` come from, the same keys in
    the same order with the same floats: the whole history's mean and standard deviation with
    the operations of numpy's mean and std(ddof=1) (one sum serves both), the windows' values
    read from running_values.windows, the drawdowns from the running ones."""
    returns = running_values.returns[:n - 1]
    annualise = math.sqrt(TRADING_DAYS)
    windows = running_values.windows.at(n - 1)
    if n >= MIN_CLOSES["VOLATILITY"]:
        total = np.add.reduce(returns)
        mean = float(total / (n - 1))
        deviations = returns - total / (n - 1)
        np.square(deviations, out=deviations)
        std = float(np.sqrt(np.add.reduce(deviations) / (n - 2)))
        out["VOLATILITY_ANNUAL"] = std * annualise
        if n >= MIN_CLOSES["SHARPE"]:
            out["SHARPE"] = mean / std * annualise if std > 0 else None
            losses = running_values.losses[:n - 1]
            downside = math.sqrt(float(losses @ losses) / len(losses))
            out["SORTINO"] = mean / downside * annualise if downside > 0 else None
    if n > 60:
        out["VOLATILITY_60D"] = float(windows.std_short[n - 1]) * annualise
    if n >= MIN_CLOSES["VOLATILITY"]:  # the whole history's when it is a year or less
        out["VOLATILITY_1Y"] = (float(windows.std_year[n - 1]) if n > TRADING_DAYS else std) * annualise
    if n >= MIN_CLOSES["DRAWDOWN"]:  # _drawdowns' values, read at the last bar
        peak = running_values.peaks[n - 1]
        out["MAX_DRAWDOWN"] = float(running_values.max_drawdown[n - 1])
        out["CURRENT_DRAWDOWN"] = float(running_values.drawdowns[n - 1])
        # the first close equal to the peak is where the (non-decreasing) running maximum reached it
        out["DAYS_IN_DRAWDOWN"] = float(n - 1 - int(running_values.peaks[:n].searchsorted(peak)))
    if n < TRADING_DAYS:
        _drawdowns(out, running_values.windows.closes[:n], "_1Y")
    else:  # the last TRADING_DAYS closes: _drawdowns' values, read at the last bar
        out["MAX_DRAWDOWN_1Y"] = float(windows.max_drawdown[n - 1])
        out["CURRENT_DRAWDOWN_1Y"] = float(windows.drawdown[n - 1])
        out["DAYS_IN_DRAWDOWN_1Y"] = float(windows.days[n - 1])


def _drawdowns(out: dict, closes: np.ndarray, suffix: str) -> None:
    """MAX_DRAWDOWN, CURRENT_DRAWDOWN (from the highest close so far) and DAYS_IN_DRAWDOWN (bars
    since that close) of `closes`, the keys ending in `suffix`."""
    n = len(closes)
    if n >= MIN_CLOSES["DRAWDOWN"]:
        peaks = np.maximum.accumulate(closes)
        drawdowns = closes / peaks - 1
        out[f"MAX_DRAWDOWN{suffix}"] = float(np.min(drawdowns))
        out[f"CURRENT_DRAWDOWN{suffix}"] = float(drawdowns[-1])
        out[f"DAYS_IN_DRAWDOWN{suffix}"] = float(n - 1 - int(np.argmax(closes == peaks[-1])))
