"""Indicators as of a date, through the cache.

Cache entries are keyed by (security, last date used) and dropped when bars at or before that
date change (store.upsert_bars). Such a key names the valid bars only when no bar up to that
date has a flag known later (else an earlier date could be served a later date's flags, a
lookahead): those windows are computed, never cached. Only a date at or after the security's
last stored bar is cached: what every cycle asks again (also after a restart). An earlier one (a
replay's day, an as-of query) is computed, never stored: each is asked about once, and its
values are read from the series' running values (indicators.Running) instead of recomputed
from the first bar. Entries also age out with the original's TTLs: 24 hours for technical
values, 7 days for Sharpe, Sortino and CAGR; an entry is recomputed as soon as any of its values
is past its TTL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

import numpy as np
from sqlalchemy.orm import Session

from services.data import indicators, store
from services.data.bar_cache import BarCache, Series

DEFAULT_TTL = timedelta(hours=24)
TTL = {key: timedelta(days=7) for key in ("SHARPE", "SORTINO", "CAGR_5Y", "CAGR_10Y")}


@dataclass(frozen=True)
class Prepared:
    """A series' arrays as the indicators read them, for every stored bar. Each is computed
    bar by bar, so the bars valid as of any date are a selection of them: computed once per
    series (bar_cache.Series.memo), not once per request."""

    closes: np.ndarray      # adjusted where the provider has them, else the close
    highs: np.ndarray       # on the adjusted scale (times adjusted / raw close); NaN where absent
    lows: np.ndarray
    months: np.ndarray      # year*12+month of each bar (month_ordinals)
    flagged_at: np.ndarray  # indices of the flagged bars, ascending
    first_range: int        # the index of the first bar with a high or a low (the size: none has)
    _technical: list = field(default_factory=list, compare=False, repr=False)  # [it] once built
    _running: list = field(default_factory=list, compare=False, repr=False)    # [it] once built

    def technical(self) -> dict[str, np.ndarray]:
        """indicators.technical of every stored bar's close (built on first use; a whole one is
        appended, so a concurrent reader never sees it half built)."""
        if not self._technical:
            self._technical.append(indicators.technical(self.closes))
        return self._technical[0]

    def running(self) -> indicators.Running | None:
        """indicators.running of every stored bar's close (built on first use, as technical)."""
        if not self._running:
            self._running.append(indicators.running(self.closes, self.months))
        return self._running[0]


def prepared(series: Series) -> Prepared:
    found = series.memo.get(Prepared)
    if found is None:
        adjusted = series.adj_close
        closes = np.where(np.isnan(adjusted), series.close, adjusted)
        with np.errstate(divide="ignore", invalid="ignore"):  # a flagged bar's zero or NaN: never selected
            factor = closes / series.close  # adjusted / raw close: puts highs and lows on the adjusted scale
            highs, lows = factor * series.high, factor * series.low
        ranged = np.flatnonzero(~(np.isnan(highs) & np.isnan(lows)))
        found = Prepared(closes, highs, lows, month_ordinals(series.days),
                         np.array(sorted(series.flags), dtype=np.int64), int(ranged[0]) if len(ranged) else series.size)
        series.memo[Prepared] = found
    return found


def adjusted_closes(series: Series, index: np.ndarray) -> np.ndarray:
    """The closes metrics use, for the bars at `index`: adjusted where the provider has them."""
    return prepared(series).closes[index]


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
    """indicators_as_of for each (security id, through), in order: a repeated pair is computed
    once, the cache is read in one query and new entries are written in one statement."""
    unique = list(dict.fromkeys(wanted))
    windows = {key: _window(bars.series(session, key[0]), key[1]) for key in unique}
    stored = store.cached_indicators_of(session, [(key[0], w.last_day) for key, w in windows.items()
                                                  if w is not None and w.kept])
    found, new = {}, []
    for key, window in windows.items():
        if window is None:
            found[key] = Indicators(None, {}, False, 0, 0)
            continue
        cached = stored.get((key[0], window.last_day)) if window.kept else None
        found[key] = _indicators(session, key[0], window, cached, now, new)
    store.cache_new_indicators(session, new, now)
    return [found[key] for key in wanted]


class _Window(NamedTuple):
    """The bars of a series valid as of a date."""

    series: Series
    select: slice | np.ndarray  # the valid bars: a slice when none before the last is hidden
    last_day: date              # the last valid bar's date
    # Whether the valid bars are the same for every date whose last valid bar is `last_day`: no
    # bar up to it has a flag known only after it. The database cache, keyed by (security,
    # last_day), serves only such windows: another one's entry could hide a bar by a flag not
    # known yet, or keep one flagged since.
    unambiguous: bool
    current: bool  # the date is at or after the series' last stored bar

    @property
    def kept(self) -> bool:
        """Whether the database cache serves and stores this window (the module's docstring)."""
        return self.unambiguous and self.current

    @property
    def size(self) -> int:
        return self.select.stop if isinstance(self.select, slice) else len(self.select)


def _window(series: Series, through: date) -> _Window | None:
    """The bars valid as of `through`; None when there is none."""
    flagged = prepared(series).flagged_at
    if not len(flagged):  # no flag: the valid bars are those up to `through`, and say so for any date
        end = int(series.days.searchsorted(through.toordinal(), side="right"))
        return _Window(series, slice(0, end), date.fromordinal(int(series.days[end - 1])), True,
                       bool(series.days[-1] <= through.toordinal())) if end else None
    index = series.valid(through)
    if not len(index):
        return None
    last = int(index[-1])
    up_to_last = flagged[:int(np.searchsorted(flagged, last, side="right"))]
    return _Window(series, slice(0, len(index)) if last + 1 == len(index) else index,
                   date.fromordinal(int(series.days[last])),
                   not np.any(series.flag_known[up_to_last] > series.days[last]),
                   bool(series.days[-1] <= through.toordinal()))


def _indicators(session: Session, security_id: int, window: _Window, cached: tuple[dict, datetime] | None,
                now: datetime, new: list[tuple[int, date, dict]]) -> Indicators:
    """From the database cache entry `cached` when fresh, else computed: stored again in place of
    a stale entry, or appended to `new` (written by the caller in one statement)."""
    ready = prepared(window.series)
    months = ready.months[window.select]
    # The first bars of the series: TA-Lib's values and the running ones read from its whole series.
    first_bars = isinstance(window.select, slice)
    running = ready.running() if first_bars else None
    if running is not None:  # the months starting within the window (its months are non-decreasing)
        month_count = int(running.month_starts.searchsorted(window.size))
    else:
        month_count = int(np.count_nonzero(np.diff(months))) + 1
    if cached is not None and not expired(cached[0], cached[1], now):
        return Indicators(window.last_day, cached[0], True, window.size, month_count)
    closes = ready.closes[window.select]
    highs, lows = ready.highs[window.select], ready.lows[window.select]
    if first_bars:
        has_range = ready.first_range < window.size
    else:
        has_range = not (np.isnan(highs).all() and np.isnan(lows).all())
    technical = indicators.technical_at(ready.technical(), window.size - 1) if first_bars else None
    values = indicators.compute(closes, highs if has_range else None, lows if has_range else None, months,
                                technical, running)
    if cached is not None:
        store.cache_indicators(session, security_id, window.last_day, values, now)
    elif window.kept:
        new.append((security_id, window.last_day, values))
    return Indicators(window.last_day, values, False, window.size, month_count)


def month_ordinals(days: np.ndarray) -> np.ndarray:
    """year*12+month of each date ordinal (numpy's calendar: vectorised, no date objects)."""
    months = (days.astype("int64") - date(1970, 1, 1).toordinal()).astype("datetime64[D]").astype("datetime64[M]")
    return months.astype(np.int64) + 1970 * 12 + 1
