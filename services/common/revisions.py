"""Per-table revisions of a service's database, and reads kept until their tables change.

A service is the only writer of its database (a restore needs it stopped), and every write goes
through its sessions: an ORM flush of mapped rows, or an INSERT, UPDATE or DELETE statement
given to `session.execute`. Both are noted on the session (`WRITTEN`); when the transaction
commits, each table it wrote moves to its next revision (a rolled-back transaction moves
nothing). What was read from tables whose revisions have not moved since is still what they
hold, so a cycle's repeated questions (the securities, a day's FX rates, the books) can be
answered without a query until those tables change.

Coherence: a value is kept under the revisions read before it was read, and only if they have
not moved meanwhile; each statement sees the latest committed data (SQLite outside a write,
PostgreSQL's READ COMMITTED) and a revision moves only after its commit, so a kept value is
never older than its revisions. A transaction that wrote a table reads its own uncommitted
rows: what it reads there is neither served from nor kept in `KeptReads`.

Used by the data service (securities, FX rates, fundamentals, dividends), the portfolio (the
valuation's books, the cash ledger's sums) and trading (the ledger and the paper account a
sync compares).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from services.common.db import Database

WRITTEN = "trader.tables_written"  # session.info key: names of the tables this transaction wrote
ANY_TABLE = "*"                    # a write whose table is not known: every table counts as written
T = TypeVar("T")


def _note(session: Session, tables: Iterable[str]) -> None:
    session.info.setdefault(WRITTEN, set()).update(tables)


def _flushing(session: Session, _context, _instances) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    _note(session, {getattr(getattr(row, "__table__", None), "name", None) or ANY_TABLE for row in changed})


def _executing(state) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _note(state.session, {getattr(getattr(state.statement, "table", None), "name", None) or ANY_TABLE})


def wrote(session: Session, tables: Iterable[str] | None = None) -> bool:
    """Whether this transaction wrote one of `tables` (None: any table), or holds changes not
    flushed yet: then what it reads may be its own uncommitted rows."""
    written = session.info.get(WRITTEN, set())
    hit = bool(written) if tables is None else bool(written & {*tables, ANY_TABLE})
    return hit or bool(session.new or session.deleted or session.dirty)


class TableRevisions:
    """Per table, how many transactions that wrote it have committed in this process. One per
    database: `Database.revisions` (a second tracker would miss the commits the first one
    counted)."""

    def __init__(self, db: Database):
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        db.listen("before_flush", _flushing)
        db.listen("do_orm_execute", _executing)
        db.listen("after_commit", self._committed)
        db.listen("after_rollback", lambda session: session.info.pop(WRITTEN, None))

    def _committed(self, session: Session) -> None:
        written = session.info.pop(WRITTEN, None)
        if written:
            with self._lock:
                for table in written:
                    self._counts[table] = self._counts.get(table, 0) + 1

    def of(self, tables: Iterable[str]) -> tuple[int, ...]:
        """The revisions of `tables`, led by that of writes to an unknown table."""
        with self._lock:
            return (self._counts.get(ANY_TABLE, 0), *(self._counts.get(t, 0) for t in tables))


class KeptReads:
    """Values read from some tables, kept until one of those tables changes. Memory is bounded:
    at most `max_values` values (the least recently used go first)."""

    def __init__(self, revisions: TableRevisions, max_values: int = 256):
        self._revisions = revisions
        self._max = max_values
        self._lock = threading.Lock()
        self._values: OrderedDict[tuple[tuple[str, ...], Hashable], tuple[tuple[int, ...], object]] = OrderedDict()

    def _kept(self, tables: tuple[str, ...], key: Hashable, revision: tuple[int, ...]) -> tuple[bool, object]:
        """(True, the value kept under `key` at `revision`), or (False, None)."""
        with self._lock:
            kept = self._values.get((tables, key))
            if kept is None or kept[0] != revision:
                return False, None
            self._values.move_to_end((tables, key))
            return True, kept[1]

    def read(self, session: Session, tables: tuple[str, ...], key: Hashable, read: Callable[[Session], T]) -> T:
        """`read(session)`, which reads `tables` only, kept under `key` until one of them changes."""
        if wrote(session, tables):
            return read(session)  # this transaction's own, uncommitted rows: neither served nor kept
        revision = self._revisions.of(tables)
        found, kept = self._kept(tables, key, revision)
        if found:
            return kept  # type: ignore[return-value]
        value = read(session)
        if wrote(session, tables):
            return value  # it read this transaction's own, uncommitted rows
        with self._lock:
            if self._revisions.of(tables) == revision:
                self._values[(tables, key)] = (revision, value)
                self._values.move_to_end((tables, key))
                while len(self._values) > self._max:
                    self._values.popitem(last=False)
        return value

    def current(self, transaction: Callable[[], AbstractContextManager[Session]], tables: tuple[str, ...],
                key: Hashable, read: Callable[[Session], T]) -> T:
        """`read` as `read()` keeps it, for a caller outside any transaction: the value kept for
        the tables' current revisions without opening one, else read in a `transaction()` of its
        own (Database.transaction)."""
        found, kept = self._kept(tables, key, self._revisions.of(tables))
        if found:
            return kept  # type: ignore[return-value]
        with transaction() as session:
            return self.read(session, tables, key, read)


class KeptSince:
    """The rows of some tables at or after a moment (`read(session, since)`: (moment, value)
    pairs, in its order; `since` None: all), kept until one of those tables changes: a later
    moment's are among an earlier one's, so they are served by filtering what was read; an
    earlier moment, or a write to the tables, reads again. Kept as KeptReads keeps (read under
    the revisions seen before, and only if they did not move meanwhile), for callers outside
    any transaction. What a sync asks of a growing history ("since a week before the newest")
    costs one read per change instead of one per call."""

    def __init__(self, revisions: TableRevisions, tables: tuple[str, ...]):
        self._revisions = revisions
        self._tables = tables
        self._kept: tuple | None = None  # (revisions, since, ((moment, value), ...)); replaced whole

    def values(self, transaction: Callable[[], AbstractContextManager[Session]], since,
               read: Callable[[Session, object], Iterable[tuple[object, T]]]) -> list[T]:
        """The values of the rows at or after `since` (None: all), in `read`'s order."""
        revision = self._revisions.of(self._tables)
        kept = self._kept
        if kept is not None and kept[0] == revision and (kept[1] is None or (since is not None and kept[1] <= since)):
            rows = kept[2]
        else:
            with transaction() as session:
                rows = tuple(read(session, since))
            if self._revisions.of(self._tables) == revision:
                self._kept = (revision, since, rows)
        return [value for moment, value in rows if since is None or moment >= since]
