"""Indicators as of a date, through the cache.

Cache entries are keyed by (security, last date used) and dropped when bars at or before that
date change (store.upsert_bars). Entries also age out with the original's TTLs: 24 hours for
technical values, 7 days for Sharpe, Sortino and CAGR; an entry is recomputed as soon as any of
its values is past its TTL.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import NamedTuple

import numpy as np
from sqlalchemy.orm import Session

from services.data import indicators, store
from services.data.bar_cache import BarCache, Series

DEFAULT_TTL = timedelta(hours=24)
TTL = {key: timedelta(days=7) for key in ("SHARPE", "SORTINO", "CAGR_5Y", "CAGR_10Y")}


def adjusted_closes(series: Series, index: np.ndarray) -> np.ndarray:
    """The closes metrics use, for the bars at `index`: adjusted where the provider has them."""
    adjusted = series.adj_close[index]
    return np.where(np.isnan(adjusted), series.close[index], adjusted)


# Keys computed whenever the first one is: an entry with the first but not the second was
# cached by an older version (before the 1-year keys) and is recomputed.
COMPANIONS = {"VOLATILITY_ANNUAL": "VOLATILITY_1Y", "MAX_DRAWDOWN": "MAX_DRAWDOWN_1Y"}


def expired(values: dict, computed_at: datetime, now: datetime) -> bool:
    older_format = any(key in values and companion not in values for key, companion in COMPANIONS.items())
    return older_format or any(now - computed_at > TTL.get(key, DEFAULT_TTL) for key in values) or not values


class Indicators(NamedTuple):
    last_day: date | None  # the last bar used
    values: dict
    cached: bool
    daily_bars: int        # valid daily bars up to the date
    monthly_bars: int      # calendar months they cover


def indicators_as_of(session: Session, bars: BarCache, security_id: int, through: date,
                     now: datetime) -> Indicators:
    """The indicators from the valid bars up to `through`, served from the cache when fresh."""
    return indicators_of(session, bars, [(security_id, through)], now)[0]


def indicators_of(session: Session, bars: BarCache, wanted: list[tuple[int, date]],
                  now: datetime) -> list[Indicators]:
    """indicators_as_of for each (security id, through), in order: the cache is read in one
    query, and a repeated pair is computed once."""
    unique = list(dict.fromkeys(wanted))
    windows = {key: _window(bars.series(session, key[0]), key[1]) for key in unique}
    cache = store.cached_indicators_of(session, [(key[0], w[2]) for key, w in windows.items() if w is not None])
    found = {key: _indicators(session, key[0], window, cache.get((key[0], window[2])), now)
             if window is not None else Indicators(None, {}, False, 0, 0) for key, window in windows.items()}
    return [found[key] for key in wanted]


def _window(series: Series, through: date) -> tuple[Series, np.ndarray, date] | None:
    """(the series, the indices of its bars valid as of `through`, the last one's date); None
    when there is none."""
    index = series.valid(through)
    return (series, index, date.fromordinal(int(series.days[index[-1]]))) if len(index) else None


def _indicators(session: Session, security_id: int, window: tuple[Series, np.ndarray, date],
                cached: tuple[dict, datetime] | None, now: datetime) -> Indicators:
    series, index, last_day = window
    months = month_ordinals(series.days[index])
    month_count = int(np.count_nonzero(np.diff(months))) + 1
    if cached is not None and not expired(cached[0], cached[1], now):
        return Indicators(last_day, cached[0], True, len(index), month_count)
    closes = adjusted_closes(series, index)
    factor = closes / series.close[index]  # adjusted / raw close: puts highs and lows on the adjusted scale
    highs, lows = factor * series.high[index], factor * series.low[index]
    has_range = not (np.isnan(highs).all() and np.isnan(lows).all())
    values = indicators.compute(closes, highs if has_range else None, lows if has_range else None, months)
    store.cache_indicators(session, security_id, last_day, values, now, replace=cached is not None)
    return Indicators(last_day, values, False, len(index), month_count)


def month_ordinals(days: np.ndarray) -> np.ndarray:
    """year*12+month of each date ordinal (numpy's calendar: vectorised, no date objects)."""
    months = (days.astype("int64") - date(1970, 1, 1).toordinal()).astype("datetime64[D]").astype("datetime64[M]")
    return months.astype(np.int64) + 1970 * 12 + 1
