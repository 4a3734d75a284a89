"""CSV import of daily bars in Yahoo's download format:

    Date,Open,High,Low,Close,Adj Close,Volume
    2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700

`Adj Close` and `Volume` are optional; `null` (Yahoo's word for no data) skips the row. Any other
problem refuses the whole file, naming the line and column; nothing is stored then.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import date

from services.common import clock
from services.common.errors import InvalidArgument
from services.data.history import Bar

REQUIRED = ("Date", "Open", "High", "Low", "Close")
MAX_ROWS = 100_000


def _number(text: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise InvalidArgument("csv", f"line {line}: {column}: not a number: {text!r}") from exc
    if not math.isfinite(value):
        raise InvalidArgument("csv", f"line {line}: {column}: not a finite number: {text!r}")
    return value


def parse_yahoo_csv(text: str) -> list[Bar]:
    """Chronological bars from the CSV text; refuses duplicates and malformed rows."""
    try:
        return _parse(text)
    except csv.Error as exc:  # e.g. a bare carriage return inside a field
        raise InvalidArgument("csv", f"not a CSV file: {exc}") from exc


def _parse(text: str) -> list[Bar]:
    reader = csv.DictReader(io.StringIO(text.strip()))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InvalidArgument("csv", f"missing column(s) {', '.join(missing)}; expected {','.join(REQUIRED)}"
                                     ",Adj Close,Volume")
    reader.fieldnames = header
    bars: dict[date, Bar] = {}
    for line, row in enumerate(reader, start=2):
        if line - 1 > MAX_ROWS:
            raise InvalidArgument("csv", f"more than {MAX_ROWS} rows")
        if any(row.get(c) is None for c in REQUIRED):
            raise InvalidArgument("csv", f"line {line}: too few columns")
        if any((row.get(c) or "").strip().lower() == "null" for c in REQUIRED[1:]):
            continue
        try:
            day = date.fromisoformat(row["Date"].strip())
        except ValueError as exc:
            raise InvalidArgument("csv", f"line {line}: Date: not YYYY-MM-DD: {row['Date']!r}") from exc
        if not clock.FIRST_DAY <= day <= clock.LAST_DAY:
            raise InvalidArgument("csv", f"line {line}: Date: {day} is outside the supported dates "
                                         f"{clock.SUPPORTED_DAYS}")
        if day in bars:
            raise InvalidArgument("csv", f"line {line}: Date: {day} appears twice")
        adj = (row.get("Adj Close") or "").strip()
        volume = (row.get("Volume") or "").strip()
        bars[day] = Bar(
            date=day,
            open=_number(row["Open"], line, "Open"),
            high=_number(row["High"], line, "High"),
            low=_number(row["Low"], line, "Low"),
            close=_number(row["Close"], line, "Close"),
            adj_close=_number(adj, line, "Adj Close") if adj and adj.lower() != "null" else None,
            volume=_number(volume, line, "Volume") if volume and volume.lower() != "null" else None,
        )
    if not bars:
        raise InvalidArgument("csv", "no rows")
    return [bars[d] for d in sorted(bars)]
