"""The as-of clock: "now" for a request.

The gateway sets `x-trader-as-of` (ISO 8601, UTC) in replay and backtest; every server reads it
into a context variable for the duration of the call, and the client factory copies it into
every outgoing call, like the trace context. Without it, "now" is the wall clock.
Domain code never calls this module: servers read `now()` once and pass it in.

Every instant the system accepts ("now", a Timestamp) lies in the supported range, EARLIEST
to LATEST: it covers the bundled history (from 1990) with a wide margin on both sides. Dates
(request fields, imported bars) may lie a century further out (FIRST_DAY to LAST_DAY), so that a
look-back or look-ahead from any supported instant is still a valid date. Both keep every date
computation (years of look-back, calendars, pandas timestamps) far from the limits of datetime
and pandas. A value outside them is INVALID_ARGUMENT naming its field and the range.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Hashable, Iterator
from datetime import UTC, date, datetime
from typing import TypeVar

from services.common.errors import InvalidArgument

METADATA_KEY = "x-trader-as-of"
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)  # inclusive
LATEST = datetime(2100, 1, 1, tzinfo=UTC)    # exclusive
SUPPORTED_RANGE = f"{EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} (exclusive), UTC"
FIRST_DAY = date(1800, 1, 1)  # inclusive
LAST_DAY = date(2199, 12, 31)  # inclusive
SUPPORTED_DAYS = f"{FIRST_DAY} to {LAST_DAY}"

_as_of: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("trader_as_of", default=None)


def check_instant(field: str, value: datetime) -> datetime:
    """`value` (timezone-aware) in UTC, if it lies in the supported range; else InvalidArgument."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+23:59 is before year 1 in UTC
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise InvalidArgument(field, f"{value.isoformat()} is outside the supported range {SUPPORTED_RANGE}")
    return utc


def check_day(field: str, day: date) -> date:
    """`day` if it lies between FIRST_DAY and LAST_DAY; else InvalidArgument naming `field`."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidArgument(field, f"{day.isoformat()} is outside the supported dates {SUPPORTED_DAYS}")
    return day


def parse_as_of(text: str, field: str = METADATA_KEY) -> datetime:
    """Parse an ISO 8601 instant in the supported range, in UTC; a value without an offset is
    taken as UTC. Raises InvalidArgument naming `field`."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidArgument(field, f"not an ISO 8601 timestamp: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return check_instant(field, value)


def format_as_of(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("as-of times must be timezone-aware")
    return value.astimezone(UTC).isoformat()


def wall_now() -> datetime:
    return datetime.now(UTC)


def as_of() -> datetime | None:
    """The simulated time of the current call, or None when it runs on the wall clock."""
    return _as_of.get()


def now() -> datetime:
    """The current call's "now": its as-of time, else the wall clock (UTC, timezone-aware)."""
    return _as_of.get() or wall_now()


@contextlib.contextmanager
def use_as_of(value: datetime | None) -> Iterator[None]:
    """Run a block with `value` as "now" (None: the wall clock); outgoing calls carry it."""
    token = _as_of.set(value)
    try:
        yield
    finally:
        _as_of.reset(token)


T = TypeVar("T")


class PerInstant:
    """Reads kept for one simulated instant. A replay or backtest cycle runs at one as-of
    instant and asks the same peer for the same thing several times (the portfolio values the
    account for the snapshot, for the planner and for trading's loss breaker); what another
    service answers as of a simulated instant does not change within it. On the wall clock
    (no as-of) nothing is kept: every call reads. Only the latest instant's reads are kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instant: datetime | None = None
        self._values: dict[Hashable, object] = {}

    def get(self, key: Hashable, read: Callable[[], T]) -> T:
        at = as_of()
        if at is None:
            return read()
        with self._lock:
            if self._instant != at:
                self._instant, self._values = at, {}
            if key in self._values:
                return self._values[key]  # type: ignore[return-value]
        value = read()
        with self._lock:
            if self._instant == at:
                self._values[key] = value
        return value
