"""The rule audit: every trade of a backtest re-checked after the fact by trading's own rules.

For each fill, the order that made it is checked again as of its submission, with
`services.trading.risk.check` (the function every order passes) on the facts rebuilt from the
books as they stood then: the holding and its average cost, the last BUY and SELL of the
security (the 30-day buy cooldown, the 90-day minimum hold, the 180-day sell cooldown and the
-20% floor), the fills and working orders of the last days (the frequency caps), the cash of
each currency after the working BUYs (the cash rule, with the automatic conversion), the lot
size, the quote the cycle saw (the previous close) and whether the market was open. After each
fill the holding must not be negative; after every cash flow no balance may be.

Not re-checked: the daily loss breaker (it compares the intraday valuation with the last
snapshot, which the books do not keep per order; trading checked it when the order was placed).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from gateway.backtest import BacktestRun, Fill, OrderRecord
from services.common.errors import FailedPrecondition
from services.trading import orders as trading_orders
from services.trading import risk

CASH_TOLERANCE = 0.01        # a balance this far below zero is float noise, not an overdraft
FREQUENCY_WINDOW = timedelta(days=8)
CONVERSION_KINDS = ("fx_conversion",)


@dataclass(frozen=True)
class Violation:
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    at: datetime
    rule: str
    detail: str


def audit(run: BacktestRun) -> list[Violation]:
    """Every violation found (none when the strategy kept every rule)."""
    settings = risk.RiskSettings(**{k: v for k, v in run.risk_settings.items() if k in risk.RiskSettings.names()})
    by_id = {o.client_order_id: o for o in run.orders}
    found: list[Violation] = []
    checked: set[str] = set()
    for fill in run.fills:
        order = by_id.get(fill.client_order_id)
        if order is None:
            found.append(Violation(fill.client_order_id, fill.symbol, fill.side, fill.quantity, fill.executed_at,
                                   "unknown_order", "a fill without an order in trading's books"))
            continue
        if order.client_order_id not in checked:
            checked.add(order.client_order_id)
            found += _recheck(run, order, settings)
    found += _holdings_never_negative(run.fills)
    found += _cash_never_negative(run)
    return sorted(found, key=lambda v: (v.at, v.client_order_id, v.rule))


def _recheck(run: BacktestRun, order: OrderRecord, settings: risk.RiskSettings) -> list[Violation]:
    try:
        risk.check(_facts(run, order, settings), settings)
    except FailedPrecondition as refusal:
        return [Violation(order.client_order_id, order.symbol, order.side, order.quantity, order.created_at,
                          refusal.rule, refusal.message)]
    security = run.securities.get(order.symbol)
    if security is not None and order.quantity % security.lot_size:
        return [Violation(order.client_order_id, order.symbol, order.side, order.quantity, order.created_at,
                          "lot_size", f"{order.quantity} is not a whole number of lots of {security.lot_size}")]
    return []


def _facts(run: BacktestRun, order: OrderRecord, settings: risk.RiskSettings) -> risk.OrderFacts:
    """The facts trading had when `order` was placed, rebuilt from the books."""
    at = order.created_at
    security = run.securities[order.symbol]
    before = [f for f in run.fills if f.executed_at <= at]
    held, average = _position(before, order.symbol)
    working = _working(run, at)
    day = _session_day(run, at)
    quote = _previous_close(run, order.symbol, day)
    rates = run.rates.get(at) or run.rates[min(run.rates, key=lambda moment: abs(moment - at))]
    base = run.base_currency
    commission = None
    if quote is not None:
        try:
            commission = trading_orders.commission(order.quantity * quote[1] * (1 + settings.price_band),
                                                   security.currency, base, rates)
        except FailedPrecondition:
            commission = None
    balances = _balances(run, at)
    pending = _pending_buys(working)
    convertible = None
    if order.side == "BUY" and security.currency != base and settings.auto_convert_currency:
        convertible = balances.get(base, 0.0) - pending.get(base, 0.0)
    return risk.OrderFacts(
        symbol=order.symbol, side=order.side, quantity=order.quantity, now=at, mode="backtest",
        currency=security.currency, exchange=security.exchange, lot_size=security.lot_size,
        allow=security.allow_buy if order.side == "BUY" else security.allow_sell,
        market_open=_market_open(run, at), quote_price=quote[1] if quote else None,
        quote_date=quote[0] if quote else None, limit_price=None, held_quantity=held,
        average_cost=average if held else None,
        last_buy_at=max((f.executed_at for f in before if f.symbol == order.symbol and f.side == "BUY"), default=None),
        last_sell_at=max((f.executed_at for f in before if f.symbol == order.symbol and f.side == "SELL"),
                         default=None),
        ledger_known=True,
        trade_times=[f.executed_at for f in before if at - f.executed_at <= FREQUENCY_WINDOW]
        + [o.created_at for o in working],
        daily_pnl=None, daily_pnl_armed=False,
        cash_available=balances.get(security.currency, 0.0) - pending.get(security.currency, 0.0),
        commission=commission,
        pending_same_side=any(o.symbol == order.symbol and o.side == order.side for o in working),
        reconciled=True, emergency=order.client_order_id.startswith("emergency-"),
        convertible_base_cash=convertible, base_currency=base, rates=rates)


def _position(fills: list[Fill], symbol: str) -> tuple[int, float]:
    """(shares held, average cost) after `fills`, as the paper broker keeps them: a BUY moves
    the average, a SELL does not."""
    held, average = 0, 0.0
    for fill in fills:
        if fill.symbol != symbol:
            continue
        if fill.side == "BUY":
            average = (held * average + fill.quantity * fill.price) / (held + fill.quantity)
            held += fill.quantity
        else:
            held -= fill.quantity
    return held, average


def _working(run: BacktestRun, at: datetime) -> list[OrderRecord]:
    """The orders placed earlier in the same session (working until its close), refusals aside."""
    day = _session_day(run, at)
    return [o for o in run.orders if o.created_at < at and o.state != "REJECTED" and _session_day(run, o.created_at)
            == day]


def _pending_buys(working: list[OrderRecord]) -> dict[str, float]:
    held: dict[str, float] = defaultdict(float)
    for o in working:
        if o.side == "BUY":
            held[o.currency] += (o.quantity - o.filled_quantity) * o.limit_price
    return held


def _balances(run: BacktestRun, at: datetime) -> dict[str, float]:
    """Each currency's cash when the order was checked: every flow before it, and the deposits
    made at that instant (before the cycle), but not the conversion the order itself made."""
    balances: dict[str, float] = defaultdict(float)
    for flow in run.flows:
        if flow.at < at or (flow.at == at and flow.kind not in CONVERSION_KINDS):
            balances[flow.currency] += flow.amount
    return balances


def _session_day(run: BacktestRun, at: datetime) -> date | None:
    """The session `at` falls in or after (the latest whose open is at or before it)."""
    days, opens = _session_index(run)
    index = bisect.bisect_right(opens, at) - 1
    return days[index] if index >= 0 else None


def _session_index(run: BacktestRun) -> tuple[list[date], list[datetime]]:
    cached = run.__dict__.get("_audit_sessions")
    if cached is None or len(cached[0]) != len(run.sessions):
        days = sorted(run.sessions)
        cached = (days, [run.sessions[d][0] for d in days])
        run.__dict__["_audit_sessions"] = cached
    return cached


def _market_open(run: BacktestRun, at: datetime) -> bool:
    day = _session_day(run, at)
    return day is not None and run.sessions[day][0] <= at < run.sessions[day][1]


def _previous_close(run: BacktestRun, symbol: str, day: date | None) -> tuple[date, float] | None:
    """The latest valid close before the session `day`: the quote a cycle in it sees."""
    if day is None:
        return None
    closes = run.closes.get(symbol, {})
    earlier = [d for d in closes if d < day]
    return (max(earlier), closes[max(earlier)]) if earlier else None


def _holdings_never_negative(fills: list[Fill]) -> list[Violation]:
    held: dict[str, int] = defaultdict(int)
    found = []
    for fill in fills:
        held[fill.symbol] += fill.quantity if fill.side == "BUY" else -fill.quantity
        if held[fill.symbol] < 0:
            found.append(Violation(fill.client_order_id, fill.symbol, fill.side, fill.quantity, fill.executed_at,
                                   "holding", f"{fill.symbol} held {held[fill.symbol]} after the fill"))
    return found


def _cash_never_negative(run: BacktestRun) -> list[Violation]:
    balances: dict[str, float] = defaultdict(float)
    found = []
    for flow in run.flows:
        balances[flow.currency] += flow.amount
        if balances[flow.currency] < -CASH_TOLERANCE:
            found.append(Violation("", flow.symbol, "", 0, flow.at, "cash",
                                   f"{flow.currency} balance {balances[flow.currency]:,.2f} after a {flow.kind} flow"))
    return found
