"""Indicators as of a date, through the cache.

Cache entries are keyed by (security, last date used) and dropped when bars at or before that
date change (store.upsert_bars). Entries also age out with the original's TTLs: 24 hours for
technical values, 7 days for Sharpe, Sortino and CAGR; an entry is recomputed as soon as any of
its values is past its TTL.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from services.data import indicators, store

DEFAULT_TTL = timedelta(hours=24)
TTL = {key: timedelta(days=7) for key in ("SHARPE", "SORTINO", "CAGR_5Y", "CAGR_10Y")}


def adjusted_closes(rows: list[tuple]) -> np.ndarray:
    """The closes metrics use from store.valid_closes rows: adjusted where the provider has them."""
    return np.fromiter((adj if adj is not None else close for _, close, adj, _, _ in rows), float, len(rows))


def expired(values: dict, computed_at: datetime, now: datetime) -> bool:
    return any(now - computed_at > TTL.get(key, DEFAULT_TTL) for key in values) or not values


def indicators_as_of(session: Session, security_id: int, through: date, now: datetime) -> tuple[date | None, dict,
                                                                                                 bool]:
    """(last bar date used, values, served from cache) from the valid bars up to `through`."""
    rows = store.valid_closes(session, security_id, through)
    if not rows:
        return None, {}, False
    last_day = rows[-1][0]
    cached = store.cached_indicators(session, security_id, last_day)
    if cached is not None and not expired(cached[0], cached[1], now):
        return last_day, cached[0], True
    raw = np.fromiter((close for _, close, *_ in rows), float, len(rows))
    closes = adjusted_closes(rows)
    factor = closes / raw  # adjusted / raw close: puts highs and lows on the adjusted scale
    highs = factor * np.fromiter((np.nan if h is None else h for *_, h, _ in rows), float, len(rows))
    lows = factor * np.fromiter((np.nan if low is None else low for *_, low in rows), float, len(rows))
    has_range = not (np.isnan(highs).all() and np.isnan(lows).all())
    months = np.fromiter((d.year * 12 + d.month for d, *_ in rows), np.int64, len(rows))
    values = indicators.compute(closes, highs if has_range else None, lows if has_range else None, months)
    store.cache_indicators(session, security_id, last_day, values, now)
    return last_day, values, False
