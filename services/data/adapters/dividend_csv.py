"""CSV import of dividends in Yahoo's download format (per share, by ex-dividend date):

    Date,Dividends
    2024-02-09,0.24

Any problem refuses the whole file, naming the line and column; nothing is stored then.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import date

from services.common.errors import InvalidArgument

COLUMNS = ("Date", "Dividends")
MAX_ROWS = 100_000


def parse_dividend_csv(text: str) -> list[tuple[date, float]]:
    """Chronological (ex-date, amount per share) pairs; refuses duplicates, negative or
    non-finite amounts and malformed rows."""
    try:
        rows = list(csv.reader(io.StringIO(text.strip())))
    except csv.Error as exc:
        raise InvalidArgument("csv", f"not readable as CSV: {exc}") from exc
    if not rows or [c.strip() for c in rows[0]][:2] != list(COLUMNS):
        raise InvalidArgument("csv", f"the header must be {','.join(COLUMNS)}")
    if len(rows) - 1 > MAX_ROWS:
        raise InvalidArgument("csv", f"more than {MAX_ROWS} rows")
    found: dict[date, float] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < 2:
            raise InvalidArgument("csv", f"line {line}: too few columns")
        try:
            day = date.fromisoformat(row[0].strip())
        except ValueError as exc:
            raise InvalidArgument("csv", f"line {line}: Date: not YYYY-MM-DD: {row[0]!r}") from exc
        try:
            amount = float(row[1])
        except ValueError as exc:
            raise InvalidArgument("csv", f"line {line}: Dividends: not a number: {row[1]!r}") from exc
        if not math.isfinite(amount) or amount <= 0:
            raise InvalidArgument("csv", f"line {line}: Dividends: must be a positive number, got {row[1]!r}")
        if day in found:
            raise InvalidArgument("csv", f"line {line}: Date: {day} appears twice")
        found[day] = amount
    if not found:
        raise InvalidArgument("csv", "no rows")
    return sorted(found.items())
