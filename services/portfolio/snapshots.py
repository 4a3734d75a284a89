"""Daily snapshots (trading-portfolio-jobs.md section 4, decisions.md rules 4-5): what one day's
snapshot holds, computed from the valuation and the books. Pure functions on plain data."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from services.portfolio.performance import turnover

TURNOVER_WINDOW = timedelta(days=365)
TURNOVER_WARNING, TURNOVER_CRITICAL = 0.50, 1.00


@dataclass(frozen=True)
class SnapshotFigures:
    day: date
    base_currency: str
    positions_value_base: float
    cash_base: float
    invested_base: float | None
    net_deposits_base: float | None
    unrealized_pnl_base: float | None
    position_count: int | None
    country_shares: dict[str, float] = field(default_factory=dict)
    industry_shares: dict[str, float] = field(default_factory=dict)
    annual_turnover: float | None = None

    @property
    def total_value_base(self) -> float:
        return self.positions_value_base + self.cash_base


def shares(values: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Group -> share of the summed value (an empty group name is UNKNOWN); empty without value."""
    totals: dict[str, float] = {}
    for group, value in values:
        totals[group or "UNKNOWN"] = totals.get(group or "UNKNOWN", 0.0) + value
    whole = sum(totals.values())
    return {g: v / whole for g, v in sorted(totals.items())} if whole > 0 else {}


def annual_turnover(traded_base_last_year: float, totals_last_year: list[float]) -> float | None:
    """(BUY value + SELL value over the last 365 days) / 2 / the mean snapshot total of those
    days, values converted to the base currency by dividing by the rate (the original multiplied:
    the direction bug). None without trades or snapshots."""
    if not totals_last_year:
        return None
    return turnover(traded_base_last_year, sum(totals_last_year) / len(totals_last_year))


def turnover_level(value: float | None) -> str:
    if value is None:
        return "unknown"
    return "critical" if value >= TURNOVER_CRITICAL else "warning" if value >= TURNOVER_WARNING else "normal"


def next_index(previous_index: float | None, previous_value: float | None, value: float, flow: float) -> float | None:
    """A growth index one snapshot on (performance.py: deposits excluded): 1 at the first
    snapshot with value; unchanged after one without value."""
    if previous_index is None or previous_value is None:
        return 1.0 if value > 0 else None
    if previous_value <= 0:
        return previous_index
    return previous_index * (value - flow) / previous_value


def retention_cutoff(today: date, retention_days: int) -> date | None:
    """Snapshots before this date are deleted; None keeps every snapshot (retention 0)."""
    return today - timedelta(days=retention_days) if retention_days > 0 else None


@dataclass(frozen=True)
class StoredDay:
    day: date
    total_value_base: float
    taken_at: datetime


class SnapshotDays:
    """The stored snapshots' dates, totals and times, by date (what a snapshot and the daily
    P&L read of the earlier ones). Never changed: `with_day` returns a new one."""

    def __init__(self, days: Iterable[StoredDay]):
        self._days = sorted(days, key=lambda d: d.day)
        self._dates = [d.day for d in self._days]

    def __contains__(self, day: date) -> bool:
        index = bisect_left(self._dates, day)
        return index < len(self._dates) and self._dates[index] == day

    def between(self, start: date, end: date) -> list[StoredDay]:
        """The days from `start` to `end`, both included."""
        return self._days[bisect_left(self._dates, start):bisect_right(self._dates, end)]

    def none_after(self, day: date) -> bool:
        return not self._dates or self._dates[-1] <= day

    def last_before(self, day: date) -> StoredDay | None:
        index = bisect_left(self._dates, day)
        return self._days[index - 1] if index else None

    def with_day(self, stored: StoredDay, cutoff: date | None) -> SnapshotDays:
        """These days with `stored` added (replacing its day's) and those before `cutoff` gone.
        A day after every stored one, nothing cut (a cycle's new day): appended without sorting
        again (the days of years of snapshots)."""
        if (not self._dates or self._dates[-1] < stored.day) and (
                cutoff is None or not self._dates or self._dates[0] >= cutoff):
            appended = SnapshotDays(())
            appended._days, appended._dates = [*self._days, stored], [*self._dates, stored.day]
            return appended
        return SnapshotDays([d for d in self._days if d.day != stored.day and (cutoff is None or d.day >= cutoff)]
                            + [stored])
