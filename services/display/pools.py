"""The three message pools: the highest-priority live message is what the matrix shows.

Within a pool, messages are keyed by their source (the component that posted them, e.g.
`sync_cycle`, `backup`; empty is the default source): a post replaces only that source's
message and a clear removes only that source's, so one component's clean state never wipes
another's error. Among the live messages of the highest pool, the newest post is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.common.errors import InvalidArgument

ERROR, PROCESSING, NEXT_ACTIONS = "ERROR", "PROCESSING", "NEXT_ACTIONS"
PRIORITY = (ERROR, PROCESSING, NEXT_ACTIONS)  # highest first
MODES = ("normal", "syncing", "trade", "error")
DEFAULT_MODE = {ERROR: "error", PROCESSING: "syncing", NEXT_ACTIONS: "normal"}
BRIGHTNESS_RANGE = (0, 255)
SPEED_RANGE_MS = (10, 2000)
MAX_TEXT_LENGTH = 200
MAX_TTL_SECONDS = 7 * 24 * 3600
MAX_SOURCE_LENGTH = 64
_SOURCE = re.compile(r"[A-Za-z0-9_.:-]*")


@dataclass(frozen=True)
class Message:
    pool: str
    text: str
    expires_at: datetime | None  # None: until replaced or cleared
    mode: str = "normal"         # how the device signals it
    source: str = ""             # who posted it; "" is the default source
    posted_at: datetime = datetime.min.replace(tzinfo=UTC)  # orders the messages of one pool


def check_pool(pool: str) -> str:
    if pool not in PRIORITY:
        raise InvalidArgument("pool", "must be ERROR, PROCESSING or NEXT_ACTIONS")
    return pool


def check_source(source: str) -> str:
    """A source is empty (the default) or up to 64 letters, digits and `_ . : -`."""
    if len(source) > MAX_SOURCE_LENGTH or not _SOURCE.fullmatch(source):
        raise InvalidArgument("source", f"must be at most {MAX_SOURCE_LENGTH} letters, digits or _ . : -")
    return source


def new_message(pool: str, text: str, ttl_seconds: int, now: datetime, mode: str | None = None,
                source: str = "") -> Message:
    """A validated message posted at `now`; `mode` None takes the pool's default."""
    check_pool(pool)
    check_source(source)
    if mode is not None and mode not in MODES:
        raise InvalidArgument("mode", f"must be one of {', '.join(MODES)}")
    text = " ".join(text.split())  # one line: the matrix scrolls a single line
    if not text:
        raise InvalidArgument("text", "is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidArgument("text", f"longer than {MAX_TEXT_LENGTH} characters")
    if not 0 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidArgument("ttl_seconds", f"must be between 0 and {MAX_TTL_SECONDS}")
    return Message(pool, text, now + timedelta(seconds=ttl_seconds) if ttl_seconds else None,
                   mode or DEFAULT_MODE[pool], source, now)


def shown(messages: list[Message], now: datetime) -> Message | None:
    """The message shown at `now`: among the live ones, the highest-priority pool wins; within
    it the newest post (ties by source name, so the choice is deterministic)."""
    live = [m for m in messages if m.expires_at is None or m.expires_at > now]
    return min(live, key=lambda m: (PRIORITY.index(m.pool), -m.posted_at.timestamp(), m.source), default=None)


def check_brightness(value: int) -> int:
    low, high = BRIGHTNESS_RANGE
    if not low <= value <= high:
        raise InvalidArgument("brightness", f"must be between {low} and {high}, got {value}")
    return value


def check_speed(value: int) -> int:
    low, high = SPEED_RANGE_MS
    if not low <= value <= high:
        raise InvalidArgument("speed_ms", f"must be between {low} and {high} ms, got {value}")
    return value
