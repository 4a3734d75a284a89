"""Portfolio valuation and the portfolio state hash. Pure functions on plain data."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.errors import FailedPrecondition
from services.common.money import to_base


@dataclass(frozen=True)
class Holding:
    symbol: str
    quantity: int
    average_cost: float
    currency: str


@dataclass(frozen=True)
class Quote:
    price: float
    currency: str
    date: str


@dataclass(frozen=True)
class ValuedPosition:
    holding: Holding
    price: float
    price_date: str
    market_value: float       # in the holding's currency
    market_value_base: float


@dataclass(frozen=True)
class Valuation:
    positions: list[ValuedPosition]
    cash: list[tuple[str, float, float]]  # (currency, amount, amount in base)
    positions_value_base: float
    cash_base: float

    @property
    def total_value_base(self) -> float:
        return self.positions_value_base + self.cash_base


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


def value_portfolio(holdings: list[Holding], cash: Mapping[str, float], quotes: Mapping[str, Quote],
                    base: str, rates: Mapping[str, float]) -> Valuation:
    """Value every holding at its quote. A holding without a quote cannot be valued: refused,
    never counted as zero."""
    positions = []
    for holding in sorted(holdings, key=lambda h: h.symbol):
        quote = quotes.get(holding.symbol)
        if quote is None:
            raise FailedPrecondition("quote_unavailable", f"no price for {holding.symbol} as of now")
        if quote.currency != holding.currency:
            raise FailedPrecondition(
                "currency_mismatch",
                f"{holding.symbol} is held in {holding.currency} but quoted in {quote.currency}",
            )
        value = holding.quantity * quote.price
        positions.append(ValuedPosition(holding, quote.price, quote.date, value,
                                        to_base(value, holding.currency, base, rates)))
    balances = [(c, a, to_base(a, c, base, rates)) for c, a in sorted(cash.items())]
    return Valuation(
        positions=positions,
        cash=balances,
        positions_value_base=sum(p.market_value_base for p in positions),
        cash_base=sum(b for _, _, b in balances),
    )


def portfolio_hash(holdings: list[Holding], cash: Mapping[str, float], universe: list[UniverseEntry]) -> str:
    """The original's portfolio hash (planner.md section 6): first 8 hex digits of the MD5 of the
    sorted tokens `SYM:qty:allow_buy:allow_sell:min:max:country:industry` (every universe symbol,
    held or not) and `CASH.CUR:amount` (positive balances, rounded to cents)."""
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
    return hashlib.md5(",".join(sorted(tokens)).encode()).hexdigest()[:8]


def _blank(value: float | None) -> str:
    return "" if value is None else str(value)
