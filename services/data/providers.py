"""The price provider interface. Adapters: the bundled sample (offline default), yfinance
(live). CSV files come in through ImportPrices instead (adapters/csv_import.py).

A provider raises `Unavailable` (with its reason) when it cannot answer; the caller then keeps
every stored bar as it is: a failed fetch never deletes or overwrites data.
"""

from __future__ import annotations

from datetime import date
from typing import Protocol

from services.data.history import Bar
from services.data.universe import Security


class PriceProvider(Protocol):
    name: str

    def daily_bars(self, securities: list[Security], start: date | None, end: date) -> dict[str, list[Bar]]:
        """Chronological daily bars per symbol between the dates (inclusive)."""

    def info(self, security: Security) -> dict | None:
        """Provider metadata (Yahoo field names: country, fullExchangeName, sector, industry)."""

    def fx_history(self, currencies: list[str], base: str, start: date | None, end: date) -> dict[str, list]:
        """currency -> [(date, units of currency per 1 base)]."""

    def dividends(self, securities: list[Security], start: date | None, end: date) -> dict[str, list]:
        """symbol -> [(ex-date, cash dividend per share)] between the dates (inclusive)."""
