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

DEFAULT_TTL = timedelta(hours=24)
TTL = {key: timedelta(days=7) for key in ("SHARPE", "SORTINO", "CAGR_5Y", "CAGR_10Y")}


def adjusted_closes(rows: list[tuple]) -> np.ndarray:
    """The closes metrics use from store.valid_closes rows: adjusted where the provider has them."""
    return np.fromiter((adj if adj is not None else close for _, close, adj, _, _ in rows), float, len(rows))


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


def indicators_as_of(session: Session, security_id: int, through: date, now: datetime) -> Indicators:
    """The indicators from the valid bars up to `through`, served from the cache when fresh."""
    rows = store.valid_closes(session, security_id, through)
    if not rows:
        return Indicators(None, {}, False, 0, 0)
    last_day = rows[-1][0]
    months = np.fromiter((d.year * 12 + d.month for d, *_ in rows), np.int64, len(rows))
    month_count = int(np.count_nonzero(np.diff(months))) + 1
    cached = store.cached_indicators(session, security_id, last_day)
    if cached is not None and not expired(cached[0], cached[1], now):
        return Indicators(last_day, cached[0], True, len(rows), month_count)
    raw = np.fromiter((close for _, close, *_ in rows), float, len(rows))
    closes = adjusted_closes(rows)
    factor = closes / raw  # adjusted / raw close: puts highs and lows on the adjusted scale
    highs = factor * np.fromiter((np.nan if h is None else h for *_, h, _ in rows), float, len(rows))
    lows = factor * np.fromiter((np.nan if low is None else low for *_, low in rows), float, len(rows))
    has_range = not (np.isnan(highs).all() and np.isnan(lows).all())
    values = indicators.compute(closes, highs if has_range else None, lows if has_range else None, months)
    store.cache_indicators(session, security_id, last_day, values, now)
    return Indicators(last_day, values, False, len(rows), month_count)
