"""Securities: the plain data the rest of the service works with."""

from __future__ import annotations

from dataclasses import dataclass

EQUITY = "EQUITY"
INDEX = "INDEX"


@dataclass(frozen=True)
class Security:
    symbol: str      # broker form, e.g. AAPL.US
    name: str
    currency: str
    exchange: str    # MIC
    country: str
    sector: str
    industry: str
    lot_size: int = 1
    active: bool = True
    allow_buy: bool = True
    allow_sell: bool = True
    kind: str = EQUITY
