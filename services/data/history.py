"""Price history rules: date parsing, what is visible as of "now", monthly aggregation.

No lookahead: a daily bar dated D becomes visible only once D's session has closed on the
security's exchange, so a replay at 10:00 New York time on D sees D-1's close, not D's.
"""

from __future__ import annotations

import statistics
from datetime import date, datetime, time, timedelta
from itertools import groupby
from typing import NamedTuple
from zoneinfo import ZoneInfo

from services.common.errors import InvalidArgument

# MIC -> (time zone, regular close). The exchanges the original traded on.
SESSION_CLOSE: dict[str, tuple[str, time]] = {
    "XNYS": ("America/New_York", time(16, 0)),
    "XNAS": ("America/New_York", time(16, 0)),
    "XETR": ("Europe/Berlin", time(17, 30)),
    "XLON": ("Europe/London", time(16, 30)),
    "XPAR": ("Europe/Paris", time(17, 30)),
    "XMIL": ("Europe/Rome", time(17, 30)),
    "XAMS": ("Europe/Amsterdam", time(17, 30)),
    "XCSE": ("Europe/Copenhagen", time(17, 0)),
    "ASEX": ("Europe/Athens", time(17, 20)),
    "XHKG": ("Asia/Hong_Kong", time(16, 0)),
    "XSHG": ("Asia/Shanghai", time(15, 0)),
    "XTSE": ("America/Toronto", time(16, 0)),
    "XASX": ("Australia/Sydney", time(16, 0)),
}


class Bar(NamedTuple):
    """One daily (or monthly) bar. A NamedTuple: history reads build thousands of them."""

    date: date
    close: float
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    adj_close: float | None = None  # the provider's adjusted close, when it has one


def last_final_date(now: datetime, exchange: str) -> date:
    """The latest date whose daily bar is final at `now` on `exchange`.

    An exchange we do not know is treated as closing at midnight UTC (its bar of D is visible
    from D+1), which can only hide data, never reveal it early.
    """
    if exchange not in SESSION_CLOSE:
        return (now.astimezone(ZoneInfo("UTC")) - timedelta(days=1)).date()
    zone, close = SESSION_CLOSE[exchange]
    local = now.astimezone(ZoneInfo(zone))
    return local.date() if local.time() >= close else local.date() - timedelta(days=1)


def resolve_range(start: date | None, end: date | None, visible_until: date) -> tuple[date | None, date]:
    """Validate a requested range and clamp its end to what is visible now."""
    if start is not None and end is not None and start > end:
        raise InvalidArgument("start", f"{start.isoformat()} is after end {end.isoformat()}")
    return start, min(end, visible_until) if end is not None else visible_until


def sync_start(last_stored: list[date | None], overlap_days: int = 7) -> date | None:
    """Where a provider sync starts: a week before the oldest of the securities' last stored
    bars (late corrections get picked up), or from the beginning when one has none."""
    if not last_stored or None in last_stored:
        return None
    return date.fromordinal(max(1, min(last_stored).toordinal() - overlap_days))  # no OverflowError at date.min


REBASE_TOLERANCE = 1e-3  # overlapping ratios this close to each other share one factor...
REBASE_MIN_OVERLAP = 2   # ...over at least this many overlapping bars


class Rebase(NamedTuple):
    """Factors from the stored series to the provider's: new = stored x factor."""

    close: float
    adj_close: float


def _common_factor(pairs: list[tuple[float | None, float | None]]) -> float | None:
    """The one factor every (stored, new) pair differs by (1.0 without pairs), else None."""
    ratios = [new / old for old, new in pairs if old is not None and new is not None and old > 0 and new > 0]
    if not ratios:
        return 1.0
    factor = statistics.median(ratios)
    return factor if all(abs(r / factor - 1) <= REBASE_TOLERANCE for r in ratios) else None


def rebase_factors(stored: list[Bar], fetched: list[Bar]) -> Rebase | None:
    """How a provider re-based a series: when its bars overlapping the stored ones all differ
    from them by one factor (a split: prices x 1/2; a dividend re-adjustment: adjusted closes
    x 0.99; a unit change: x 1/100), that factor per price field; None when the overlap agrees
    or differs bar by bar (late corrections, stored one by one)."""
    by_date = {bar.date: bar for bar in stored}
    overlap = [(by_date[bar.date], bar) for bar in fetched if bar.date in by_date]
    if len(overlap) < REBASE_MIN_OVERLAP:
        return None
    close = _common_factor([(old.close, new.close) for old, new in overlap])
    adjusted = _common_factor([(old.adj_close, new.adj_close) for old, new in overlap])
    factors = Rebase(close or 1.0, adjusted or 1.0)
    return factors if any(abs(f - 1) > REBASE_TOLERANCE for f in factors) else None


def rebased(stored: list[Bar], replacement: list[Bar], factors: Rebase) -> list[Bar]:
    """The new stored history: the replacement's bars, plus stored bars on dates it does not
    cover scaled onto its basis (prices by the factors, volume inversely to the close's, as a
    split does), so history the provider no longer serves is kept, not lost."""
    covered = {bar.date for bar in replacement}

    def scale(value: float | None, factor: float) -> float | None:
        return None if value is None else value * factor

    kept = [bar._replace(open=scale(bar.open, factors.close), high=scale(bar.high, factors.close),
                         low=scale(bar.low, factors.close), close=bar.close * factors.close,
                         volume=scale(bar.volume, 1 / factors.close), adj_close=scale(bar.adj_close, factors.adj_close))
            for bar in stored if bar.date not in covered]
    return sorted(kept + list(replacement), key=lambda bar: bar.date)


def monthly_bars(daily: list[Bar]) -> list[Bar]:
    """One bar per calendar month: close is the average of the month's daily closes (as the
    original's monthly prices), open the first open, high/low the extremes, volume the sum;
    dated on the month's last daily bar. A field missing on any day is missing for the month."""
    months = []
    for _, group in groupby(daily, key=lambda bar: (bar.date.year, bar.date.month)):
        bars = list(group)
        months.append(Bar(
            date=bars[-1].date,
            close=sum(bar.close for bar in bars) / len(bars),
            open=bars[0].open,
            high=None if any(b.high is None for b in bars) else max(b.high for b in bars),
            low=None if any(b.low is None for b in bars) else min(b.low for b in bars),
            volume=None if any(b.volume is None for b in bars) else sum(b.volume for b in bars),
            adj_close=None if any(b.adj_close is None for b in bars) else sum(b.adj_close for b in bars) / len(bars),
        ))
    return months
