"""Performance from the daily snapshots (trading-portfolio-jobs.md section 4). Pure functions.

Deposits are not returns. Each snapshot's value includes the external flows (deposits minus
withdrawals) booked since the previous one, so the day's return takes them out:
    r_t = (V_t - F_t) / V_{t-1} - 1
(the daily-valuation time-weighted return with flows at the end of the day, as the GIPS
standards define it; in replay a deposit arrives just before the day's valuation, at the close).
A day after a snapshot without value (an empty account) has no return.

- time-weighted return: prod(1 + r_t) - 1
- money-weighted return: the XIRR of -V_start, -F_t on each later day and +V_end, per 365 days
  (scipy.optimize.brentq)
- CAGR: (1 + TWR)^(365.25 / calendar days) - 1
- volatility std(r) * sqrt(252), Sharpe mean / std * sqrt(252) (risk-free 0), Sortino
  mean / downside deviation * sqrt(252) (target 0), max drawdown of the compounded index
  (negative): skfolio.measures, the original's empyrical conventions (252 days, rf 0)
- Calmar: CAGR / |max drawdown|
- attribution: each day, weight (previous value / previous total) * the position's return in
  the base currency, summed by country and by industry; annualised (1 + sum)^(252 / days) - 1
- trade metrics (bucket metrics): from the SELLs' realised P&L, rf 0.03 a year, at least 5 SELLs
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

TRADING_DAYS = 252
TRADE_RISK_FREE = 0.03
MIN_SELLS = 5
PROFIT_FACTOR_CAP = 10.0  # in the composite score: a bucket without losses scores as PF 10


@dataclass(frozen=True)
class Point:
    """One snapshot: its value and the external flows booked since the previous snapshot
    (already included in the value), both in the base currency."""

    day: date
    value: float
    flow: float = 0.0


def daily_returns(points: Sequence[Point]) -> list[tuple[date, float]]:
    returns = []
    for previous, current in zip(points, points[1:], strict=False):
        if previous.value > 0:
            returns.append((current.day, (current.value - current.flow) / previous.value - 1))
    return returns


def time_weighted_return(returns: Iterable[float]) -> float | None:
    growth, seen = 1.0, False
    for r in returns:
        growth *= 1 + r
        seen = True
    return growth - 1 if seen else None


def growth_index(points: Sequence[Point]) -> list[tuple[date, float]]:
    """1 at the first snapshot with a value, then compounded by each day's return."""
    index, values = None, []
    for previous, current in zip([None, *points], points, strict=False):
        if index is None:
            if current.value > 0:
                index = 1.0
                values.append((current.day, index))
            continue
        if previous.value > 0:
            index *= (current.value - current.flow) / previous.value
        values.append((current.day, index))
    return values


def xirr(flows: Sequence[tuple[date, float]]) -> float | None:
    """The annual rate r with sum(amount / (1 + r)^(days / 365)) = 0 (scipy brentq); None when the
    flows do not change sign or no root lies between -99.99% and 10^6 a year."""
    if not flows or all(a >= 0 for _, a in flows) or all(a <= 0 for _, a in flows):
        return None
    from scipy.optimize import brentq  # noqa: PLC0415 - heavy, only for this

    first = min(d for d, _ in flows)
    times = [((d - first).days / 365.0, a) for d, a in flows]

    def npv(rate: float) -> float:
        return sum(a / (1 + rate) ** t for t, a in times)

    low, high = -0.9999, 1.0
    try:
        while npv(low) * npv(high) > 0 and high < 1e6:
            high *= 10
        if npv(low) * npv(high) > 0:
            return None
        return float(brentq(npv, low, high, xtol=1e-12, maxiter=500))
    except (OverflowError, ZeroDivisionError, ValueError):
        return None


def money_weighted_return(points: Sequence[Point]) -> float | None:
    """XIRR from the investor's side: the start value and later deposits paid in, the end value
    taken out (withdrawals are money taken out earlier)."""
    if len(points) < 2:
        return None
    flows = [(points[0].day, -points[0].value)] if points[0].value else []
    flows += [(p.day, -p.flow) for p in points[1:] if p.flow]
    flows.append((points[-1].day, points[-1].value))
    return xirr(flows)


def cagr(twr: float | None, start: date, end: date) -> float | None:
    days = (end - start).days
    if twr is None or days <= 0 or twr <= -1:
        return None
    return (1 + twr) ** (365.25 / days) - 1


@dataclass(frozen=True)
class Risk:
    volatility: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None  # negative (or 0)


def risk(returns: Sequence[float]) -> Risk:
    """Annualised volatility, Sharpe, Sortino and the max drawdown, from skfolio.measures."""
    if len(returns) < 2:
        max_dd = None if not returns else min(0.0, returns[0])
        return Risk(None, None, None, max_dd)
    import numpy as np  # noqa: PLC0415 - heavy libraries load on first use
    from skfolio import measures  # noqa: PLC0415

    r = np.asarray(returns, dtype=float)
    mean = float(measures.mean(r))
    std = float(measures.standard_deviation(r))
    downside = float(measures.semi_deviation(r, min_acceptable_return=0.0, biased=True))
    drawdown = -float(measures.max_drawdown(measures.get_drawdowns(r, compounded=True)))
    root = math.sqrt(TRADING_DAYS)
    return Risk(std * root, mean / std * root if std > 0 else None,
                mean / downside * root if downside > 0 else None, min(0.0, drawdown))


def calmar(cagr_value: float | None, max_drawdown: float | None) -> float | None:
    if cagr_value is None or not max_drawdown:
        return None
    return cagr_value / abs(max_drawdown)


def turnover(traded_base: float, mean_value_base: float | None, days: int | None = None) -> float | None:
    """(BUY value + SELL value) / 2 / mean value; per year when `days` (calendar) is given."""
    if not traded_base or not mean_value_base or mean_value_base <= 0:
        return None
    value = traded_base / 2 / mean_value_base
    return value * 365.25 / days if days else value


# --- attribution ---

@dataclass(frozen=True)
class HeldValue:
    quantity: int
    value_base: float
    country: str
    industry: str


@dataclass
class Attribution:
    country: dict[str, float] = field(default_factory=dict)
    industry: dict[str, float] = field(default_factory=dict)
    days: int = 0

    def annualized(self, contribution: float) -> float | None:
        if not self.days or contribution <= -1:
            return None
        return (1 + contribution) ** (TRADING_DAYS / self.days) - 1


def attribution(days: Sequence[date], totals: Mapping[date, float],
                holdings: Mapping[date, Mapping[str, HeldValue]]) -> Attribution:
    """Contribution of each country and industry: per day, the held value's share of the previous
    total times its return in the base currency (value per share, so FX moves count). A position
    bought or sold out that day has no return from the snapshots and is left out of that day."""
    result = Attribution()
    for previous, current in zip(days, days[1:], strict=False):
        total = totals.get(previous, 0.0)
        if total <= 0:
            continue
        result.days += 1
        before, after = holdings.get(previous, {}), holdings.get(current, {})
        for symbol, held in before.items():
            now = after.get(symbol)
            if now is None or held.quantity <= 0 or now.quantity <= 0 or held.value_base <= 0:
                continue
            r = (now.value_base / now.quantity) / (held.value_base / held.quantity) - 1
            contribution = held.value_base / total * r
            for groups, key in ((result.country, held.country), (result.industry, held.industry)):
                name = key or "UNKNOWN"
                groups[name] = groups.get(name, 0.0) + contribution
    return result


# --- trade (bucket) metrics ---

@dataclass(frozen=True)
class Sell:
    at: datetime
    pnl_base: float
    trade_return: float | None  # pnl / cost basis


@dataclass(frozen=True)
class TradeMetrics:
    sells: int
    wins: int
    losses: int
    win_rate: float | None = None
    profit_factor: float | None = None
    sharpe: float | None = None
    sortino: float | None = None
    max_drawdown: float | None = None
    calmar: float | None = None
    composite_score: float | None = None


def trade_metrics(sells: Sequence[Sell], start_value_base: float | None, days: int) -> TradeMetrics:
    """Win rate W/(W+L); profit factor gross profit / |gross loss| (inf without losses); Sharpe
    (mean - 0.03/252) / std and Sortino mean / std of the losing trades' returns, over the trades'
    returns; the max drawdown of start value + cumulative P&L; Calmar = annualised P&L return
    ((1 + P&L / start)^(365 / days) - 1) / max drawdown. The composite score (0.3 Sharpe + 0.3
    Sortino + 0.2 (PF - 1) + 0.1 win rate + 0.1 Calmar; a missing part counts 0, PF at most 10)
    needs at least 5 SELLs."""
    wins = sum(1 for s in sells if s.pnl_base > 0)
    losses = sum(1 for s in sells if s.pnl_base < 0)
    base = TradeMetrics(len(sells), wins, losses)
    if len(sells) < MIN_SELLS:
        return base
    gross_profit = sum(s.pnl_base for s in sells if s.pnl_base > 0)
    gross_loss = -sum(s.pnl_base for s in sells if s.pnl_base < 0)
    win_rate = wins / (wins + losses) if wins + losses else None
    profit_factor = gross_profit / gross_loss if gross_loss > 0 else (math.inf if gross_profit > 0 else None)
    returns = [s.trade_return for s in sells if s.trade_return is not None]
    sharpe = sortino = None
    if len(returns) >= 2:
        mean = sum(returns) / len(returns)
        std = statistics.stdev(returns)
        sharpe = (mean - TRADE_RISK_FREE / TRADING_DAYS) / std if std > 0 else None
        negative = [r for r in returns if r < 0]
        downside = statistics.stdev(negative) if len(negative) >= 2 else 0.0
        sortino = mean / downside if downside > 0 else None
    max_dd = calmar_value = None
    if start_value_base and start_value_base > 0:
        equity, peak, max_dd = start_value_base, start_value_base, 0.0
        for sell in sorted(sells, key=lambda s: s.at):
            equity += sell.pnl_base
            peak = max(peak, equity)
            max_dd = max(max_dd, (peak - equity) / peak if peak > 0 else 0.0)
        total = sum(s.pnl_base for s in sells) / start_value_base
        if days > 0 and total > -1 and max_dd > 0:
            calmar_value = ((1 + total) ** (365 / days) - 1) / max_dd
    parts = (0.3 * (sharpe or 0.0), 0.3 * (sortino or 0.0),
             0.2 * ((min(profit_factor, PROFIT_FACTOR_CAP) if profit_factor is not None else 1.0) - 1),
             0.1 * (win_rate or 0.0), 0.1 * (calmar_value or 0.0))
    return TradeMetrics(len(sells), wins, losses, win_rate, profit_factor, sharpe, sortino, max_dd, calmar_value,
                        sum(parts))

