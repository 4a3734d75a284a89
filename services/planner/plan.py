"""Buy steps toward target weights. Pure: plain data in, steps out."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from services.planner import defaults


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


def buy_cost_base(value_base: float) -> float:
    """Value plus commission (fixed + percent), in the base currency."""
    return value_base + defaults.COMMISSION_FIXED_BASE + defaults.COMMISSION_RATE * value_base


def buy_steps(targets: dict[str, float], held_value_base: dict[str, float], total_value_base: float,
              cash_base: float, candidates: dict[str, Candidate]) -> list[Step]:
    """BUY steps for the largest underweight gaps that the spendable cash covers.

    Spendable cash is cash minus the reserve. Each step buys whole lots, at least the minimum
    trade value, and never more than its gap; steps are ordered by gap, largest first.
    """
    budget = cash_base - defaults.MIN_CASH_RESERVE_BASE
    gaps = sorted(
        ((targets[s] * total_value_base - held_value_base.get(s, 0.0), s) for s in targets if s in candidates),
        key=lambda gap_symbol: (-gap_symbol[0], gap_symbol[1]),
    )
    steps: list[Step] = []
    for gap, symbol in gaps:
        if len(steps) == defaults.MAX_STEPS or budget < defaults.MIN_TRADE_BASE:
            break
        if gap < defaults.MIN_TRADE_BASE:
            break  # sorted: every later gap is smaller
        candidate = candidates[symbol]
        affordable = (budget - defaults.COMMISSION_FIXED_BASE) / (1 + defaults.COMMISSION_RATE)
        lot_value = candidate.price_base * candidate.lot_size
        lots = math.floor(min(gap, affordable) / lot_value)
        value_base = lots * lot_value
        if lots < 1 or value_base < defaults.MIN_TRADE_BASE:
            continue
        budget -= buy_cost_base(value_base)
        current = held_value_base.get(symbol, 0.0) / total_value_base if total_value_base > 0 else 0.0
        steps.append(Step(symbol, "BUY", lots * candidate.lot_size, candidate.price, candidate.currency,
                          value_base, f"rebalance toward target weight {targets[symbol]:.1%} (now {current:.1%})"))
    return steps


def plan_id(portfolio_hash: str, as_of_date: str, steps: list[Step]) -> str:
    text = "|".join([portfolio_hash, as_of_date] + [f"{s.side}:{s.symbol}:{s.quantity}" for s in steps])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
