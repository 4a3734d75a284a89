"""The state hashes the portfolio owns that key the planner's recommendations (planner.md section
6, decisions.md rule 19): portfolio and allocations (the settings hash is the planner's, in
services/planner/settings.py). Pure functions; each is the first 8 hex digits of an MD5 over
sorted tokens, so the order of the inputs never matters."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from services.portfolio.valuation import Holding

EMPTY_ALLOCATIONS_HASH = "00000000"


@dataclass(frozen=True)
class UniverseEntry:
    """The fields of a security that change what the planner may do (they enter the hash)."""

    symbol: str
    allow_buy: bool
    allow_sell: bool
    country: str
    industry: str
    min_target: float | None = None
    max_target: float | None = None


def _md5_8(tokens: list[str]) -> str:
    return hashlib.md5(",".join(sorted(tokens)).encode()).hexdigest()[:8]


def portfolio_hash(holdings: list[Holding], cash: Mapping[str, float], universe: list[UniverseEntry]) -> str:
    """The original's portfolio hash: the sorted tokens `SYM:qty:allow_buy:allow_sell:min:max:country:industry`
    (every universe symbol, held or not; a symbol outside the universe gets True, False and
    blanks) and `CASH.CUR:amount` (positive balances, rounded to cents)."""
    quantities = {h.symbol: int(h.quantity) for h in holdings if h.quantity > 0}
    entries = {u.symbol: u for u in universe}
    tokens = []
    for symbol in sorted(set(quantities) | set(entries)):
        entry = entries.get(symbol)
        flags = (
            ("True", "False", "", "", "", "") if entry is None else
            (str(entry.allow_buy), str(entry.allow_sell), _blank(entry.min_target), _blank(entry.max_target),
             entry.country, entry.industry)
        )
        tokens.append(":".join((symbol, str(quantities.get(symbol, 0)), *flags)))
    tokens += [f"CASH.{c}:{round(a, 2)}" for c, a in sorted(cash.items()) if a > 0]
    return _md5_8(tokens)


def allocations_hash(targets: Mapping[str, float]) -> str:
    """Keys such as `country_group:EU` and `industry_group:Technology` -> share (0..1): the
    sorted `key:round(share, 4)` tokens; "00000000" when there is no target at all."""
    if not targets:
        return EMPTY_ALLOCATIONS_HASH
    return _md5_8([f"{key}:{round(value, 4)}" for key, value in targets.items()])


def _blank(value: object | None) -> str:
    return "" if value is None else str(value)
