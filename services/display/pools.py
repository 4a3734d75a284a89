"""The three message pools: the highest-priority live message is what the matrix shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common.errors import InvalidArgument

ERROR, PROCESSING, NEXT_ACTIONS = "ERROR", "PROCESSING", "NEXT_ACTIONS"
PRIORITY = (ERROR, PROCESSING, NEXT_ACTIONS)  # highest first
MODES = ("normal", "syncing", "trade", "error")
DEFAULT_MODE = {ERROR: "error", PROCESSING: "syncing", NEXT_ACTIONS: "normal"}
BRIGHTNESS_RANGE = (0, 255)
SPEED_RANGE_MS = (10, 2000)
MAX_TEXT_LENGTH = 200
MAX_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Message:
    pool: str
    text: str
    expires_at: datetime | None  # None: until replaced or cleared
    mode: str = "normal"         # how the device signals it


def check_pool(pool: str) -> str:
    if pool not in PRIORITY:
        raise InvalidArgument("pool", "must be ERROR, PROCESSING or NEXT_ACTIONS")
    return pool


def new_message(pool: str, text: str, ttl_seconds: int, now: datetime, mode: str | None = None) -> Message:
    """A validated message; `mode` None takes the pool's default."""
    check_pool(pool)
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
                   mode or DEFAULT_MODE[pool])


def shown(messages: list[Message], now: datetime) -> Message | None:
    """The message of the highest-priority pool that has one still live at `now`."""
    live = {m.pool: m for m in messages if m.expires_at is None or m.expires_at > now}
    return next((live[pool] for pool in PRIORITY if pool in live), None)


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
