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
    (an elementwise operation, a running or windowed maximum or minimum), so a value read here is
    the very float computing it from the first n closes gives (tests/test_data_derived.py)."""

    returns: np.ndarray       # closes[1:] / closes[:-1] - 1
    losses: np.ndarray        # the returns below 0, else 0 (Sortino's downside)
    peaks: np.ndarray         # the highest close so far
    drawdowns: np.ndarray     # closes / peaks - 1
    max_drawdown: np.ndarray  # the lowest drawdown so far
    high: np.ndarray          # the highest close of the last TRADING_DAYS bars up to each bar
    low: np.ndarray           # the lowest
    month_starts: np.ndarray  # the index of each calendar month's first bar


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
                   np.concatenate(([0], np.flatnonzero(np.diff(months)) + 1)))


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
        monthly, month_count = _last_months(closes, running_values.month_starts, 121)
    out["CAGR_5Y"] = cagr(monthly, 60)
    out["CAGR_10Y"] = cagr(monthly, 120) if month_count > 60 else None
    return {key: float(value) for key, value in out.items() if value is not None and math.isfinite(value)}


def _last_months(closes: np.ndarray, month_starts: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """(the last `count` values of monthly_average_closes of `closes`, how many months they
    have): the same sums of the same bars (np.add.reduceat), over those months only.
    `month_starts`: the first bar of each month of a series whose first bars `closes` are."""
    months = int(month_starts.searchsorted(len(closes)))  # the months starting within `closes`
    starts = month_starts[max(0, months - count):months]
    counts = np.diff(np.append(starts, len(closes)))
    return np.add.reduceat(closes[starts[0]:], starts - starts[0]) / counts, months


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
    n = len(closes)
    if running_values is not None:
        returns = running_values.returns[:n - 1]
    else:
        returns = closes[1:] / closes[:-1] - 1 if n > 1 else np.empty(0)
    annualise = math.sqrt(TRADING_DAYS)
    if n >= MIN_CLOSES["VOLATILITY"]:
        mean = float(returns.mean())
        std = float(returns.std(ddof=1))
        out["VOLATILITY_ANNUAL"] = std * annualise
        if n >= MIN_CLOSES["SHARPE"]:
            out["SHARPE"] = mean / std * annualise if std > 0 else None
            losses = np.minimum(returns, 0.0) if running_values is None else running_values.losses[:n - 1]
            downside = math.sqrt(float(losses @ losses) / len(losses))
            out["SORTINO"] = mean / downside * annualise if downside > 0 else None
    if n > 60:
        out["VOLATILITY_60D"] = float(returns[-60:].std(ddof=1)) * annualise
    if n >= MIN_CLOSES["VOLATILITY"]:  # the last year alone: the scoring's short-term view
        out["VOLATILITY_1Y"] = float(returns[-(TRADING_DAYS - 1):].std(ddof=1)) * annualise
    if running_values is None:
        _drawdowns(out, closes, "")
    elif n >= MIN_CLOSES["DRAWDOWN"]:  # _drawdowns' values, read at the last bar
        peak = running_values.peaks[n - 1]
        out["MAX_DRAWDOWN"] = float(running_values.max_drawdown[n - 1])
        out["CURRENT_DRAWDOWN"] = float(running_values.drawdowns[n - 1])
        # the first close equal to the peak is where the (non-decreasing) running maximum reached it
        out["DAYS_IN_DRAWDOWN"] = float(n - 1 - int(running_values.peaks[:n].searchsorted(peak)))
    _drawdowns(out, closes[-TRADING_DAYS:], "_1Y")


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
