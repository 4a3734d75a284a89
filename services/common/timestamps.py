"""google.protobuf.Timestamp <-> timezone-aware UTC datetime: the one converter every server uses."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.common.clock import check_instant
from services.common.errors import InvalidArgument


def to_timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def from_timestamp(stamp: Timestamp, field: str) -> datetime:
    """A request's Timestamp as a UTC datetime in the clock's supported range.

    Raises InvalidArgument naming `field` for a Timestamp that is not valid (nanos outside
    0..999,999,999, seconds outside years 1-9999) or lies outside the supported range.
    """
    if not 0 <= stamp.nanos <= 999_999_999:
        raise InvalidArgument(field, f"nanos must be between 0 and 999999999, got {stamp.nanos}")
    try:
        value = stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidArgument(field, f"seconds {stamp.seconds} is not a valid Timestamp") from exc
    return check_instant(field, value)
