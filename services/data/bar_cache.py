"""Each security's daily bars as numpy arrays, read from the database once and kept until its
bars change, so metrics, quotes and the regime as of any date are array slices instead of a
query of the whole history (a daily replay asks for every security's full history each day).

Coherence: the data service is the only writer of its database. The store's bar writes mark
the security in their session (`touch`); when that transaction commits, its securities' entries
are dropped and their generation advances. An entry read while such a write was in flight is
stored only if the generation did not move meanwhile, so a stale read never outlives a commit;
a transaction reading bars it has itself written (not committed yet) is never cached.

Memory is bounded: at most `max_bars` bars are kept (least recently used securities go first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.db import Database
from services.data.history import Bar

TOUCHED = "trader.data.bars_touched"  # session.info key: security ids whose bars this transaction wrote
ALL = -1                               # every security (a retention delete)
NEVER = np.iinfo(np.int32).max         # flag_known of a bar that was never flagged
DEFAULT_MAX_BARS = 2_000_000           # about 112 MB


def touch(session: Session, security_id: int) -> None:
    """Mark a security's bars as written by this transaction (store functions call this)."""
    session.info.setdefault(TOUCHED, set()).add(security_id)


@dataclass(frozen=True)
class Series:
    """One security's stored daily bars, chronological. Dates are proleptic ordinals."""

    days: np.ndarray        # int32
    close: np.ndarray       # float64
    adj_close: np.ndarray   # float64, NaN where the provider has none
    high: np.ndarray        # float64, NaN where absent
    low: np.ndarray         # float64, NaN where absent
    flag_known: np.ndarray  # int32: the day a bar's flag became known; NEVER when it has none
    open: np.ndarray        # float64, NaN where absent
    volume: np.ndarray      # float64, NaN where absent
    flags: Mapping[int, str]  # index -> the flag of each flagged bar
    # What other modules derive from this snapshot (encoded bars, indicators), by their own keys:
    # a Series never changes and is replaced when its bars or flags do, so nothing here outlives
    # the bars it came from.
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    def valid(self, through: date) -> np.ndarray:
        """Indices of the bars usable as of `through`: dated at or before it, and not flagged
        by then (a flag known later does not hide it yet: no lookahead)."""
        t = through.toordinal()
        end = int(np.searchsorted(self.days, t, side="right"))
        return np.flatnonzero(self.flag_known[:end] > t)

    def latest_valid(self, through: date) -> tuple[date, float] | None:
        """(date, close) of the latest bar usable as of `through`: the quote."""
        t = through.toordinal()
        end = int(self.days.searchsorted(t, side="right"))
        if end and self.flag_known[end - 1] > t:  # the last bar up to `through` is valid: valid()'s last
            last = end - 1
        else:
            index = self.valid(through)
            if not len(index):
                return None
            last = index[-1]
        return date.fromordinal(int(self.days[last])), float(self.close[last])

    def latest_stored(self, through: date) -> date | None:
        """The date of the latest stored bar at or before `through`, flagged or not."""
        end = int(np.searchsorted(self.days, through.toordinal(), side="right"))
        return date.fromordinal(int(self.days[end - 1])) if end else None

    def span(self, start: date | None, end: date) -> tuple[int, int]:
        """(first, last): the slice of the bars dated from `start` (None: the first) to `end`."""
        first = 0 if start is None else int(np.searchsorted(self.days, start.toordinal(), side="left"))
        return first, int(np.searchsorted(self.days, end.toordinal(), side="right"))

    def rows(self, start: date | None, end: date) -> list[tuple[Bar, str | None, date | None]]:
        """The bars dated from `start` (None: the first) to `end`, flagged or not, each with its
        flag and the day the flag became known (None, None when it has none): what
        store.daily_bars_with_flags reads, from the arrays."""
        return self.rows_at(*self.span(start, end))

    def rows_at(self, first: int, last: int) -> list[tuple[Bar, str | None, date | None]]:
        """rows() of the bars at indices first to last - 1."""
        close = self.close[first:last].tolist()
        opens, high, low, volume, adj = (_optional(c[first:last]) for c in (self.open, self.high, self.low,
                                                                            self.volume, self.adj_close))
        found = []
        for offset, day in enumerate(self.days[first:last].tolist()):
            flag = self.flags.get(first + offset)
            known = date.fromordinal(int(self.flag_known[first + offset])) if flag is not None else None
            found.append((Bar(date.fromordinal(day), close[offset], opens[offset], high[offset], low[offset],
                              volume[offset], adj[offset]), flag, known))
        return found

    @property
    def size(self) -> int:
        return len(self.days)


def _optional(values: np.ndarray) -> list[float | None]:
    """The values as floats, NaN (absent) as None."""
    return [None if v != v else v for v in values.tolist()]


def _read(session: Session, security_id: int) -> Series:
    from services.data.store import DailyBarRow  # noqa: PLC0415 - the store imports this module

    rows = session.connection().execute(
        select(DailyBarRow.date, DailyBarRow.close, DailyBarRow.adj_close, DailyBarRow.high, DailyBarRow.low,
               DailyBarRow.flag, DailyBarRow.flag_known_on, DailyBarRow.open, DailyBarRow.volume)
        .where(DailyBarRow.security_id == security_id).order_by(DailyBarRow.date)).all()
    n = len(rows)
    nan = float("nan")
    return Series(
        days=np.fromiter((r[0].toordinal() for r in rows), np.int32, n),
        close=np.fromiter((r[1] for r in rows), float, n),
        adj_close=np.fromiter((nan if r[2] is None else r[2] for r in rows), float, n),
        high=np.fromiter((nan if r[3] is None else r[3] for r in rows), float, n),
        low=np.fromiter((nan if r[4] is None else r[4] for r in rows), float, n),
        flag_known=np.fromiter((NEVER if r[5] is None else (r[6] or date.min).toordinal() for r in rows),
                               np.int32, n),
        open=np.fromiter((nan if r[7] is None else r[7] for r in rows), float, n),
        volume=np.fromiter((nan if r[8] is None else r[8] for r in rows), float, n),
        flags={index: r[5] for index, r in enumerate(rows) if r[5] is not None},
    )


class BarCache:
    def __init__(self, db: Database, max_bars: int = DEFAULT_MAX_BARS):
        self._max_bars = max_bars
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, Series] = OrderedDict()
        self._generation: dict[int, int] = {}
        self._epoch = 0  # advances when every entry is dropped
        self._bars = 0
        db.listen("after_commit", self._committed)
        db.listen("after_rollback", lambda session: session.info.pop(TOUCHED, None))

    def series(self, session: Session, security_id: int) -> Series:
        with self._lock:
            found = self._entries.get(security_id)
            if found is not None:
                self._entries.move_to_end(security_id)
                return found
            seen = (self._epoch, self._generation.get(security_id, 0))
        series = _read(session, security_id)
        written_here = session.info.get(TOUCHED, set())
        if security_id in written_here or ALL in written_here:
            return series  # this transaction's own, uncommitted bars
        with self._lock:
            if (self._epoch, self._generation.get(security_id, 0)) == seen and security_id not in self._entries:
                self._entries[security_id] = series
                self._bars += series.size
                while self._bars > self._max_bars and len(self._entries) > 1:
                    _, dropped = self._entries.popitem(last=False)
                    self._bars -= dropped.size
        return series

    def _committed(self, session: Session) -> None:
        touched = session.info.pop(TOUCHED, None)
        if not touched:
            return
        with self._lock:
            if ALL in touched:
                self._entries.clear()
                self._bars = 0
                self._epoch += 1
                return
            for security_id in touched:
                self._generation[security_id] = self._generation.get(security_id, 0) + 1
                dropped = self._entries.pop(security_id, None)
                if dropped is not None:
                    self._bars -= dropped.size
