"""Input checks shared by the servicers; each failure names the field (INVALID_ARGUMENT)."""

from __future__ import annotations

import math
import re
from datetime import date

from services.common.clock import check_day
from services.common.errors import InvalidArgument

_CURRENCY = re.compile(r"^[A-Z]{3}$")
# The largest amount (in any currency) and quantity this system takes: far above any real
# account, far below where products of amounts, prices and rates stop being exact enough.
MAX_AMOUNT = 1e12
MAX_QUANTITY = 10**12


def required_text(field: str, value: str, max_length: int = 128) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > max_length:
        raise InvalidArgument(field, f"longer than {max_length} characters")
    return value


def positive_amount(field: str, value: float, maximum: float = MAX_AMOUNT) -> float:
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(field, f"must be a positive finite number, got {value!r}")
    if value > maximum:
        raise InvalidArgument(field, f"must be at most {maximum:g}, got {value!r}")
    return value


def non_negative_amount(field: str, value: float, maximum: float = MAX_AMOUNT) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(field, f"must be a non-negative finite number, got {value!r}")
    if value > maximum:
        raise InvalidArgument(field, f"must be at most {maximum:g}, got {value!r}")
    return value


def finite_amount(field: str, value: float, maximum: float = MAX_AMOUNT) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, got {value!r}")
    if abs(value) > maximum:
        raise InvalidArgument(field, f"must be between -{maximum:g} and {maximum:g}, got {value!r}")
    return value


def currency_code(field: str, value: str, default: str | None = None) -> str:
    if not value and default is not None:
        return default
    if not _CURRENCY.match(value):
        raise InvalidArgument(field, f"must be an ISO 4217 code such as EUR, got {value!r}")
    return value


def parse_day(field: str, text: str) -> date | None:
    """An ISO YYYY-MM-DD date in the clock's supported range, or None for an empty string."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument(field, f"not an ISO date (YYYY-MM-DD): {text!r}") from exc
    return check_day(field, day)
