"""Securities: the plain data the rest of the service works with."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from services.common.errors import InvalidArgument

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
    isin: str = ""
    min_target: float | None = None  # percent of the portfolio, 0-100
    max_target: float | None = None
    bucket: str = "core"
    yahoo_symbol: str = ""


def select_securities(securities: Iterable[tuple[int, Security]], include_inactive: bool, include_indices: bool,
                      **filters: str) -> list[tuple[int, Security]]:
    """The (id, security) pairs that pass, in their order: active ones unless `include_inactive`,
    equities unless `include_indices`; each of `filters` (a Security field -> value) matches
    exactly when non-empty."""
    wanted = {name: value for name, value in filters.items() if value}
    return [(security_id, security) for security_id, security in securities
            if (include_inactive or security.active) and (include_indices or security.kind != INDEX)
            and all(getattr(security, name) == value for name, value in wanted.items())]


# --- validation ---

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-_/]{0,31}$")
_ISIN = re.compile(r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")
_MIC = re.compile(r"^[A-Z0-9]{4}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# The longest text each field holds (the store's column sizes, which PostgreSQL enforces).
MAX_LENGTHS = {"name": 200, "country": 64, "sector": 100, "industry": 100, "bucket": 64, "yahoo_symbol": 32}


def isin_valid(isin: str) -> bool:
    """ISO 6166: two letters, nine alphanumerics, a Luhn check digit over the digit expansion."""
    if not _ISIN.match(isin):
        return False
    digits = "".join(str(int(ch, 36)) for ch in isin[:-1])
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10 == int(isin[-1])


def validate_security(security: Security) -> Security:
    """The security with defaults applied, or InvalidArgument naming the first bad field."""
    if not _SYMBOL.match(security.symbol):
        raise InvalidArgument("security.symbol", f"must be upper case broker form like AAPL.US, got "
                                                 f"{security.symbol!r}")
    if security.isin and not isin_valid(security.isin):
        raise InvalidArgument("security.isin", f"{security.isin!r} is not a valid ISIN (format or check digit)")
    if not _CURRENCY.match(security.currency):
        raise InvalidArgument("security.currency", f"must be an ISO 4217 code, got {security.currency!r}")
    if security.exchange and not _MIC.match(security.exchange):
        raise InvalidArgument("security.exchange", f"must be a MIC such as XNYS, got {security.exchange!r}")
    if security.lot_size < 1:
        raise InvalidArgument("security.lot_size", f"must be at least 1, got {security.lot_size}")
    for field in ("min_target", "max_target"):
        value = getattr(security, field)
        if value is not None and not (math.isfinite(value) and 0 <= value <= 100):
            raise InvalidArgument(f"security.{field.replace('target', 'portfolio_target')}",
                                  f"must be a percentage between 0 and 100, got {value!r}")
    if security.min_target is not None and security.max_target is not None \
            and security.min_target > security.max_target:
        raise InvalidArgument("security.min_portfolio_target", "is above max_portfolio_target")
    if security.kind not in (EQUITY, INDEX):
        raise InvalidArgument("security.kind", f"unknown kind {security.kind!r}")
    if not security.name.strip():
        raise InvalidArgument("security.name", "is required")
    for field, limit in MAX_LENGTHS.items():
        if len(getattr(security, field)) > limit:
            raise InvalidArgument(f"security.{field}", f"longer than {limit} characters")
    return replace(security, bucket=security.bucket or "core")


# --- metadata detection ---

# Symbol suffix -> (country, MIC), the fallback when the provider has no metadata.
SUFFIXES: dict[str, tuple[str, str]] = {
    "US": ("United States", ""), "DE": ("Germany", "XETR"), "GR": ("Greece", "ASEX"), "PA": ("France", "XPAR"),
    "AS": ("Netherlands", "XAMS"), "HK": ("Hong Kong", "XHKG"), "T": ("Japan", ""), "L": ("United Kingdom", "XLON"),
    "UK": ("United Kingdom", "XLON"), "MI": ("Italy", "XMIL"), "CO": ("Denmark", "XCSE"), "TO": ("Canada", "XTSE"),
    "AX": ("Australia", "XASX"), "SS": ("China", "XSHG"), "SZ": ("China", "XSHG"),
}


def detect_metadata(security: Security, info: dict | None, exchange_from_name) -> Security:
    """Fill empty country, exchange, sector and industry from the provider's info (Yahoo fields
    country, fullExchangeName, sector, industry), else from the symbol suffix. Fields already set
    are the owner's and stay as they are."""
    info = info or {}
    _, _, suffix = security.symbol.rpartition(".")
    suffix_country, suffix_exchange = SUFFIXES.get(suffix, ("", ""))
    exchange = security.exchange or (exchange_from_name(str(info.get("fullExchangeName") or info.get("exchange")
                                                             or "")) or suffix_exchange)
    return replace(
        security,
        country=security.country or str(info.get("country") or suffix_country),
        exchange=exchange or "",
        sector=security.sector or str(info.get("sector") or ""),
        industry=security.industry or str(info.get("industry") or info.get("sector") or ""),
    )
