"""Steps, the cash trading's check sees (Cash), and buy steps toward target weights. Pure:
plain data in, steps out. The commission here is trading's (the fee its cash check adds), not
a planner configuration's."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.planner import defaults
from services.trading.orders import COMMISSION_FIXED_BASE, COMMISSION_RATE  # trading's fee, read where defined


@dataclass(frozen=True)
class Candidate:
    symbol: str
    price: float        # latest close, in `currency`
    currency: str
    price_base: float   # the same price in the base currency
    lot_size: int


@dataclass(frozen=True)
class Step:
    symbol: str
    side: str
    quantity: int
    estimated_price: float
    currency: str
    estimated_value_base: float
    reason: str
    uuid: str = ""      # its recommendation's id (services/planner/recommendations.py)
    narrative: str = ""  # the step in the plan's story: why, and the cash after it
    category: str = ""   # the opportunity's category (opportunities/book.py), emergency or over_cap
    priority: float = 0.0


def buy_cost_base(value_base: float) -> float:
    """Value plus commission (fixed + percent), in the base currency."""
    return value_base + COMMISSION_FIXED_BASE + COMMISSION_RATE * value_base


def required_cash_base(value_base: float, price_band: float) -> float:
    """The cash trading's check requires for a BUY of `value_base` at the quote: the value at
    the limit price (quote * (1 + band)) plus the commission on it (trading risk._cash)."""
    return buy_cost_base(value_base * (1 + price_band))


def value_for_cash(cash_base: float, price_band: float) -> float:
    """The largest value at the quote whose required cash fits `cash_base` (inverse of
    required_cash_base)."""
    return (cash_base - COMMISSION_FIXED_BASE) / ((1 + COMMISSION_RATE) * (1 + price_band))


def sell_proceeds_base(value_base: float, price_band: float) -> float:
    """What a SELL of `value_base` at the quote brings at the least: the value at the lowest
    price trading's band allows, less the commission."""
    value = value_base * (1 - price_band)
    return value - COMMISSION_FIXED_BASE - COMMISSION_RATE * value


@dataclass(frozen=True)
class Cash:
    """The cash a plan may spend, as trading's cash check sees it (decisions.md rule 10).

    `balances` are per currency, valued in the base currency. The plan never spends the
    reserve; a BUY in currency C may use C's balance plus, with auto-conversion on, the base
    currency's balance (trading converts the deficit); other currencies are never converted."""

    base: str
    balances: Mapping[str, float] = field(default_factory=dict)
    reserve_base: float = defaults.MIN_CASH_RESERVE_BASE
    auto_convert: bool = True

    @property
    def pooled(self) -> float:
        return sum(self.balances.values()) - self.reserve_base

    def spendable(self, currency: str) -> float:
        own = self.balances.get(currency, 0.0)
        if currency != self.base and self.auto_convert:
            own += max(0.0, self.balances.get(self.base, 0.0))
        return max(0.0, min(self.pooled, own))

    def spend(self, currency: str, amount_base: float) -> Cash:
        """After a BUY: the currency's own balance first, the rest from the base currency."""
        balances = dict(self.balances)
        own = max(0.0, min(amount_base, balances.get(currency, 0.0)))
        balances[currency] = balances.get(currency, 0.0) - own
        if amount_base > own:
            balances[self.base] = balances.get(self.base, 0.0) - (amount_base - own)
        return Cash(self.base, balances, self.reserve_base, self.auto_convert)

    def receive(self, currency: str, amount_base: float) -> Cash:
        """After a SELL: the proceeds in its currency."""
        balances = dict(self.balances)
        balances[currency] = balances.get(currency, 0.0) + amount_base
        return Cash(self.base, balances, self.reserve_base, self.auto_convert)


def buy_steps(targets: dict[str, float], held_value_base: dict[str, float], total_value_base: float,
              cash: Cash, candidates: dict[str, Candidate], price_band: float = 0.0,
              max_steps: int = defaults.MAX_STEPS) -> list[Step]:
    """BUY steps for the largest underweight gaps that the spendable cash covers.

    At most `max_steps` steps. Each step buys whole lots, at least the minimum trade value, and
    never more than its gap; its cash at trading's limit price (`price_band` above the quote)
    with commission fits what `cash` leaves spendable in its currency. Steps are ordered by gap,
    largest first.
    """
    gaps = sorted(
        ((targets[s] * total_value_base - held_value_base.get(s, 0.0), s) for s in targets if s in candidates),
        key=lambda gap_symbol: (-gap_symbol[0], gap_symbol[1]),
    )
    steps: list[Step] = []
    for gap, symbol in gaps:
        if len(steps) >= max_steps or cash.pooled < defaults.MIN_TRADE_BASE:
            break
        if gap < defaults.MIN_TRADE_BASE:
            break  # sorted: every later gap is smaller
        candidate = candidates[symbol]
        affordable = value_for_cash(cash.spendable(candidate.currency), price_band)
        lot_value = candidate.price_base * candidate.lot_size
        lots = math.floor(min(gap, affordable) / lot_value)
        value_base = lots * lot_value
        if lots < 1 or value_base < defaults.MIN_TRADE_BASE:
            continue
        cash = cash.spend(candidate.currency, required_cash_base(value_base, price_band))
        current = held_value_base.get(symbol, 0.0) / total_value_base if total_value_base > 0 else 0.0
        steps.append(Step(symbol, "BUY", lots * candidate.lot_size, candidate.price, candidate.currency,
                          value_base, f"rebalance toward target weight {targets[symbol]:.1%} (now {current:.1%})"))
    return steps


def plan_id(state_key: str, as_of_date: str, steps: list[Step]) -> str:
    """Deterministic per (state, day, steps): trading derives the order's client order id from it,
    so the same plan executed twice is one order (decisions.md rule 13)."""
    text = "|".join([state_key, as_of_date] + [f"{s.side}:{s.symbol}:{s.quantity}" for s in steps])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
