"""Portfolio valuation at quotes in the base currency. Pure functions on plain data."""

from __future__ import annotations

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
