"""What the opportunity calculators, patterns, sequences and the evaluation plan from: the
books as the planner sees them now (securities with their quotes and eligibility, positions
with their fill dates, cash per currency) and the optimiser's targets. Pure data.

Money is in the base currency where a name says `_base`, else in the security's currency.
A security's `buy_block` / `sell_block` is empty when the planner may propose that side now,
else the rule that refuses it (trading's rule name where trading has one; see eligibility.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from services.planner.plan import Cash
from services.planner.scoring.inputs import OTHER_GROUP

BUY, SELL = "BUY", "SELL"

# Categories (planner.md section 2 "Data models"), each sorted by priority, highest first.
PROFIT_TAKING = "profit_taking"
AVERAGING_DOWN = "averaging_down"
REBALANCE_SELLS = "rebalance_sells"
REBALANCE_BUYS = "rebalance_buys"
OPPORTUNITY_BUYS = "opportunity_buys"
SELL_CATEGORIES = (PROFIT_TAKING, REBALANCE_SELLS)
BUY_CATEGORIES = (AVERAGING_DOWN, REBALANCE_BUYS, OPPORTUNITY_BUYS)
CATEGORIES = (PROFIT_TAKING, AVERAGING_DOWN, REBALANCE_SELLS, REBALANCE_BUYS, OPPORTUNITY_BUYS)
EMERGENCY = "emergency"  # SELLs that cover a negative balance; always first in a plan
OVER_CAP = "over_cap"    # SELLs that bring a holding back under the owner's max target; next


@dataclass(frozen=True)
class SecurityView:
    symbol: str
    currency: str
    lot_size: int
    price: float                  # the quote trading checks against, in `currency`
    price_base: float             # the same per share, in the base currency
    country: str = ""
    industry: str = ""
    country_group: str = OTHER_GROUP
    industry_groups: tuple[str, ...] = ()
    quality: float | None = None  # the planner's score, (long_term + fundamentals) / 2; None: not scored
    cagr_5y: float | None = None
    cagr_10y: float | None = None
    volatility: float | None = None  # annual, of daily returns
    max_weight: float | None = None  # the owner's max_portfolio_target as a share; None: no cap
    buy_block: str = ""           # "rule: detail" when a BUY may not be proposed now
    sell_block: str = ""          # "rule: detail" when a SELL may not be proposed now

    @property
    def lot(self) -> int:
        return max(1, int(self.lot_size))

    @property
    def lot_value_base(self) -> float:
        return self.lot * self.price_base


@dataclass(frozen=True)
class PositionView:
    symbol: str
    quantity: int
    average_cost: float           # per share, in the security's currency (0: unknown)
    value_base: float             # market value now
    first_buy: date | None = None
    last_buy: date | None = None
    last_sell: date | None = None

    def gain(self, price: float) -> float | None:
        """price / average cost - 1; None without a usable cost."""
        return price / self.average_cost - 1 if self.average_cost > 0 and price > 0 else None


@dataclass(frozen=True)
class Book:
    """The state a plan starts from."""

    today: date
    base: str
    securities: Mapping[str, SecurityView]      # every security that can be priced (held or candidate)
    positions: Mapping[str, PositionView]       # quantity > 0
    cash: Cash                                  # per currency, valued in the base currency; the reserve
    total_value_base: float                     # positions + cash
    price_band: float = 0.0                     # trading holds BUY cash at quote x (1 + band)
    target_weights: Mapping[str, float] = field(default_factory=dict)  # the optimiser's, shares of the total
    optimised: frozenset[str] = frozenset()     # the symbols the optimiser placed (absent weight = 0)
    country_targets: Mapping[str, float] = field(default_factory=dict)   # group -> share
    industry_targets: Mapping[str, float] = field(default_factory=dict)
    regime: str = "sideways"
    last_sells: Mapping[str, date] = field(default_factory=dict)   # symbol -> its last SELL (held or not)
    sell_cooldown_days: int = 0                 # no SELL again, nor BUY back, within this many days of a SELL
    last_buys: Mapping[str, date] = field(default_factory=dict)    # symbol -> its last BUY (held or not)
    buy_cooldown_days: int = 0                  # no BUY again within this many days of a BUY (recently_traded)

    def weight(self, symbol: str) -> float:
        position = self.positions.get(symbol)
        return position.value_base / self.total_value_base if position and self.total_value_base > 0 else 0.0

    def room_base(self, symbol: str) -> float:
        """How much more of `symbol` may be held under the owner's max_portfolio_target (inf
        without one): a BUY never takes a holding above its cap."""
        security = self.securities.get(symbol)
        if security is None or security.max_weight is None:
            return math.inf
        held = self.positions[symbol].value_base if symbol in self.positions else 0.0
        return security.max_weight * self.total_value_base - held

    def country_shares(self) -> dict[str, float]:
        """Country group -> share of the total value held in it."""
        shares: dict[str, float] = {}
        for symbol in self.positions:
            group = self.securities[symbol].country_group if symbol in self.securities else OTHER_GROUP
            shares[group] = shares.get(group, 0.0) + self.weight(symbol)
        return shares

    def industry_shares(self) -> dict[str, float]:
        """Industry group -> share, a holding split evenly over its industries' groups."""
        shares: dict[str, float] = {}
        for symbol in self.positions:
            groups = (self.securities[symbol].industry_groups if symbol in self.securities else ()) or (OTHER_GROUP,)
            for group in groups:
                shares[group] = shares.get(group, 0.0) + self.weight(symbol) / len(groups)
        return shares


@dataclass(frozen=True)
class Action:
    """One candidate trade (the original's ActionCandidate): whole lots, priced at the quote."""

    side: str                     # BUY or SELL
    symbol: str
    quantity: int
    price: float                  # per share, in `currency`
    currency: str
    value_base: float             # quantity x price, in the base currency
    priority: float               # higher is better; each calculator has its own rule
    category: str
    reason: str
    tags: tuple[str, ...] = ()    # COUNTRY:<group>, INDUSTRY:<group>, windfall, averaging_down, weight_based

    @property
    def key(self) -> tuple[str, str]:
        return self.symbol, self.side

    def group_tags(self, prefix: str) -> frozenset[str]:
        return frozenset(t[len(prefix):] for t in self.tags if t.startswith(prefix))


def group_tags(security: SecurityView) -> tuple[str, ...]:
    return (f"COUNTRY:{security.country_group}",
            *(f"INDUSTRY:{g}" for g in security.industry_groups or (OTHER_GROUP,)))


def by_priority(actions: list[Action]) -> list[Action]:
    """Highest priority first; ties by symbol, so the order never depends on the input's."""
    return sorted(actions, key=lambda a: (-a.priority, a.symbol, a.side))
