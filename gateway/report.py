"""The backtest report: the strategy against the two benchmarks, the rule audit, two plots.

Written to the output directory: `report.json` (every figure), `report.md` (the same as tables,
with the plots embedded), `equity.png` (the three lines' values and the net deposits),
`drawdown.png` (each line's drawdown from its running peak) and `trades.csv` (every fill).
Nothing in it depends on the wall clock or the machine, so the same inputs give the same files.

Every line is measured by the one performance module, `services/portfolio/performance.py`, on
the same points: one per session, the value its cycle saw (at the previous closes) with the
deposits made before that cycle, and the last one at the final close after the close-out.
- final value, net deposits (the sum of the deposits), money-weighted return (XIRR of the
  deposits and the final value), time-weighted return (deposits left out) and its CAGR;
- volatility, Sharpe, Sortino (annualised, 252 days, risk-free 0) and the max drawdown of the
  time-weighted growth, from skfolio's measures; Calmar = CAGR / |max drawdown|;
- turnover: (BUY + SELL value) / 2 / mean value, per year; fees and trades as booked.
The strategy's fees and traded values are converted to the base currency at the rates of the
cycle that booked the fill; each benchmark's at the rates its orders were sized with.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from gateway.audit import Violation, audit
from gateway.backtest import INDEX, BacktestRun
from gateway.benchmarks import INDEX_FUND_DIVISOR, Line, Market, Session, equal_weight_dca, index_dca
from services.portfolio import performance
from services.trading.orders import COMMISSION_FIXED_BASE, COMMISSION_RATE, commission

FIGURES = ("final_value", "net_deposits", "money_weighted_return", "time_weighted_return", "cagr", "volatility",
           "sharpe", "sortino", "max_drawdown", "calmar", "turnover", "fees_paid", "trades")
PERCENT = {"money_weighted_return", "time_weighted_return", "cagr", "volatility", "max_drawdown", "turnover"}


@dataclass(frozen=True)
class Report:
    lines: list[Line]
    figures: list[dict]
    violations: list[Violation]
    files: list[Path]


def strategy_line(run: BacktestRun) -> Line:
    """The strategy's points (close-out last), trades, fees and traded value in the base currency."""
    line = Line("strategy")
    for record in run.days:
        line.points.append(performance.Point(record.day, record.value_base, sum(a for _, a in record.deposits)))
    if run.close_out is not None and line.points:
        last = line.points[-1]
        line.points[-1] = performance.Point(last.day, run.close_out.value_base, last.flow)
    booking = sorted(run.rates)
    for fill in run.fills:
        at = next((moment for moment in booking if moment > fill.executed_at), booking[-1])
        rate = 1.0 if fill.currency == run.base_currency else run.rates[at][fill.currency]
        line.trades += 1
        line.fees_base += fill.commission / rate
        line.traded_base += fill.quantity * fill.price / rate
    return line


def market_of(run: BacktestRun) -> Market:
    """What the benchmarks see: the strategy's sessions, deposits, closes, rates and fees."""
    sessions = [Session(d.day, d.at, sum(a for _, a in d.deposits)) for d in run.days]
    currencies = {s: info.currency for s, info in run.securities.items()}
    return Market(sessions, run.close_out.at, run.closes, currencies, run.rates, run.base_currency,
                  lambda value, currency: commission(value, currency, run.base_currency, run.fee_rates),
                  {INDEX: INDEX_FUND_DIVISOR})


def figures_of(line: Line) -> dict:
    points = line.points
    returns = [r for _, r in performance.daily_returns(points)]
    twr = performance.time_weighted_return(returns)
    first, last = points[0].day, points[-1].day
    cagr = performance.cagr(twr, first, last)
    risk = performance.risk(returns)
    mean_value = sum(p.value for p in points) / len(points)
    return {
        "line": line.name,
        "final_value": points[-1].value,
        "net_deposits": sum(p.flow for p in points),
        "money_weighted_return": performance.money_weighted_return(points),
        "time_weighted_return": twr,
        "cagr": cagr,
        "volatility": risk.volatility,
        "sharpe": risk.sharpe,
        "sortino": risk.sortino,
        "max_drawdown": risk.max_drawdown,
        "calmar": performance.calmar(cagr, risk.max_drawdown),
        "turnover": performance.turnover(line.traded_base, mean_value, (last - first).days),
        "fees_paid": line.fees_base,
        "trades": line.trades,
    }


def build(run: BacktestRun) -> tuple[list[Line], list[dict], list[Violation]]:
    market = market_of(run)
    lines = [strategy_line(run), index_dca(market, INDEX), equal_weight_dca(market, run.universe)]
    return lines, [figures_of(line) for line in lines], audit(run)


def write(run: BacktestRun, out_dir: Path) -> Report:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines, figures, violations = build(run)
    files = [out_dir / name for name in ("report.json", "report.md", "equity.png", "drawdown.png", "trades.csv")]
    _plot_equity(lines, files[2], run.base_currency)
    _plot_drawdown(lines, files[3])
    _write_trades(run, files[4])
    document = _document(run, figures, violations)
    files[0].write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    files[1].write_text(_markdown(run, figures, violations))
    return Report(lines, figures, violations, files)


def _rounded(value):
    """Figures to 10 significant digits in the JSON: identical runs give identical files even
    where a library's last bit could differ."""
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else None
    return value


def _document(run: BacktestRun, figures: list[dict], violations: list[Violation]) -> dict:
    settings = run.settings
    return {
        "settings": {"start": run.days[0].day.isoformat(), "end": run.days[-1].day.isoformat(),
                     "initial_deposit": settings.initial_deposit, "monthly_deposit": settings.monthly_deposit,
                     "base_currency": run.base_currency, "universe": run.universe, "exchange": settings.exchange,
                     "minutes_before_close": settings.minutes_before_close, "sessions": len(run.days),
                     "fee": {"fixed_base": COMMISSION_FIXED_BASE, "rate": COMMISSION_RATE,
                             "fixed_part_rates": dict(sorted(run.fee_rates.items())), "text": fee_text(run)}},
        "deposits": [{"date": day.isoformat(), "amount": amount} for day, amount in run.deposits],
        "lines": [{key: _rounded(value) for key, value in f.items()} for f in figures],
        "rule_audit": {"trades_checked": len(run.fills), "violations": len(violations),
                       "offending": [{"client_order_id": v.client_order_id, "symbol": v.symbol, "side": v.side,
                                      "quantity": v.quantity, "at": v.at.isoformat(), "rule": v.rule,
                                      "detail": v.detail} for v in violations]},
    }


def fee_text(run: BacktestRun) -> str:
    """The paper broker's fee as this run charged it and the benchmarks paid it (trading's
    `commission`: a fixed part in the base currency plus a share of the order value), with the
    rates the fixed part was converted at for orders in other currencies (TRADER_FX_RATES), e.g.
    `2 USD + 0.2% of the value per order`."""
    text = f"{COMMISSION_FIXED_BASE:g} {run.base_currency} + {COMMISSION_RATE * 100:g}% of the value per order"
    traded = {run.securities[s].currency for s in (*run.universe, INDEX) if s in run.securities}
    foreign = sorted(c for c in traded if c != run.base_currency)
    if foreign:
        rates = ", ".join(f"{c}={run.fee_rates[c]:g}" if c in run.fee_rates else f"{c}: no rate" for c in foreign)
        text += f", the fixed part converted at {rates} per {run.base_currency} (TRADER_FX_RATES)"
    return text


def formatted(key: str, value) -> str:
    if value is None:
        return "-"
    if key in PERCENT:
        return f"{value:.2%}"
    if key == "trades":
        return f"{value:,}"
    if key in ("sharpe", "sortino", "calmar"):
        return f"{value:.2f}"
    return f"{value:,.2f}"


def _markdown(run: BacktestRun, figures: list[dict], violations: list[Violation]) -> str:
    base = run.base_currency
    first, last = run.days[0].day, run.days[-1].day
    head = ["figure"] + [f["line"] for f in figures]
    rows = [[key.replace("_", " ") + (f" ({base})" if key in ("final_value", "net_deposits", "fees_paid") else "")]
            + [formatted(key, f[key]) for f in figures] for key in FIGURES]
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                      + ["| " + " | ".join(row) + " |" for row in rows])
    offending = "\n".join(f"- {v.at:%Y-%m-%d %H:%M} {v.side} {v.quantity} {v.symbol} ({v.client_order_id}): "
                          f"{v.rule}: {v.detail}" for v in violations)
    return f"""# Backtest {first} to {last}

{len(run.days):,} sessions of {run.settings.exchange}, one cycle each {run.settings.minutes_before_close:g} minutes \
before the close; {base} {run.settings.initial_deposit:,.0f} at the start and {run.settings.monthly_deposit:,.0f} on \
the first session of each month, {len(run.universe)} securities. Fees: {fee_text(run)}. Benchmarks: the same \
deposits and fees (whole shares), monthly into {INDEX} (as a fund at 1/{INDEX_FUND_DIVISOR:g} of the index) and \
into an equal-weight basket of the universe.

{table}

![equity](equity.png)

![drawdown](drawdown.png)

## Rule audit

{len(run.fills):,} trades re-checked against trading's rules: **{len(violations)} violations**.
{offending}
"""


def _plot_equity(lines: list[Line], path: Path, base: str) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    for line in lines:
        axes.plot([p.day for p in line.points], [p.value for p in line.points], label=line.name, linewidth=1.2)
    deposits, total = [], 0.0
    for p in lines[0].points:
        total += p.flow
        deposits.append(total)
    axes.plot([p.day for p in lines[0].points], deposits, label="net deposits", color="grey", linestyle="--",
              linewidth=1)
    axes.set_ylabel(base)
    axes.set_title("Value: strategy against the benchmarks")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    _save(plt, figure, path)


def _plot_drawdown(lines: list[Line], path: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 3.5), dpi=100)
    for line in lines:
        days, drawdowns = _drawdowns(line)
        axes.plot(days, [100 * d for d in drawdowns], label=line.name, linewidth=1)
    axes.set_ylabel("% below the peak")
    axes.set_title("Drawdown of the time-weighted growth (deposits left out)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    _save(plt, figure, path)


def _drawdowns(line: Line) -> tuple[list[date], list[float]]:
    index = performance.growth_index(line.points)
    peak, days, drawdowns = 0.0, [], []
    for day, level in index:
        peak = max(peak, level)
        days.append(day)
        drawdowns.append(level / peak - 1 if peak > 0 else 0.0)
    return days, drawdowns


def preload() -> None:
    """Import the libraries the report uses (skfolio's measures, matplotlib's Agg pyplot), e.g.
    in a background thread while the replay runs, so the close-out does not wait for them."""
    from skfolio import measures  # noqa: F401, PLC0415 - as performance.risk imports it

    _pyplot()


def _pyplot():
    import matplotlib  # noqa: PLC0415 - heavy; only the report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(plt, figure, path: Path) -> None:
    import matplotlib.dates as mdates  # noqa: PLC0415

    for axes in figure.axes:
        locator = mdates.AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})  # no version stamp: the same run gives the same file
    plt.close(figure)


def _write_trades(run: BacktestRun, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["executed_at", "side", "quantity", "symbol", "price", "currency", "commission",
                         "client_order_id"])
        for fill in run.fills:
            writer.writerow([fill.executed_at.isoformat(), fill.side, fill.quantity, fill.symbol, f"{fill.price:.6f}",
                             fill.currency, f"{fill.commission:.6f}", fill.client_order_id])
