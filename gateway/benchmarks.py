"""The backtest's two benchmarks: monthly DCA into the index (as if it were a fund) and monthly
DCA into an equal-weight basket of the universe. Pure: the strategy's own sessions, deposits,
closes, FX rates and fees in; each line's daily values, trades and fees out.

Both follow the strategy's clock exactly, so the three lines differ only in what is bought:
- a session's deposits arrive before its cycle; the cycle values the account at the previous
  closes and the cycle's FX rates (what the strategy's valuation sees);
- on a session with a deposit, orders are sized on the previous close as trading's check sizes
  a BUY (its value at the price band's edge, +5%, plus the commission, fits the cash, converted
  from the base currency at the cycle's rate), in whole shares;
- they fill at that session's close (market-on-close), or expire when the close lies beyond the
  band's edge; the commission is the paper broker's (`services.trading.orders.commission`,
  2 EUR + 0.2%); the fills are booked at the next session's cycle, as the broker's sync books
  the strategy's;
- after the last session, the close-out fills its orders and values everything at its closes.

The index fund's unit price is the index level / INDEX_FUND_DIVISOR (as an S&P 500 ETF such as
SPY trades at about a tenth of the index), so a monthly deposit buys whole units. The basket
spends each month's cash on its most underweight members (equal weight of the basket's value),
largest gap first, each purchase at least MIN_TRADE_BASE (where a 2 EUR fee stays under 1%, the
planner's minimum) and at most its gap, until less than that is left.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from services.portfolio.performance import Point

PRICE_BAND = 0.05          # trading's default price_band: the limit is the quote + 5%
COMMISSION_RATE = 0.002    # the variable part of the paper broker's commission
MIN_TRADE_BASE = 250.0     # the planner's minimum trade (services/planner/defaults.py)
INDEX_FUND_DIVISOR = 10.0


@dataclass(frozen=True)
class Session:
    day: date
    at: datetime           # the cycle's instant
    deposit_base: float    # deposits made before this session's cycle


@dataclass(frozen=True)
class Market:
    """What every line sees: the sessions, the closes (valid daily closes by date, in each
    security's currency), the FX rates at each cycle instant (units per base) and the fee."""

    sessions: Sequence[Session]
    close_out_at: datetime
    closes: Mapping[str, Mapping[date, float]]
    currencies: Mapping[str, str]
    rates: Mapping[datetime, Mapping[str, float]]
    base: str
    fee: Callable[[float, str], float]   # (value, currency) -> commission in that currency
    price_scale: Mapping[str, float] = field(default_factory=dict)  # unit price = close / scale (the index fund)

    def rate(self, at: datetime, currency: str) -> float:
        if currency == self.base:
            return 1.0
        rate = self.rates[at].get(currency)
        if not rate or rate <= 0:
            raise ValueError(f"no {self.base}{currency} rate at {at.isoformat()}")
        return rate

    def price(self, symbol: str, day: date) -> float | None:
        """The close on `day` itself (a fill), or None."""
        close = self.closes.get(symbol, {}).get(day)
        return None if close is None else close / self.price_scale.get(symbol, 1.0)

    def previous_close(self, symbol: str, day: date) -> float | None:
        """The latest close strictly before `day`: what a cycle on `day` sees."""
        history = self.closes.get(symbol, {})
        days = self._sorted_days(symbol)
        index = bisect.bisect_left(days, day)
        return history[days[index - 1]] / self.price_scale.get(symbol, 1.0) if index else None

    def _sorted_days(self, symbol: str) -> list[date]:
        cache = self.__dict__.setdefault("_days", {})
        if symbol not in cache:
            cache[symbol] = sorted(self.closes.get(symbol, {}))
        return cache[symbol]


@dataclass
class Line:
    name: str
    points: list[Point] = field(default_factory=list)
    trades: int = 0
    fees_base: float = 0.0
    traded_base: float = 0.0
    expired: int = 0


@dataclass
class _Order:
    symbol: str
    quantity: int
    limit: float
    day: date
    at: datetime


@dataclass
class _Account:
    market: Market
    line: Line
    cash_base: float = 0.0
    holdings: dict[str, int] = field(default_factory=dict)
    pending: list[_Order] = field(default_factory=list)

    def settle(self) -> None:
        """Fill the working orders at their session's close (or let them expire)."""
        for order in self.pending:
            close = self.market.price(order.symbol, order.day)
            if close is None or close > order.limit + 1e-12:
                self.line.expired += 1
                continue
            currency = self.market.currencies[order.symbol]
            value = order.quantity * close
            fee = self.market.fee(value, currency)
            rate = self.market.rate(order.at, currency)
            if (value + fee) / rate > self.cash_base + 1e-9:
                self.line.expired += 1
                continue
            self.cash_base -= (value + fee) / rate
            self.holdings[order.symbol] = self.holdings.get(order.symbol, 0) + order.quantity
            self.line.trades += 1
            self.line.fees_base += fee / rate
            self.line.traded_base += value / rate
        self.pending = []

    def value(self, day: date, at: datetime, closes_of: Callable[[str, date], float | None]) -> float:
        total = self.cash_base
        for symbol, quantity in self.holdings.items():
            price = closes_of(symbol, day)
            if price is None:
                raise ValueError(f"no close of {symbol} for {day}")
            total += quantity * price / self.market.rate(at, self.market.currencies[symbol])
        return total

    def buy(self, symbol: str, budget_base: float, session: Session) -> float:
        """Order as many whole units as `budget_base` pays at the band's edge with commission;
        returns the base currency the order holds (0 when not even one unit fits)."""
        reference = self.market.previous_close(symbol, session.day)
        if reference is None:
            return 0.0
        currency = self.market.currencies[symbol]
        rate = self.market.rate(session.at, currency)
        limit = reference * (1 + PRICE_BAND)
        budget = min(budget_base, self.cash_base - self.held_by_orders(session)) * rate
        quantity = math.floor((budget - self.market.fee(0.0, currency)) / (limit * (1 + COMMISSION_RATE)))
        if quantity < 1:
            return 0.0
        self.pending.append(_Order(symbol, quantity, limit, session.day, session.at))
        return (quantity * limit + self.market.fee(quantity * limit, currency)) / rate

    def held_by_orders(self, session: Session) -> float:
        return sum((o.quantity * o.limit + self.market.fee(o.quantity * o.limit, self.market.currencies[o.symbol]))
                   / self.market.rate(o.at, self.market.currencies[o.symbol]) for o in self.pending)


def simulate(name: str, market: Market, invest: Callable[[_Account, Session, float], None]) -> Line:
    """Run one line over the sessions: deposits, the cycle's valuation, `invest` on deposit
    days, fills at the close booked at the next session, the close-out after the last."""
    line = Line(name)
    account = _Account(market, line)
    for session in market.sessions:
        account.settle()
        account.cash_base += session.deposit_base
        value = account.value(session.day, session.at, market.previous_close)
        line.points.append(Point(session.day, value, session.deposit_base))
        if session.deposit_base > 0:
            invest(account, session, value)
    if market.sessions:
        last = market.sessions[-1]
        account.settle()
        closing = account.value(last.day, market.close_out_at,
                                lambda symbol, day: market.price(symbol, day) or market.previous_close(symbol, day))
        line.points[-1] = Point(last.day, closing, last.deposit_base)
    return line


def index_dca(market: Market, index: str) -> Line:
    """Every deposit day, the whole cash into the index fund."""
    def invest(account: _Account, session: Session, _value: float) -> None:
        account.buy(index, account.cash_base, session)

    return simulate(f"monthly DCA into {index}", market, invest)


def equal_weight_dca(market: Market, members: Sequence[str]) -> Line:
    """Every deposit day, the cash into the members furthest below an equal share of the basket."""
    def invest(account: _Account, session: Session, value: float) -> None:
        priced = [s for s in members if market.previous_close(s, session.day) is not None]
        if not priced:
            return
        target = value / len(priced)
        held = {s: account.holdings.get(s, 0) * market.previous_close(s, session.day)
                / market.rate(session.at, market.currencies[s]) for s in priced}
        spendable = account.cash_base
        for symbol in sorted(priced, key=lambda s: (held[s] - target, s)):
            gap = target - held[symbol]
            budget = min(gap, spendable)
            if budget < MIN_TRADE_BASE:
                continue
            spendable -= account.buy(symbol, budget, session)

    return simulate(f"monthly DCA into an equal-weight basket of {len(members)}", market, invest)
