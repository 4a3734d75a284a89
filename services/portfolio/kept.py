"""What some of the portfolio's tables hold, kept in memory with the revisions it is true at
(services/common/revisions.py), so that a cycle's calls do not read again what has not changed.

Two ways in:
- `read`: a read in a transaction that wrote none of the tables, kept under the revisions seen
  before it (as KeptReads: a value is never older than its revisions);
- `handed_forward`: what a writing transaction knows the tables hold once it commits (what it
  read plus what it wrote). Kept only if, between `revisions()` (taken before the transaction
  began) and the commit, the tables moved by exactly this transaction's writes: no other
  transaction committed to them meanwhile, so they hold exactly what it saw.

`current()` answers only while none of the tables has moved since: a write to one of them (by
this process, the only writer of its database) drops the value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from services.common.revisions import ANY_TABLE, WRITTEN, TableRevisions, wrote

T = TypeVar("T")


def written_tables(session: Session) -> frozenset[str]:
    """The tables this transaction has written so far (flush first: pending rows count once flushed)."""
    session.flush()
    return frozenset(session.info.get(WRITTEN, ()))


class KeptState(Generic[T]):
    def __init__(self, revisions: TableRevisions, tables: tuple[str, ...]):
        self._revisions = revisions
        self.tables = tables
        self._lock = threading.Lock()
        self._kept: tuple[tuple[int, ...], T] | None = None

    def revisions(self) -> tuple[int, ...]:
        return self._revisions.of(self.tables)

    def current(self) -> T | None:
        """The value, if none of its tables has moved since it was kept; else None."""
        kept = self._kept
        return kept[1] if kept is not None and kept[0] == self.revisions() else None

    def read(self, session: Session, read: Callable[[Session], T]) -> T:
        """The kept value when current (and this transaction wrote none of the tables), else
        `read(session)`, kept when this transaction wrote none of them."""
        if not wrote(session, self.tables):
            revisions = self.revisions()
            kept = self._kept
            if kept is not None and kept[0] == revisions:
                return kept[1]
            value = read(session)
            if not wrote(session, self.tables):
                self._keep(revisions, value)
            return value
        return read(session)

    def handed_forward(self, before: tuple[int, ...], written: frozenset[str], value: T) -> None:
        """Keep `value`, what the tables hold after a transaction that wrote `written` and has
        committed, if they moved by that transaction alone since `before` (see the module)."""
        if ANY_TABLE in written:
            return
        expected = (before[0], *(r + (t in written) for r, t in zip(before[1:], self.tables, strict=True)))
        self._keep(expected, value, only_if_current=True)

    def _keep(self, revisions: tuple[int, ...], value: T, only_if_current: bool = False) -> None:
        with self._lock:
            if only_if_current and self.revisions() != revisions:
                return
            self._kept = (revisions, value)
