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
    series = bars.series(session, security_id)
    index = series.valid(through)
    if not len(index):
        return Indicators(None, {}, False, 0, 0)
    days = series.days[index]
    last_day = date.fromordinal(int(days[-1]))
    months = month_ordinals(days)
    month_count = int(np.count_nonzero(np.diff(months))) + 1
    cached = store.cached_indicators(session, security_id, last_day)
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
