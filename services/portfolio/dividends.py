"""Dividend reinvestment (trading-portfolio-jobs.md section 5). Pure functions on plain data.

Per symbol, the sum (base currency) of its dividends not yet reinvested:
- below the minimum trade (250 EUR: where a 2 EUR + 0.2% fee stays under 1%, planner.md
  section 4): kept as a pending bonus, which the optimiser adds to the expected return as
  amount / position value;
- trailing-twelve-month yield >= 3%: a BUY of the same security, int(sum / price) rounded down to
  whole lots, at least one lot, under a client order id derived from the dividends' ids;
- otherwise (yield below 3% or unknown): pooled, for the rebalancer's next BUY.
A dividend is marked reinvested only when a fill of its BUY (or, pooled, the next BUY) reaches
the books.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

COMMISSION_FIXED_BASE, COMMISSION_RATE = 2.0, 0.002  # the broker's fee (decisions.md rule 20)
MIN_TRADE_BASE = COMMISSION_FIXED_BASE / (0.01 - COMMISSION_RATE)  # 250 EUR
MIN_YIELD = 0.03
RECEIVED, BONUS, POOLED, ASSIGNED, REINVESTED = "received", "bonus", "pooled", "assigned", "reinvested"
STATUSES = (RECEIVED, BONUS, POOLED, ASSIGNED, REINVESTED)
PLANNABLE = (RECEIVED, BONUS, ASSIGNED)  # pooled dividends wait for the rebalancer's BUY


@dataclass(frozen=True)
class OpenDividend:
    id: int
    symbol: str
    amount_base: float


@dataclass(frozen=True)
class SecurityFacts:
    """What the rule needs of one security; None where unknown."""

    price: float | None             # the latest quote, in `currency`
    currency: str
    lot_size: int
    dividend_yield: float | None    # trailing twelve months
    position_value_base: float | None
    rate: float | None              # units of `currency` per base unit (1 for the base currency)


@dataclass(frozen=True)
class Buy:
    symbol: str
    client_order_id: str
    quantity: int
    price: float
    currency: str
    amount_base: float
    dividend_ids: tuple[int, ...]
    dividend_yield: float


@dataclass(frozen=True)
class Bonus:
    symbol: str
    amount_base: float
    bonus: float | None  # amount / position value, in 0..1; None when the position has no value


@dataclass
class Plan:
    buys: list[Buy] = field(default_factory=list)
    pooled_ids: list[int] = field(default_factory=list)
    pooled_base: float = 0.0
    bonuses: list[Bonus] = field(default_factory=list)
    bonus_ids: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def reinvest_client_order_id(symbol: str, dividend_ids: Iterable[int]) -> str:
    """Deterministic: the same dividends give the same id, so trading refuses a second BUY."""
    digest = hashlib.sha256(f"{symbol}:{','.join(map(str, sorted(dividend_ids)))}".encode()).hexdigest()[:24]
    return f"drip-{digest}"


def trailing_yield(per_share: Iterable[tuple[date, float]], price: float | None, as_of: date) -> float | None:
    """Dividends per share with ex-dates in the 365 days up to as_of, over the price; None
    without a price or without any dividend in that year (unknown, not 0)."""
    amounts = [a for d, a in per_share if 0 <= (as_of - d).days < 365]
    if not amounts or not price or price <= 0:
        return None
    return sum(amounts) / price


def bonus_of(amount_base: float, position_value_base: float | None) -> float | None:
    if not position_value_base or position_value_base <= 0:
        return None
    return min(1.0, max(0.0, amount_base / position_value_base))


def _by_symbol(open_dividends: Iterable[OpenDividend]) -> dict[str, list[OpenDividend]]:
    by_symbol: dict[str, list[OpenDividend]] = {}
    for dividend in open_dividends:
        by_symbol.setdefault(dividend.symbol, []).append(dividend)
    return by_symbol


def trade_sized(open_dividends: Iterable[OpenDividend], min_trade_base: float = MIN_TRADE_BASE) -> set[str]:
    """The symbols whose dividends add up to a trade: the only ones whose price, yield, lot and
    rate `plan` reads (below the minimum it reads only the position's value)."""
    return {s for s, dividends in _by_symbol(open_dividends).items()
            if sum(d.amount_base for d in dividends) >= min_trade_base}


def plan(open_dividends: Iterable[OpenDividend], facts: Mapping[str, SecurityFacts],
         min_trade_base: float = MIN_TRADE_BASE) -> Plan:
    """The reinvestment of every plannable dividend, per symbol (see the module docstring)."""
    by_symbol = _by_symbol(open_dividends)
    result = Plan()
    for symbol in sorted(by_symbol):
        dividends = by_symbol[symbol]
        ids = tuple(sorted(d.id for d in dividends))
        total = sum(d.amount_base for d in dividends)
        fact = facts.get(symbol)
        if total < min_trade_base:
            result.bonuses.append(Bonus(symbol, total, bonus_of(total, fact.position_value_base if fact else None)))
            result.bonus_ids.extend(ids)
            continue
        buy = _same_security(symbol, ids, total, fact)
        if buy is None:
            result.pooled_ids.extend(ids)
            result.pooled_base += total
            reason = "no security facts" if fact is None else (
                "yield unknown" if fact.dividend_yield is None else
                f"yield {fact.dividend_yield:.2%} below {MIN_YIELD:.0%}" if fact.dividend_yield < MIN_YIELD else
                "no price or FX rate")
            result.notes.append(f"{symbol}: pooled for the rebalancer ({reason})")
        else:
            result.buys.append(buy)
    return result


def _same_security(symbol: str, ids: tuple[int, ...], total_base: float, fact: SecurityFacts | None) -> Buy | None:
    if fact is None or fact.dividend_yield is None or fact.dividend_yield < MIN_YIELD:
        return None
    if not fact.price or fact.price <= 0 or not fact.rate or fact.rate <= 0:
        return None
    lot = max(1, fact.lot_size)
    quantity = max(lot, math.floor(total_base * fact.rate / fact.price / lot) * lot)
    return Buy(symbol, reinvest_client_order_id(symbol, ids), quantity, fact.price, fact.currency, total_base, ids,
               fact.dividend_yield)
