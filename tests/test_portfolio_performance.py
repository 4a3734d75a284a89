"""Performance (issue 12 item 6) equals a hand-worked computation on a known snapshot series
with a deposit in it: deposits are not returns.

The series (values in EUR, a 500 deposit on 2024-07-01, booked before that day's snapshot):
    2024-01-01  1000
    2024-04-01  1100   r = 1100 / 1000 - 1            =  0.10
    2024-07-01  1600   r = (1600 - 500) / 1100 - 1    =  0.00   (not +45%: the deposit is no return)
    2024-10-01  1440   r = 1440 / 1600 - 1            = -0.10
    2025-01-01  1512   r = 1512 / 1440 - 1            =  0.05
TWR = 1.1 * 1.0 * 0.9 * 1.05 - 1 = 0.0395
mean r = 0.0125; sample std = sqrt(((.0875)^2 + (.0125)^2 + (.1125)^2 + (.0375)^2) / 3) = 0.0853912564
volatility = 0.0853912564 * sqrt(252) = 1.3555441712; Sharpe = 0.0125 / 0.0853912564 * sqrt(252) = 2.3237900077
downside deviation = sqrt(0.1^2 / 4) = 0.05; Sortino = 0.0125 / 0.05 * sqrt(252) = 3.9686269666
max drawdown: index 1.1, 1.1, 0.99, 1.0395 -> 0.99 / 1.1 - 1 = -0.10
CAGR = 1.0395^(365.25 / 366) - 1 = 0.0394174827; Calmar = 0.0394174827 / 0.10 = 0.394174827
XIRR of -1000 (day 0), -500 (day 182), +1512 (day 366): 0.0095677566 a year
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest

from services.portfolio import performance
from services.portfolio.engine import BrokerState
from services.portfolio.positions import FillRecord
from services.portfolio.valuation import Holding
from tests.portfolio_fixtures import FakePeers, portfolio_engine

DAYS = [date(2024, 1, 1), date(2024, 4, 1), date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)]
VALUES = [1000.0, 1100.0, 1600.0, 1440.0, 1512.0]
FLOWS = [0.0, 0.0, 500.0, 0.0, 0.0]
EXPECTED = {
    "time_weighted_return": 0.0395, "volatility": 1.3555441712, "sharpe": 2.3237900077, "sortino": 3.9686269666,
    "max_drawdown": -0.10, "cagr": 0.0394174827, "calmar": 0.394174827, "money_weighted_return": 0.0095677566,
}


def points():
    return [performance.Point(d, v, f) for d, v, f in zip(DAYS, VALUES, FLOWS, strict=True)]


def test_daily_returns_leave_the_deposit_out():
    returns = [r for _, r in performance.daily_returns(points())]
    assert returns == pytest.approx([0.10, 0.0, -0.10, 0.05], abs=1e-12)


def test_the_pure_figures_equal_the_hand_worked_ones():
    series = points()
    returns = [r for _, r in performance.daily_returns(series)]
    twr = performance.time_weighted_return(returns)
    risk = performance.risk(returns)
    cagr = performance.cagr(twr, DAYS[0], DAYS[-1])
    got = {"time_weighted_return": twr, "volatility": risk.volatility, "sharpe": risk.sharpe,
           "sortino": risk.sortino, "max_drawdown": risk.max_drawdown, "cagr": cagr,
           "calmar": performance.calmar(cagr, risk.max_drawdown),
           "money_weighted_return": performance.money_weighted_return(series)}
    assert got == pytest.approx(EXPECTED, rel=1e-8)


def test_the_service_reports_the_same_from_its_snapshots_and_cash_flows(tmp_path):
    """The same series as an account: 1000 EUR deposited and spent on 10 SAP.DE at 100 on the
    first day; SAP.DE at 100, 110, 110, 94, 101.2; the 500 EUR deposit stays cash. Snapshots and
    the cash flows the engine booked give the hand-worked figures, for the account and for core
    (which holds everything here)."""
    peers = FakePeers(prices={"SAP.DE": 100.0})
    engine, _, db = portfolio_engine(tmp_path, peers)
    try:
        for day, price in zip(DAYS, [100.0, 110.0, 110.0, 94.0, 101.2], strict=True):
            close = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=22)
            fills, cash = [], 0.0 if day < DAYS[2] else 500.0
            if day == DAYS[0]:
                engine.record_deposit(1000.0, "EUR", "opening", close - timedelta(hours=1))
                fills = [FillRecord("T-1", "SAP.DE", "BUY", 10, 100.0, "EUR", 0.0, close - timedelta(minutes=30))]
            if day == DAYS[2]:
                engine.record_deposit(500.0, "EUR", "july", close - timedelta(hours=12))
            peers.prices["SAP.DE"] = price
            result = engine.apply_broker_state(BrokerState([Holding("SAP.DE", 10, 100.0, "EUR")], {"EUR": cash},
                                                           close, fills, [], None), close)
            assert not result.cash_differences and not result.position_differences
            engine.take_snapshot(close)
        result = engine.performance(None, None, "")
        assert {k: getattr(result, k) for k in EXPECTED} == pytest.approx(EXPECTED, rel=1e-8)
        assert (result.days, result.start, result.end) == (4, "2024-01-01", "2025-01-01")
        assert (result.net_deposits_base, result.start_value_base, result.end_value_base) == (
            500.0, 1000.0, pytest.approx(1512.0))
        partial = engine.performance(DAYS[1], DAYS[3], "")  # the range narrows the series
        assert partial.time_weighted_return == pytest.approx(1.0 * 0.9 - 1)
        core = engine.performance(None, None, "core")
        assert core.time_weighted_return == pytest.approx(0.0395)
        assert core.net_deposits_base == pytest.approx(500.0)
        assert result.attribution.country == pytest.approx(
            {"Germany": 0.10 + 0.0 + 1100 / 1600 * (94 / 110 - 1) + 940 / 1440 * (101.2 / 94 - 1)})
    finally:
        db.close()


def test_one_snapshot_has_no_returns_and_says_so(tmp_path):
    engine, _, db = portfolio_engine(tmp_path, FakePeers(prices={}))
    try:
        now = datetime(2024, 1, 2, 22, tzinfo=UTC)
        engine.apply_broker_state(BrokerState([], {"EUR": 100.0}, now, [], [], None), now)
        engine.take_snapshot(now)
        result = engine.performance(None, None, "")
        assert result.time_weighted_return is None and result.cagr is None and result.sharpe is None
        assert any("fewer than two snapshots" in n for n in result.notes)
    finally:
        db.close()


def test_attribution_by_country_and_industry_by_hand():
    """Day 1: A (US) 400 of 1000 rises 10% -> +0.04; B (DE) 100 of 1000 falls 5% -> -0.005.
    Day 2: A unchanged; B sold (no return from the snapshots: left out)."""
    d0, d1, d2 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)
    a, b = (lambda v: performance.HeldValue(10, v, "US", "Tech")), (lambda v: performance.HeldValue(5, v, "DE", "Bank"))
    held = {d0: {"A": a(400.0), "B": b(100.0)}, d1: {"A": a(440.0), "B": b(95.0)}, d2: {"A": a(440.0)}}
    result = performance.attribution([d0, d1, d2], {d0: 1000.0, d1: 1035.0, d2: 1040.0}, held)
    assert result.country == pytest.approx({"US": 0.04, "DE": -0.005})
    assert result.industry == pytest.approx({"Tech": 0.04, "Bank": -0.005})
    assert result.days == 2 and result.annualized(0.04) == pytest.approx(1.04 ** 126 - 1)


def test_trade_metrics_by_hand():
    """SELLs realising +100, -50, +30, -20, +40 (returns 10%, -5%, 3%, -2%, 4%) from 1000 over 90 days:
    win rate 3/5; PF 170/70; Sharpe (0.02 - 0.03/252) / 0.0578792 = 0.3434905; Sortino
    0.02 / std(-5%, -2%) = 0.02 / 0.0212132 = 0.9428090; max drawdown 50/1100 on 1000, 1100,
    1050, 1080, 1060, 1100; annualised 1.1^(365/90) - 1 = 0.4718730, Calmar 10.3812057;
    composite 0.3*0.3434905 + 0.3*0.9428090 + 0.2*1.4285714 + 0.1*0.6 + 0.1*10.3812057 = 1.7697247."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    sells = [performance.Sell(start + timedelta(days=i), pnl, pnl / 1000) for i, pnl in
             enumerate([100.0, -50.0, 30.0, -20.0, 40.0])]
    metrics = performance.trade_metrics(sells, 1000.0, 90)
    assert (metrics.sells, metrics.wins, metrics.losses) == (5, 3, 2)
    assert metrics.win_rate == pytest.approx(0.6) and metrics.profit_factor == pytest.approx(170 / 70)
    assert metrics.sharpe == pytest.approx(0.3434905406, rel=1e-8)
    assert metrics.sortino == pytest.approx(0.9428090416, rel=1e-8)
    assert metrics.max_drawdown == pytest.approx(50 / 1100)
    assert metrics.calmar == pytest.approx(10.3812056696, rel=1e-8)
    assert metrics.composite_score == pytest.approx(1.7697247273, rel=1e-8)
    few = performance.trade_metrics(sells[:4], 1000.0, 90)
    assert few.composite_score is None and few.win_rate is None  # fewer than 5: not scored, not 0


def test_a_profit_factor_without_losses_is_infinite_and_capped_in_the_composite():
    start = datetime(2024, 1, 1, tzinfo=UTC)
    sells = [performance.Sell(start + timedelta(days=i), 10.0, 0.01 * (i + 1)) for i in range(5)]
    metrics = performance.trade_metrics(sells, 1000.0, 90)
    assert math.isinf(metrics.profit_factor) and math.isfinite(metrics.composite_score)


def test_xirr_without_a_sign_change_is_unknown():
    assert performance.xirr([(date(2024, 1, 1), 100.0), (date(2025, 1, 1), 50.0)]) is None
    assert performance.xirr([(date(2025, 1, 1), -100.0), (date(2026, 1, 1), 110.0)]) == pytest.approx(0.10, rel=1e-9)
