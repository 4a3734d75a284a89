"""The as-of clock: "now" for a request.

The gateway sets `x-trader-as-of` (ISO 8601, UTC) in replay and backtest; every server reads it
into a context variable for the duration of the call, and the client factory copies it into
every outgoing call, like the trace context. Without it, "now" is the wall clock.
Domain code never calls this module: servers read `now()` once and pass it in.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import UTC, datetime

from services.common.errors import InvalidArgument

METADATA_KEY = "x-trader-as-of"

_as_of: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("trader_as_of", default=None)


def parse_as_of(text: str) -> datetime:
    """Parse an ISO 8601 instant; a value without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidArgument(METADATA_KEY, f"not an ISO 8601 timestamp: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


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


def from_metadata(metadata) -> datetime | None:
    """The as-of time in a call's invocation metadata, if any (raises InvalidArgument if bad)."""
    for key, value in metadata or ():
        if key == METADATA_KEY:
            return parse_as_of(value)
    return None
