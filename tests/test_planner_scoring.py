"""Security scoring (issue 13 item 2): every curve of planner.md section 1 at its breakpoints
and on both sides of each, the group weights, sell scoring, windfall, the portfolio and
end-state scores; property tests that every score stays in range for any input and that
missing inputs give the documented neutral values (decisions.md rule 2)."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.planner.scoring import (
    diversification,
    dividends,
    fundamentals,
    long_term,
    opinion,
    opportunity,
    sell,
    short_term,
    technicals,
    windfall,
)
from services.planner.scoring.end_state import (
    END_STATE_WEIGHTS,
    Outlook,
    Universe,
    end_state_score_reference,
    end_state_scores,
    outlook,
    portfolio_score_reference,
    portfolio_scores,
    promise_sortino_score,
    total_return_score,
    volatility_score,
)
from services.planner.scoring.inputs import Fundamentals, Holding, Metrics, PortfolioContext
from services.planner.scoring.security import GROUP_WEIGHTS, NotScored, SecurityInput, SecurityScore, score_security

NAN, INF = math.nan, math.inf
MISSING = [None, NAN, INF, -INF]
TODAY = date(2020, 6, 30)


def bell(value, target, below, above):
    sigma = below if value < target else above
    return 0.15 + 0.85 * math.exp(-((value - target) ** 2) / (2 * sigma ** 2))


def check(curve, table):
    for args, expected in table:
        args = args if isinstance(args, tuple) else (args,)
        assert curve(*args) == pytest.approx(expected, abs=1e-9), f"{curve.__name__}{args}"


# --- long-term ---

def test_cagr_bell_curve():
    check(long_term.cagr_score, [
        *[(m, 0.5) for m in MISSING], (-0.05, 0.15), (0.0, 0.15), (1e-9, bell(1e-9, 0.11, 0.06, 0.10)),
        (0.05, 0.15 + 0.85 * math.exp(-0.5)), (0.10, bell(0.10, 0.11, 0.06, 0.10)), (0.11, 1.0),
        (0.12, bell(0.12, 0.11, 0.06, 0.10)), (0.21, 0.15 + 0.85 * math.exp(-0.5)),
    ])
    # the two sides of the target use different widths: 0.06 below, 0.10 above
    assert long_term.cagr_score(0.05) < long_term.cagr_score(0.17)


def test_sharpe_curve():
    check(long_term.sharpe_score, [
        *[(m, 0.5) for m in MISSING], (-0.01, 0.0), (0.0, 0.0), (0.25, 0.2), (0.49, 0.392), (0.5, 0.4),
        (0.51, 0.406), (0.99, 0.694), (1.0, 0.7), (1.01, 0.703), (1.99, 0.997), (2.0, 1.0), (3.0, 1.0),
    ])


def test_sortino_curve():
    check(long_term.sortino_score, [
        *[(m, 0.5) for m in MISSING], (-0.01, 0.0), (0.0, 0.0), (0.49, 0.392), (0.5, 0.4), (0.51, 0.404),
        (0.99, 0.596), (1.0, 0.6), (1.01, 0.604), (1.49, 0.796), (1.5, 0.8), (1.51, 0.804), (1.99, 0.996),
        (2.0, 1.0), (5.0, 1.0),
    ])


# --- fundamentals ---

def test_margin_curve():
    check(fundamentals.margin_score, [
        *[(m, 0.5) for m in MISSING], (-0.3, 0.0), (-0.25, 0.0), (-0.24, 0.02), (-0.01, 0.48), (0.0, 0.5),
        (0.01, 0.525), (0.19, 0.975), (0.2, 1.0), (0.21, 1.0),
    ])


def test_debt_to_equity_curve():
    check(fundamentals.debt_to_equity_score, [
        *[(m, 0.5) for m in MISSING], (-0.1, 0.0), (0.0, 1.0), (0.5, 0.75), (1.99, 0.005), (2.0, 0.0),
        (2.01, 0.0), (7.0, 0.0),
    ])


def test_current_ratio_curve():
    check(fundamentals.current_ratio_score, [
        *[(m, 0.5) for m in MISSING], (0.0, 0.0), (1.0, 0.5), (1.99, 0.995), (2.0, 1.0), (2.01, 1.0), (3.5, 1.0),
    ])


def test_financial_strength_weights_and_no_fundamentals_is_neutral():
    assert fundamentals.financial_strength(Fundamentals()) == pytest.approx(0.5)
    facts = Fundamentals(profit_margin=0.2, debt_to_equity=0.5, current_ratio=1.0)
    assert fundamentals.financial_strength(facts) == pytest.approx(0.4 * 1.0 + 0.3 * 0.75 + 0.3 * 0.5)


def test_consistency_of_five_and_ten_year_cagr():
    check(fundamentals.consistency_score, [
        ((0.1, None), 0.6), ((0.1, NAN), 0.6), ((None, 0.1), 0.5), ((0.0, 0.0), 1.0), ((0.0199, 0.0), 1.0),
        ((0.02, 0.0), 0.8), ((0.0499, 0.0), 0.8), ((0.05, 0.0), 0.8), ((0.0501, 0.0), 0.7996), ((0.0, 0.1), 0.6),
        ((0.15, 0.0), 0.4), ((0.0, 0.3), 0.4),
    ])


# --- opportunity ---

def test_below_52_week_high_curve():
    check(opportunity.below_high_score, [
        *[(m, 0.5) for m in MISSING], (-0.05, 0.2), (0.0, 0.2), (0.05, 0.35), (0.099, 0.497), (0.1, 0.5),
        (0.101, 0.503), (0.199, 0.797), (0.2, 0.8), (0.201, 0.802), (0.299, 0.998), (0.3, 1.0), (0.5, 1.0),
    ])


def test_pe_curve_against_the_market_average_of_22():
    def pe(d):  # the P/E at relative distance d from 22
        return 22 * (1 + d)

    check(opportunity.pe_score, [
        *[((m, None), 0.5) for m in MISSING], ((-5.0, None), 0.3), ((0.0, 12.0), 0.3),
        ((pe(0.3), None), 0.2), ((pe(0.21), None), 0.2), ((pe(0.2), None), 0.2), ((pe(0.19), None), 0.215),
        ((pe(0.1), None), 0.35), ((pe(0.01), None), 0.485), ((pe(0.0), None), 0.5), ((pe(-0.01), None), 0.52),
        ((pe(-0.05), None), 0.6), ((pe(-0.099), None), 0.698), ((pe(-0.1), None), 0.7),
        ((pe(-0.101), None), 0.703), ((pe(-0.15), None), 0.85), ((pe(-0.199), None), 0.997),
        ((pe(-0.2), None), 1.0), ((pe(-0.201), None), 1.0), ((pe(-0.5), None), 1.0),
        # forward P/E: averaged in when positive, ignored otherwise
        ((20.0, 24.0), 0.5), ((20.0, -5.0), 0.5 + 2 * (1 - 20 / 22)), ((20.0, None), 0.5 + 2 * (1 - 20 / 22)),
    ])


def test_opportunity_is_neutral_with_fewer_than_50_days():
    metrics = Metrics(daily_bars=49, monthly_bars=24, distance_from_52w_high=0.5)
    assert opportunity.score(metrics, Fundamentals(trailing_pe=10)).score == 0.5
    assert opportunity.score(Metrics(daily_bars=50, distance_from_52w_high=0.5), Fundamentals()).score == 0.75


# --- dividends ---

def test_yield_curve():
    check(dividends.yield_score, [
        *[(m, 0.5) for m in MISSING], (-0.01, 0.3), (0.0, 0.3), (0.005, 0.35), (0.0099, 0.399), (0.01, 0.4),
        (0.0101, 0.4015), (0.0299, 0.6985), (0.03, 0.7), (0.0301, 0.701), (0.0599, 0.999), (0.06, 1.0),
        (0.1, 1.0),
    ])


def test_payout_curve():
    check(dividends.payout_score, [
        *[(m, 0.5) for m in MISSING], (-0.6, 0.0), (0.0, 0.5), (0.15, 0.75), (0.2999, 0.5 + 0.2999 / 0.6),
        (0.3, 1.0), (0.45, 1.0), (0.6, 1.0), (0.6001, 0.99985), (0.7, 0.85), (0.8, 0.7), (0.8001, 0.4),
        (1.2, 0.4),
    ])


def test_dividend_growth_curve():
    check(dividends.growth_score, [*[(m, 0.5) for m in MISSING], (0.0, 0.5), (0.05, 0.75), (0.0999, 0.9995),
                                   (0.1, 1.0), (0.2, 1.0)])


def test_dividend_group_weights():
    facts = Fundamentals(dividend_yield=0.03, payout_ratio=0.45, five_year_avg_dividend_yield=0.05)
    result = dividends.score(facts)
    assert result.score == pytest.approx(round(0.7 * 0.7 + 0.3 * (0.5 * 1.0 + 0.5 * 0.75), 3))
    assert dividends.score(Fundamentals()).score == 0.5


# --- short-term ---

def test_momentum_blend():
    assert short_term.momentum(0.1, 0.2) == pytest.approx(0.14)
    assert short_term.momentum(0.1, None) == 0.1
    assert short_term.momentum(None, 0.2) is None


def test_momentum_curve():
    check(short_term.momentum_score, [
        *[(m, 0.5) for m in MISSING], (-0.3, 0.2), (-0.1001, 0.2), (-0.1, 0.5), (-0.09, 0.51), (-0.05, 0.55),
        (-0.0001, 0.5999), (0.0, 0.6), (0.025, 0.8), (0.0499, 0.9992), (0.05, 1.0), (0.1, 1.0), (0.15, 1.0),
        (0.1501, 0.8 + 0.1499 * 4 / 3), (0.3, 0.8), (0.3001, 0.7998), (0.45, 0.5), (0.8, 0.5),
    ])


def test_drawdown_curve():
    check(short_term.drawdown_score, [
        *[(m, 0.5) for m in MISSING], (0.0, 1.0), (-0.1, 1.0), (-0.1001, 0.9998), (-0.15, 0.9), (-0.2, 0.8),
        (-0.2001, 0.7998), (-0.25, 0.7), (-0.3, 0.6), (-0.3001, 0.5998), (-0.4, 0.4), (-0.5, 0.2),
        (-0.5001, 0.1999), (-0.6, 0.1), (-0.7, 0.0), (-1.0, 0.0), (0.15, 0.9),
    ])


# --- technicals ---

def test_rsi_curve():
    check(technicals.rsi_score, [*[(m, 0.5) for m in MISSING], (10.0, 1.0), (29.9, 1.0), (30.0, 1.0),
                                 (30.1, 0.9975), (50.0, 0.5), (69.9, 0.0025), (70.0, 0.0), (70.1, 0.0)])


def test_bollinger_curve():
    check(technicals.bollinger_score, [*[(m, 0.5) for m in MISSING], (-0.2, 1.0), (0.0, 1.0), (0.3, 0.7),
                                       (1.0, 0.0), (1.5, 0.0)])


def test_ema_curve():
    check(technicals.ema_score, [
        *[(m, 0.5) for m in MISSING], (0.2, 0.2), (0.1, 0.2), (0.0999, 0.2003), (0.05, 0.35), (0.0001, 0.4997),
        (0.0, 0.5), (-0.0001, 0.5004), (-0.0499, 0.6996), (-0.05, 0.7), (-0.0501, 0.7006), (-0.0999, 0.9994),
        (-0.1, 1.0), (-0.1001, 1.0), (-0.3, 1.0),
    ])


def test_technicals_are_neutral_with_fewer_than_20_closes():
    assert technicals.score(Metrics(daily_bars=19, rsi_14=10)).score == 0.5
    assert technicals.score(Metrics(daily_bars=20, rsi_14=10)).score == round(0.35 * 1 + 0.65 * 0.5, 3)


# --- opinion ---

def test_recommendation_keys():
    check(opinion.recommendation_score, [
        ("strong_buy", 1.0), ("strongBuy", 1.0), ("STRONG_BUY", 1.0), ("Strong Buy", 1.0), ("buy", 0.8),
        ("hold", 0.5), ("sell", 0.2), ("strong_sell", 0.0), ("strongSell", 0.0), ("underperform", 0.5),
        ("none", 0.5), ("", 0.5), (None, 0.5), (NAN, 0.5),
    ])


def test_price_target_curve():
    check(opinion.target_score, [
        ((None, 100.0), 0.5), ((110.0, None), 0.5), ((110.0, 0.0), 0.5), ((NAN, 100.0), 0.5), ((0.0, 100.0), 0.5),
        ((70.0, 100.0), 0.0), ((80.0, 100.0), 0.0), ((81.0, 100.0), 0.025), ((90.0, 100.0), 0.25),
        ((100.0, 100.0), 0.5), ((110.0, 100.0), 0.75), ((119.0, 100.0), 0.975), ((120.0, 100.0), 1.0),
        ((130.0, 100.0), 1.0),
    ])


def test_opinion_weights():
    assert opinion.score(Fundamentals(recommendation_key="buy", target_mean_price=110), 100).score == \
        pytest.approx(0.6 * 0.8 + 0.4 * 0.75)


# --- diversification ---

def context(**extra) -> PortfolioContext:
    base = dict(total_value_base=10_000.0, country_of={"A": "United States", "B": "Germany"},
                industry_of={"A": "Software", "B": "Banks"}, country_to_group={"United States": "US", "Germany": "EU"},
                industry_to_group={"Software": "TECH", "Banks": "FIN"}, country_targets={"US": 0.5, "EU": 1.0},
                industry_targets={"TECH": 0.25, "FIN": -2.0})
    return PortfolioContext(**{**base, **extra})


def test_group_target_curve():
    check(diversification.target_score, [(None, 0.5), (NAN, 0.5), (0.0, 0.5), (0.5, 0.7), (1.0, 0.9), (1.5, 0.9),
                                         (-0.5, 0.3), (-1.0, 0.1), (-2.0, 0.1)])


def test_country_and_industry_use_the_groups_targets():
    ctx = context()
    assert diversification.country_score("United States", ctx) == pytest.approx(0.7)
    assert diversification.country_score("France", ctx) == 0.5  # OTHER: no target
    assert diversification.industry_score("Software, Banks", ctx) == pytest.approx((0.6 + 0.1) / 2)
    assert diversification.industry_score("", ctx) == 0.5


def test_averaging_potential_curve():
    check(diversification.averaging_potential_score, [
        ((1.0, 0.0), 0.3), ((1.0, 0.2999), 0.3), ((1.0, 0.3), 0.5), ((1.0, 0.4), 0.6), ((1.0, 0.4999), 0.6999),
        ((1.0, 0.5), 0.7), ((1.0, 0.6), 0.76), ((1.0, 1.0), 1.0),
    ])


def holding(symbol="A", quantity=100, cost=100.0, price=100.0, value=None, **extra) -> Holding:
    value = quantity * price if value is None else value
    return Holding(symbol, quantity, cost, price, value, **extra)


def test_averaging_bonus_below_cost_and_concentration_penalty():
    def averaging(price, value):
        ctx = context(holdings={"A": holding(price=price, value=value)})
        return diversification.averaging_score("A", 1.0, 0.5, ctx)

    assert diversification.averaging_score("A", 1.0, 0.5, context()) == 0.5        # not held
    assert averaging(100.0, 300.0) == pytest.approx(0.7)                          # at cost
    assert averaging(90.0, 300.0) == pytest.approx(0.9)                           # 10% loss: +0.2
    assert averaging(80.0, 300.0) == pytest.approx(1.0)                           # 20% loss: +0.4, cap 1
    assert averaging(79.0, 300.0) == pytest.approx(0.7)                           # deeper than 20%: no bonus
    assert averaging(100.0, 500.0) == pytest.approx(0.7)                          # 5%: no penalty
    assert averaging(100.0, 600.0) == pytest.approx(0.7 * 0.9)                    # above 5%
    assert averaging(100.0, 1000.0) == pytest.approx(0.7 * 0.9)                   # 10%
    assert averaging(100.0, 1100.0) == pytest.approx(0.7 * 0.7)                   # above 10%


def test_diversification_without_context_or_country_is_neutral():
    assert diversification.score("A", "United States", "Software", 0.9, 0.9, None).score == 0.5
    assert diversification.score("A", "", "Software", 0.9, 0.9, context()).score == 0.5


# --- the security score ---

FULL = Metrics(daily_bars=400, monthly_bars=60, price=100.0, cagr_5y=0.11, cagr_10y=0.10, sharpe=2.0, sortino=2.0,
               volatility_annual=0.2, volatility_60d=0.2, volatility_1y=0.2, max_drawdown_1y=-0.05,
               current_drawdown_1y=-0.02, days_in_drawdown_1y=3, momentum_30d=0.1, momentum_90d=0.1,
               distance_from_52w_high=0.35, rsi_14=20.0, bb_position=0.0, distance_from_ema_200=-0.2)


def test_group_weights_are_the_originals_and_sum_to_one():
    assert GROUP_WEIGHTS == {"long_term": 0.20, "fundamentals": 0.15, "opportunity": 0.15, "dividends": 0.12,
                             "short_term": 0.10, "technicals": 0.10, "opinion": 0.10, "diversification": 0.08}
    assert sum(GROUP_WEIGHTS.values()) == pytest.approx(1.0)


def test_total_is_the_weighted_sum_and_quality_the_planners_score():
    facts = Fundamentals(trailing_pe=10.0, profit_margin=0.3, debt_to_equity=0.0, current_ratio=2.5,
                         dividend_yield=0.07, payout_ratio=0.4, five_year_avg_dividend_yield=0.2,
                         recommendation_key="strong_buy", target_mean_price=130.0)
    result = score_security(SecurityInput("A", FULL, facts, "United States", "Software"), context())
    assert isinstance(result, SecurityScore)
    assert result.groups["long_term"] == 1.0 and result.groups["opportunity"] == 1.0
    assert result.groups["fundamentals"] == pytest.approx(0.6 * 1.0 + 0.4 * 1.0)
    assert result.quality == pytest.approx((result.groups["long_term"] + result.groups["fundamentals"]) / 2)
    assert result.total == pytest.approx(round(sum(result.groups[g] * w for g, w in GROUP_WEIGHTS.items()), 3))
    assert set(result.components) == set(GROUP_WEIGHTS)


def test_missing_everything_is_neutral_not_zero():
    metrics = Metrics(daily_bars=50, monthly_bars=12)
    result = score_security(SecurityInput("A", metrics))
    assert result.groups == {group: 0.5 for group in GROUP_WEIGHTS}
    assert result.total == 0.5 and result.quality == 0.5


def test_the_bundled_sample_case_no_fundamentals():
    """The sample has prices only: every fundamentals-based part is neutral, never 0."""
    result = score_security(SecurityInput("A", FULL))
    assert result.components["fundamentals"]["financial_strength"] == 0.5
    assert result.components["opportunity"]["pe"] == 0.5
    assert result.groups["dividends"] == 0.5 and result.groups["opinion"] == 0.5


@pytest.mark.parametrize("daily, monthly", [(49, 12), (50, 11), (0, 0)])
def test_short_history_is_not_scored(daily, monthly):
    result = score_security(SecurityInput("A", Metrics(daily_bars=daily, monthly_bars=monthly, cagr_5y=0.1)))
    assert isinstance(result, NotScored) and result.reason == "insufficient_history"
    assert f"{daily} valid daily bars over {monthly} months" in result.detail


def test_metrics_from_the_data_services_values():
    metrics = Metrics.from_values({"PRICE": 10.0, "CAGR_5Y": NAN, "RSI_14": 40.0, "MAX_DRAWDOWN_1Y": -0.1}, 300, 20)
    assert (metrics.price, metrics.cagr_5y, metrics.rsi_14, metrics.max_drawdown_1y) == (10.0, None, 40.0, -0.1)
    assert (metrics.daily_bars, metrics.monthly_bars) == (300, 20)


# --- sell scoring ---

def sell_holding(**extra) -> Holding:
    base = dict(first_buy=TODAY - timedelta(days=400), last_buy=TODAY - timedelta(days=400), dates_known=True)
    return holding(**{**base, **extra})


@pytest.mark.parametrize("extra, rule", [
    (dict(allow_sell=False), "allow_sell"),
    (dict(dates_known=False), "holding_rules"),
    (dict(last_buy=TODAY - timedelta(days=89)), "min_hold"),
    (dict(last_sell=TODAY - timedelta(days=179)), "sell_cooldown"),
    (dict(price=79.0), "max_sell_loss"),
    (dict(cost=0.0), "max_sell_loss"),
])
def test_hard_blocks(extra, rule):
    assert sell.hard_block(sell_holding(**extra), TODAY)[0] == rule
    result = sell.score_sell(sell_holding(**extra), FULL, "United States", "Software", context(), TODAY)
    assert not result.eligible and result.block_rule == rule and result.quantity == 0 and result.total == 0


@pytest.mark.parametrize("extra", [
    dict(last_buy=TODAY - timedelta(days=90)), dict(last_sell=TODAY - timedelta(days=180)), dict(price=80.0),
    dict(first_buy=None, last_buy=None, last_sell=None),
])
def test_at_the_edge_of_each_block_selling_is_allowed(extra):
    assert sell.hard_block(sell_holding(**extra), TODAY) is None


def test_underperformance_curve():
    check(sell.underperformance_score, [
        ((0.1, 0), 0.5), ((-0.25, 365), 0.0), ((-0.1, 365), 0.9), ((-0.0501, 365), 0.9), ((-0.0499, 365), 0.7),
        ((-0.04, 365), 0.7), ((0.0, 365), 0.5), ((0.0799, 365), 0.5), ((0.08, 365), 0.1), ((0.15, 365), 0.1),
        ((0.1501, 365), 0.3), ((0.21, 730), 0.1), ((0.2, 30), 0.3), ((-0.04, 30), 0.7),
    ])


def test_time_held_curve():
    check(sell.time_held_score, [(None, 0.6), (0, 0.0), (89, 0.0), (90, 0.3), (179, 0.3), (180, 0.6), (364, 0.6),
                                 (365, 0.8), (729, 0.8), (730, 1.0), (3000, 1.0)])


def test_concentration_curve():
    check(sell.concentration_score, [(0.0, 0.0), (0.05, 0.5), (0.1, 1.0), (0.1001, 0.1001 / 0.15),
                                     (0.15, 1.0), (0.3, 1.0)])


def test_balance_score():
    ctx = context(holdings={"A": holding(value=2500.0), "B": holding("B", value=1000.0)})
    # US share 0.25 -> 0.5; TECH share 0.25 -> 0.8333; A's share 0.25 -> concentration 1
    assert sell.balance_score("A", "United States", "Software", ctx) == pytest.approx(
        0.5 * 0.5 + 0.3 * (0.25 / 0.3) + 0.2 * 1.0)
    assert sell.balance_score("A", "United States", "", ctx) == pytest.approx(0.25 + 0.3 * 0.5 + 0.2)
    assert sell.balance_score("A", "United States", "", context(total_value_base=0.0)) == 0.5


def test_rate_of_gain_curve():
    check(sell.rate_of_gain_score, [((5.0, 30), 0.5), ((0.51, 365), 1.0), ((0.5, 365), 0.7), ((0.3001, 365), 0.7),
                                    ((0.2999, 365), 0.4), ((0.2001, 365), 0.4), ((0.2, 365), 0.1), ((-0.1, 365), 0.1)])


def test_volatility_spike_and_stretch_curves():
    check(sell.volatility_spike_score, [((None, 1.0), 0.3), ((2.0, 0.0), 0.3), ((2.01, 1.0), 1.0), ((2.0, 1.0), 0.7),
                                        ((1.51, 1.0), 0.7), ((1.5, 1.0), 0.4), ((1.21, 1.0), 0.4), ((1.2, 1.0), 0.1),
                                        ((0.5, 1.0), 0.1)])
    check(sell.stretch_score, [(None, 0.3), (0.31, 1.0), (0.3, 0.7), (0.21, 0.7), (0.2, 0.4), (0.11, 0.4),
                               (0.1, 0.1), (-0.2, 0.1)])


def test_instability_floors_and_missing_technicals():
    calm = Metrics(volatility_60d=0.1, volatility_1y=0.1, distance_from_ema_200=0.0)
    assert sell.instability_score(0.05, 365, calm) == pytest.approx(0.1)
    assert sell.instability_score(0.8, 3650, calm) == pytest.approx(0.1)   # > 75%: floor 0.1
    assert sell.instability_score(1.01, 3650, calm) == pytest.approx(0.2)  # > 100%: floor 0.2
    assert sell.instability_score(0.05, 365, Metrics()) == 0.3


def test_sell_drawdown_curve():
    check(sell.drawdown_score, [((None, 0), 0.3), ((-0.26, 0), 1.0), ((-0.25, 181), 0.9), ((-0.2, 180), 0.7),
                                ((-0.2, 91), 0.7), ((-0.2, 90), 0.5), ((-0.2, None), 0.5), ((-0.15, 300), 0.3),
                                ((-0.11, 0), 0.3), ((-0.1, 0), 0.1), ((0.0, 0), 0.1)])


def test_sell_quantity():
    check(sell.sell_quantity, [
        ((0.0, 100, 1, 50.0), 10), ((0.5, 100, 1, 50.0), 30), ((1.0, 100, 1, 50.0), 50), ((1.0, 10, 5, 50.0), 5),
        ((1.0, 5, 5, 50.0), 0), ((1.0, 2, 1, 500.0), 1), ((0.0, 100, 1, 9.99), 0), ((0.0, 100, 1, 10.0), 10),
        ((1.0, 1, 1, 1000.0), 0),
    ])


def test_a_full_sell_score():
    ctx = context(holdings={"A": sell_holding(value=2500.0, price=100.0, cost=90.0)})
    result = sell.score_sell(sell_holding(value=2500.0, price=100.0, cost=90.0), FULL, "United States", "Software",
                             ctx, TODAY)
    assert result.eligible and result.block_rule == ""
    assert set(result.components) == set(sell.WEIGHTS)
    assert result.total == pytest.approx(round(sum(result.components[k] * w for k, w in sell.WEIGHTS.items()), 3),
                                         abs=2e-3)
    assert result.quantity == sell.sell_quantity(result.total, 100, 1, 25.0)
    assert result.value_base == pytest.approx(result.quantity * 25.0)


# --- windfall ---

def test_excess_gain():
    check(windfall.excess_gain, [
        ((0.5, 730, 0.1, None), 0.5 - 0.21), ((0.5, 730, None, 0.05), 0.5 - 0.1025), ((0.5, 730, None, None), 0.29),
        ((0.5, None, 0.2, None), 0.3), ((0.5, 10, 0.1, None), 0.5 - (1.1 ** 0.1 - 1)), ((0.5, 730, NAN, None), 0.29),
    ])


def test_windfall_curve():
    check(windfall.windfall_score, [(None, 0.0), (-0.1, 0.0), (0.0, 0.0), (0.1, 0.2), (0.2499, 0.4998), (0.25, 0.5),
                                    (0.2501, 0.5002), (0.4999, 0.9998), (0.5, 1.0), (0.8, 1.0)])


def test_profit_taking_fraction():
    check(windfall.profit_taking_fraction, [
        ((1.0, 0.31), 0.5), ((1.0, 0.3), 0.3), ((2.0, 0.0), 0.3), ((0.99, 0.5), 0.4), ((0.9, 0.49), 0.2),
        ((0.5, 0.25), 0.2), ((0.5, 0.2499), 0.0), ((None, 0.5), 0.0), ((0.5, None), 0.0),
    ])


# --- portfolio and end-state scores ---

def test_end_state_component_curves():
    check(volatility_score, [*[(m, 0.5) for m in MISSING], (0.0, 0.5), (0.1, 1.0), (0.15, 1.0), (0.1501, 0.9997),
                             (0.2, 0.85), (0.25, 0.7), (0.2501, 0.7 - 0.4 / 0.15 * 0.0001), (0.4, 0.3),
                             (0.4001, 0.2999), (0.5, 0.2), (0.6, 0.1), (1.0, 0.1)])
    check(promise_sortino_score, [(None, 0.5), (-1.0, 0.0), (0.0, 0.0), (0.5, 0.3), (0.999, 0.5994), (1.0, 0.6),
                                  (1.5, 0.8), (2.0, 1.0)])
    check(total_return_score, [
        ((None, 0.02), 0.5), ((0.10, None), bell(0.10, 0.12, 0.06, 0.12)), ((0.10, 0.02), 1.0),
        ((0.2, 0.04), 0.15 + 0.85 * math.exp(-0.5)), ((0.06, 0.0), 0.15 + 0.85 * math.exp(-0.5)),
        ((-0.05, 0.01), 0.15),
    ])


def test_end_state_weight_sets():
    for name, weights in END_STATE_WEIGHTS.items():
        assert sum(vars(weights).values()) == pytest.approx(1.0), name
    assert vars(END_STATE_WEIGHTS["conservative"]) == dict(total_return=0.25, diversification=0.30, promise=0.20,
                                                            stability=0.20, opinion=0.05)
    assert vars(END_STATE_WEIGHTS["aggressive"]) == dict(total_return=0.45, diversification=0.20, promise=0.25,
                                                          stability=0.05, opinion=0.05)


def test_portfolio_score_by_hand():
    outlooks = {"A": Outlook(dividend_yield=0.03, quality=0.8, country_group="US"),
                "B": Outlook(dividend_yield=None, quality=None, country_group="EU")}
    # total 1000: A 600 (US 0.6 vs 0.5), B 300 (EU 0.3 vs 0.5); mean deviation 0.15 -> 50
    # dividend 30 + 1000·(0.6·0.03 + 0.3·0.02) = 54; quality 100·(0.6·0.8 + 0.3·0.5) = 63
    score = portfolio_score_reference({"A": 600.0, "B": 300.0}, 100.0, outlooks, {"US": 0.5, "EU": 0.5})
    assert score == pytest.approx(0.4 * 50 + 0.3 * 54 + 0.3 * 63)
    # no data anywhere: every part has its documented no-data value
    assert portfolio_score_reference({"A": 1.0}, 0.0, {"A": Outlook()}, {}) == pytest.approx(
        0.4 * 100 * (1 - 0.2 / 0.3) + 0.3 * 50 + 0.3 * 50)
    assert portfolio_score_reference({}, 0.0, outlooks, {}) == 50.0


def test_end_state_by_hand():
    outlooks = {"A": Outlook(total_return=1.0, promise=0.8, stability=0.6, country_group="US")}
    score = end_state_score_reference({"A": 500.0}, 500.0, outlooks, {"US": 0.5})
    diversification = (0.4 * 100 + 0.3 * 50 + 0.3 * 50) / 100
    assert score == pytest.approx(0.35 * 0.5 + 0.25 * diversification + 0.20 * 0.4 + 0.15 * 0.3 + 0.05 * 0.5)
    assert end_state_score_reference({}, 1000.0, outlooks, {}) == 0.5  # no positions
    assert end_state_score_reference({"A": 0.0}, 0.0, outlooks, {}) == 0.5


def test_outlook_of_a_security_without_fundamentals():
    part = outlook(FULL, Fundamentals(), 0.7, "US")
    assert part.total_return == pytest.approx(bell(0.11, 0.12, 0.06, 0.12))
    assert part.promise == pytest.approx(0.35 * 1.0 + 0.25 * 0.5 + 0.25 * 0.5 + 0.15 * 1.0)
    assert part.stability == pytest.approx(0.5 * 0.85 + 0.3 * 1.0 + 0.2 * 1.0)
    assert (part.dividend_yield, part.quality, part.country_group) == (None, 0.7, "US")


# --- properties ---

def numbers():
    return st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                     st.floats(min_value=-5, max_value=5), st.sampled_from([0.0, -0.1, 0.1, 0.3, 1.0, 2.0]))


metrics_strategy = st.builds(
    Metrics, daily_bars=st.integers(0, 10_000), monthly_bars=st.integers(0, 500),
    **{name: numbers() for name in Metrics.__dataclass_fields__ if name not in ("daily_bars", "monthly_bars")})
fundamentals_strategy = st.builds(
    Fundamentals, recommendation_key=st.one_of(st.none(), st.text(max_size=12),
                                               st.sampled_from(["strong_buy", "buy", "hold", "sell", "strongSell"])),
    **{name: numbers() for name in Fundamentals.__dataclass_fields__ if name != "recommendation_key"})
holding_strategy = st.builds(
    Holding, symbol=st.just("A"), quantity=st.integers(0, 10_000), average_cost=numbers(), price=numbers(),
    value_base=numbers(), lot_size=st.integers(1, 100), allow_sell=st.booleans(),
    first_buy=st.one_of(st.none(), st.dates(date(2000, 1, 1), TODAY)),
    last_buy=st.one_of(st.none(), st.dates(date(2000, 1, 1), TODAY)),
    last_sell=st.one_of(st.none(), st.dates(date(2000, 1, 1), TODAY)), dates_known=st.booleans())
context_strategy = st.builds(
    PortfolioContext, total_value_base=numbers(),
    holdings=st.dictionaries(st.sampled_from(["A", "B"]), holding_strategy, max_size=2).map(
        lambda d: {symbol: Holding(symbol, *list(vars(h).values())[1:]) for symbol, h in d.items()}),
    country_of=st.just({"A": "United States", "B": "Germany"}),
    industry_of=st.just({"A": "Software, Banks", "B": ""}),
    country_to_group=st.just({"United States": "US", "Germany": "EU"}),
    industry_to_group=st.just({"Software": "TECH"}),
    country_targets=st.dictionaries(st.sampled_from(["US", "EU", "OTHER"]), numbers(), max_size=3),
    industry_targets=st.dictionaries(st.sampled_from(["TECH", "OTHER"]), numbers(), max_size=2))


def in_unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metrics_strategy, fundamentals_strategy, st.one_of(st.none(), context_strategy),
       st.sampled_from(["United States", "Germany", "", "Japan"]), st.sampled_from(["Software", "", "A, B"]))
def test_every_group_and_total_stays_in_unit_interval(metrics, facts, ctx, country, industry):
    result = score_security(SecurityInput("A", metrics, facts, country, industry), ctx)
    if metrics.daily_bars < 50 or metrics.monthly_bars < 12:
        assert isinstance(result, NotScored)
        return
    assert set(result.groups) == set(GROUP_WEIGHTS)
    assert all(in_unit(v) for v in result.groups.values()), result.groups
    assert all(in_unit(v) for parts in result.components.values() for v in parts.values()), result.components
    assert in_unit(result.total) and in_unit(result.quality)
    part = outlook(metrics, facts, result.quality, "US")
    assert in_unit(part.total_return) and in_unit(part.promise) and in_unit(part.stability)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holding_strategy, metrics_strategy, context_strategy)
def test_sell_scores_stay_in_range_and_never_sell_everything(held, metrics, ctx):
    result = sell.score_sell(held, metrics, "United States", "Software", ctx, TODAY)
    assert in_unit(result.total) and all(in_unit(v) for v in result.components.values())
    assert result.quantity % held.lot_size == 0 and 0 <= result.quantity <= max(0, held.quantity - held.lot_size)
    if sell.hard_block(held, TODAY) is not None:
        assert not result.eligible and result.quantity == 0
    if result.eligible:
        assert held.last_buy is None or (TODAY - held.last_buy).days >= 90
        assert held.last_sell is None or (TODAY - held.last_sell).days >= 180
        assert held.gain is not None and held.gain >= -0.20


@settings(max_examples=200, deadline=None)
@given(numbers(), st.one_of(st.none(), st.integers(0, 20_000)), numbers(), numbers())
def test_windfall_stays_in_range(gain, days, cagr_5y, cagr_10y):
    gain = 0.0 if gain is None or not math.isfinite(gain) else gain
    excess = windfall.excess_gain(gain, days, cagr_5y, cagr_10y)
    assert in_unit(windfall.windfall_score(excess))
    assert windfall.profit_taking_fraction(gain, excess) in (0.0, 0.2, 0.3, 0.4, 0.5)


outlook_strategy = st.builds(
    Outlook, total_return=st.floats(0, 1), promise=st.floats(0, 1), stability=st.floats(0, 1),
    dividend_yield=st.one_of(st.none(), st.floats(0, 0.2)), quality=st.one_of(st.none(), st.floats(0, 1)),
    country_group=st.sampled_from(["US", "EU", "ASIA", "OTHER"]))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(
    st.lists(outlook_strategy, min_size=n, max_size=n),
    st.lists(st.lists(st.one_of(st.just(0.0), st.floats(0, 1e6)), min_size=n, max_size=n), min_size=1, max_size=6),
    st.lists(st.floats(-1e5, 1e6), min_size=1, max_size=1),
    st.dictionaries(st.sampled_from(["US", "EU", "ASIA"]), st.floats(0, 1), max_size=3),
    st.sampled_from(sorted(END_STATE_WEIGHTS)))))
def test_vectorised_scores_equal_the_reference(case):
    parts, rows, (cash,), targets, profile = case
    symbols = [f"S{i}" for i in range(len(parts))]
    outlooks = dict(zip(symbols, parts, strict=True))
    universe = Universe.build(symbols, outlooks, targets)
    values = np.array(rows)
    cash_column = np.full(len(rows), cash)
    vectorised = end_state_scores(values, cash_column, universe, END_STATE_WEIGHTS[profile])
    portfolio = portfolio_scores(values, cash_column, universe)
    for row, end, score in zip(rows, vectorised, portfolio, strict=True):
        positions = dict(zip(symbols, row, strict=True))
        assert end == pytest.approx(end_state_score_reference(positions, cash, outlooks, targets,
                                                              END_STATE_WEIGHTS[profile]), abs=1e-9)
        assert score == pytest.approx(portfolio_score_reference(positions, cash, outlooks, targets), abs=1e-9)
        assert 0.0 <= end <= 1.0 and 0.0 <= score <= 100.0


# component -> (the inputs it reads, its documented value when all of them are missing)
NEUTRAL_WHEN_MISSING = {
    ("long_term", "cagr"): (["cagr_5y"], 0.5), ("long_term", "sortino"): (["sortino"], 0.5),
    ("long_term", "sharpe"): (["sharpe"], 0.5), ("fundamentals", "consistency"): (["cagr_5y"], 0.5),
    ("fundamentals", "financial_strength"): (["profit_margin", "debt_to_equity", "current_ratio"], 0.5),
    ("opportunity", "below_52w_high"): (["distance_from_52w_high"], 0.5), ("opportunity", "pe"): (["trailing_pe"], 0.5),
    ("dividends", "yield"): (["dividend_yield"], 0.5),
    ("dividends", "consistency"): (["payout_ratio", "five_year_avg_dividend_yield"], 0.5),
    ("short_term", "momentum"): (["momentum_30d"], 0.5), ("short_term", "drawdown"): (["max_drawdown_1y"], 0.5),
    ("technicals", "rsi"): (["rsi_14"], 0.5), ("technicals", "bollinger"): (["bb_position"], 0.5),
    ("technicals", "ema"): (["distance_from_ema_200"], 0.5),
    ("opinion", "recommendation"): (["recommendation_key"], 0.5), ("opinion", "target"): (["target_mean_price"], 0.5),
}


def missing(source, name) -> bool:
    value = getattr(source, name)
    return value is None or (not isinstance(value, str) and not math.isfinite(value))


@settings(max_examples=300, deadline=None)
@given(metrics_strategy.filter(lambda m: m.daily_bars >= 50 and m.monthly_bars >= 12), fundamentals_strategy)
def test_missing_inputs_give_the_documented_neutral_value(metrics, facts):
    result = score_security(SecurityInput("A", metrics, facts, "United States", "Software"))
    for (group, component), (inputs, neutral) in NEUTRAL_WHEN_MISSING.items():
        sources = [metrics if hasattr(metrics, name) else facts for name in inputs]
        if all(missing(source, name) for source, name in zip(sources, inputs, strict=True)):
            assert result.components[group][component] == neutral, (group, component)
    assert result.groups["diversification"] == 0.5  # no portfolio context
    if missing(metrics, "cagr_10y") and not missing(metrics, "cagr_5y"):
        assert result.components["fundamentals"]["consistency"] == 0.6


def test_a_holding_valued_below_zero_keeps_the_balance_score_in_range():
    """The case hypothesis found: a holding valued at -1 of a total of 1 gave a share of -1 and
    a balance component of -1.5."""
    bad = Holding(symbol="A", quantity=0, average_cost=None, price=None, value_base=-1.0, lot_size=1,
                  allow_sell=False, first_buy=None, last_buy=None, last_sell=None, dates_known=False)
    ctx = PortfolioContext(total_value_base=1.0, holdings={"A": bad}, country_of={"A": "United States"},
                           industry_of={"A": "Software"}, country_to_group={"United States": "US"},
                           industry_to_group={"Software": "TECH"}, country_targets={}, industry_targets={})
    assert 0.0 <= sell.balance_score("A", "United States", "Software", ctx) <= 1.0
