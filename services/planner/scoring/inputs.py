"""The plain data scoring works on: a security's metrics (from the data service's GetMetrics),
its fundamentals (data GetFundamentals), and the portfolio it would sit in.

Every numeric field may be None (missing). Units: fractions for returns, yields, margins,
drawdowns and shares of the portfolio (0.05 = 5%); ratios for P/E, debt/equity and current ratio
(debt/equity 1.5 = 150%); money in the base currency where the name says `_base`, else in the
security's own currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from services.planner.scoring.curves import known

OTHER_GROUP = "OTHER"  # the group of a country or industry that no group lists


@dataclass(frozen=True)
class Metrics:
    """A security's indicators as of one date (data GetMetrics: all valid daily bars up to it).

    `daily_bars` and `monthly_bars` count the valid daily bars and the calendar months they
    cover; the other fields carry the data service's keys in lower case (see `from_values`).
    """

    daily_bars: int = 0
    monthly_bars: int = 0
    price: float | None = None
    cagr_5y: float | None = None
    cagr_10y: float | None = None
    sharpe: float | None = None
    sortino: float | None = None
    volatility_annual: float | None = None
    volatility_60d: float | None = None
    volatility_1y: float | None = None
    max_drawdown_1y: float | None = None       # negative fraction over the last 252 bars
    current_drawdown_1y: float | None = None   # price / highest close of the last 252 bars - 1
    days_in_drawdown_1y: float | None = None   # bars since that high
    momentum_30d: float | None = None
    momentum_90d: float | None = None
    distance_from_52w_high: float | None = None  # (high - price) / high
    rsi_14: float | None = None
    bb_position: float | None = None             # (price - lower) / (upper - lower), 0..1
    distance_from_ema_200: float | None = None   # price / EMA200 - 1

    @classmethod
    def from_values(cls, values: Mapping[str, float], daily_bars: int, monthly_bars: int) -> Metrics:
        """From a GetMetrics `values` map (upper-case keys); absent or non-finite -> None."""
        fields = {name: known(values.get(key)) for name, key in _METRIC_KEYS.items()}
        return cls(daily_bars=daily_bars, monthly_bars=monthly_bars, **fields)


_METRIC_KEYS = {
    "price": "PRICE", "cagr_5y": "CAGR_5Y", "cagr_10y": "CAGR_10Y", "sharpe": "SHARPE", "sortino": "SORTINO",
    "volatility_annual": "VOLATILITY_ANNUAL", "volatility_60d": "VOLATILITY_60D", "volatility_1y": "VOLATILITY_1Y",
    "max_drawdown_1y": "MAX_DRAWDOWN_1Y", "current_drawdown_1y": "CURRENT_DRAWDOWN_1Y",
    "days_in_drawdown_1y": "DAYS_IN_DRAWDOWN_1Y", "momentum_30d": "MOMENTUM_30D", "momentum_90d": "MOMENTUM_90D",
    "distance_from_52w_high": "DISTANCE_FROM_52W_HIGH", "rsi_14": "RSI_14", "bb_position": "BB_POSITION",
    "distance_from_ema_200": "DISTANCE_FROM_EMA_200",
}
METRIC_KEYS = tuple(_METRIC_KEYS.values())  # the GetMetrics keys scoring reads


@dataclass(frozen=True)
class Fundamentals:
    """A security's fundamentals (data GetFundamentals); all missing when none are known."""

    trailing_pe: float | None = None
    forward_pe: float | None = None
    profit_margin: float | None = None          # fraction
    debt_to_equity: float | None = None         # ratio (Yahoo's 150.0 is stored as 1.5)
    current_ratio: float | None = None
    dividend_yield: float | None = None         # fraction
    payout_ratio: float | None = None           # fraction
    five_year_avg_dividend_yield: float | None = None  # fraction
    recommendation_key: str | None = None       # strong_buy, buy, hold, underperform, sell, strong_sell
    target_mean_price: float | None = None      # in the security's currency


@dataclass(frozen=True)
class Holding:
    """A position as the portfolio books it. Dates are those of the fills; None: no such fill.
    `dates_known` says the dates were read; it is False by default, and a sell is then blocked
    (fail closed), so a holding built without its fills can never pass the holding rules."""

    symbol: str
    quantity: int
    average_cost: float        # in the security's currency
    price: float               # latest price, in the security's currency
    value_base: float          # market value in the base currency
    lot_size: int = 1
    allow_sell: bool = True
    first_buy: date | None = None
    last_buy: date | None = None
    last_sell: date | None = None
    dates_known: bool = False

    @property
    def gain(self) -> float | None:
        """price / average cost - 1; None without a usable cost or price."""
        cost, price = known(self.average_cost), known(self.price)
        return None if cost is None or price is None or cost <= 0 or price < 0 else price / cost - 1


@dataclass(frozen=True)
class PortfolioContext:
    """The portfolio a security is scored in (diversification, sell balance, portfolio score).

    `holdings` are keyed by symbol; `total_value_base` is positions plus cash. Countries and
    industries map to groups (`*_to_group`, else OTHER_GROUP) whose target shares (0..1) are
    the allocation targets; a security's industry may list several, comma-separated.
    """

    total_value_base: float
    holdings: Mapping[str, Holding] = field(default_factory=dict)
    country_of: Mapping[str, str] = field(default_factory=dict)
    industry_of: Mapping[str, str] = field(default_factory=dict)
    country_to_group: Mapping[str, str] = field(default_factory=dict)
    industry_to_group: Mapping[str, str] = field(default_factory=dict)
    country_targets: Mapping[str, float] = field(default_factory=dict)
    industry_targets: Mapping[str, float] = field(default_factory=dict)

    def country_group(self, country: str) -> str:
        return self.country_to_group.get(country, OTHER_GROUP)

    def industry_groups(self, industry: str) -> list[str]:
        return [self.industry_to_group.get(name, OTHER_GROUP) for name in split_industries(industry)]

    def share(self, symbol: str) -> float:
        """The holding's share of the portfolio's total value (0 when not held, or valued at 0
        or below: bad data never makes a share, or a group's, negative)."""
        total = known(self.total_value_base)
        holding = self.holdings.get(symbol)
        value = known(holding.value_base) if holding else None
        return value / total if value and value > 0 and total and total > 0 else 0.0

    def country_group_shares(self) -> dict[str, float]:
        shares: dict[str, float] = {}
        for symbol in self.holdings:
            group_name = self.country_group(self.country_of.get(symbol, ""))
            shares[group_name] = shares.get(group_name, 0.0) + self.share(symbol)
        return shares

    def industry_group_shares(self) -> dict[str, float]:
        """Each holding's share split evenly over its industries' groups."""
        shares: dict[str, float] = {}
        for symbol in self.holdings:
            groups = self.industry_groups(self.industry_of.get(symbol, "")) or [OTHER_GROUP]
            for group_name in groups:
                shares[group_name] = shares.get(group_name, 0.0) + self.share(symbol) / len(groups)
        return shares


def split_industries(industry: str) -> list[str]:
    return [name.strip() for name in (industry or "").split(",") if name.strip()]
