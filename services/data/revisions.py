"""Reads kept per revision of the tables they come from, so a cycle's repeated questions (the
securities, today's FX rates) cost no query until those tables change.

Each table has a revision number that advances when a transaction that wrote it commits. A
write is seen however it is made through a session: an ORM flush of a mapped row, or an
INSERT, UPDATE or DELETE statement given to `session.execute`. The data service is the only
writer of its database (as for bar_cache.py), so no other change can go unseen.

Coherence, as in bar_cache.py: a value is kept under the revision read before it was read, and
only if that revision has not moved meanwhile; each statement sees the latest committed data
(SQLite outside a write, PostgreSQL's READ COMMITTED), and a revision advances only after its
commit, so a kept value is never older than its revision. A transaction that wrote a table
reads its own uncommitted rows: what it reads from that table is never kept.

Memory is bounded: at most MAX_VALUES values are kept (least recently used go first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from sqlalchemy.orm import Session

from services.common.db import Database

WRITTEN = "trader.data.tables_written"  # session.info key: names of the tables this transaction wrote
ALL = "*"                               # a write whose table is not known: every table
MAX_VALUES = 256
T = TypeVar("T")


def _mark(session: Session, tables: Iterable[str]) -> None:
    session.info.setdefault(WRITTEN, set()).update(tables)


class Revisions:
    def __init__(self, db: Database, tables: Iterable[str]):
        self._lock = threading.Lock()
        self._revision = dict.fromkeys(tables, 0)
        self._values: OrderedDict[tuple[tuple[str, ...], Hashable], tuple[tuple[int, ...], object]] = OrderedDict()
        db.listen("before_flush", self._flushing)
        db.listen("do_orm_execute", self._executing)
        db.listen("after_commit", self._committed)
        db.listen("after_rollback", lambda session: session.info.pop(WRITTEN, None))

    def read(self, session: Session, tables: tuple[str, ...], key: Hashable, read: Callable[[Session], T]) -> T:
        """`read(session)`, which reads `tables` only, kept under `key` until one of them changes."""
        if self._wrote(session, tables):
            return read(session)  # this transaction's own, uncommitted rows: neither served nor kept
        with self._lock:
            revision = tuple(self._revision[table] for table in tables)
            kept = self._values.get((tables, key))
            if kept is not None and kept[0] == revision:
                self._values.move_to_end((tables, key))
                return kept[1]  # type: ignore[return-value]
        value = read(session)
        if self._wrote(session, tables):
            return value  # it read this transaction's own, uncommitted rows
        with self._lock:
            if tuple(self._revision[table] for table in tables) == revision:
                self._values[(tables, key)] = (revision, value)
                self._values.move_to_end((tables, key))
                while len(self._values) > MAX_VALUES:
                    self._values.popitem(last=False)
        return value

    @staticmethod
    def _wrote(session: Session, tables: tuple[str, ...]) -> bool:
        """Whether the session wrote one of `tables`, or holds changes not flushed yet."""
        return bool(session.info.get(WRITTEN, set()) & {*tables, ALL} or session.new or session.deleted
                    or session.dirty)

    def _flushing(self, session: Session, _context, _instances) -> None:
        changed = (*session.new, *session.dirty, *session.deleted)
        _mark(session, {getattr(getattr(row, "__table__", None), "name", None) or ALL for row in changed})

    @staticmethod
    def _executing(state) -> None:
        if state.is_select:
            return
        table = getattr(state.statement, "table", None) if state.is_insert or state.is_update or state.is_delete \
            else None
        _mark(state.session, {getattr(table, "name", None) or ALL})  # a statement of unknown target: every table

    def _committed(self, session: Session) -> None:
        written = session.info.pop(WRITTEN, None)
        if not written:
            return
        with self._lock:
            for table in self._revision if ALL in written else written & self._revision.keys():
                self._revision[table] += 1
