"""Opportunity calculators on small hand-built books, with the expected steps written out
(issue 14 item 1; planner.md section 2 "Opportunities"), and the eligibility rules they use."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from services.planner.config import preset
from services.planner.eligibility import TradingRules
from services.planner.opportunities import (
    averaging_down,
    caps,
    emergency,
    identify,
    opportunity_buys,
    profit_taking,
    rebalance_buys,
    rebalance_sells,
    weight_based,
)
from services.planner.opportunities.eligibility import HoldingRules, buy_block, holding_rules, sell_block
from tests.holistic_fixtures import DEFAULT, TODAY, book, days_ago, pos, sec, steps


def found(calculate, b):
    return [(a.side, a.symbol, a.quantity, round(a.value_base, 2), round(a.priority, 4), a.category)
            for a in calculate(b, DEFAULT)]


# --- weight-based (from the optimiser's targets) ---

def test_weight_based_buys_and_sells_toward_the_targets():
    """Total 50,000: A targeted 30% (held 0) buys 15,000 = 150 shares at 100; B targeted 20%
    (held 40%) sells 10,000 = 200 shares at 50 (lots of 10); priorities |gap| x 100."""
    b = book([sec("A", 100.0), sec("B", 50.0, lot=10)], [pos("B", 400, 40.0, 50.0)], {"EUR": 30_000.0},
             targets={"A": 0.30, "B": 0.20})
    assert found(weight_based.calculate, b) == [
        ("BUY", "A", 150, 15_000.0, 30.0, "rebalance_buys"),
        ("SELL", "B", 200, 10_000.0, 20.0, "rebalance_sells")]
    assert [a.reason for a in weight_based.calculate(b, DEFAULT)] == [
        "rebalance toward target weight 30.0% (now 0.0%)", "reduce toward target weight 20.0% (now 40.0%)"]


def test_weight_based_buy_is_capped_by_the_spendable_cash_and_below_cost_is_averaging_down():
    """5,000 cash: (5,000 - 2) / 1.002 = 4,988.02 spendable at trading's check -> 49 shares; A
    is held above its price (average cost 120 > 100): averaging_down."""
    b = book([sec("A", 100.0), sec("B", 100.0)], [pos("A", 10, 120.0, 100.0), pos("B", 100, 90.0, 100.0)],
             {"EUR": 5_000.0}, targets={"A": 0.9}, optimised={"A"})  # total 16,000: a gap of 13,400
    assert found(weight_based.calculate, b) == [("BUY", "A", 49, 4_900.0, 83.75, "averaging_down")]


def test_a_held_security_the_optimiser_placed_at_no_weight_is_sold_whole():
    b = book([sec("C", 20.0)], [pos("C", 30, 15.0, 20.0)], {"EUR": 9_400.0}, targets={}, optimised={"C"})
    assert found(weight_based.calculate, b) == [("SELL", "C", 30, 600.0, 6.0, "rebalance_sells")]


def test_a_weight_based_sell_that_keeps_a_lot_is_whole_lots_of_an_odd_lot_holding():
    """B: 25 shares in lots of 10 (12.5% of 10,000), target 0.5%: the gap (1,200 = 24 shares)
    is 20 in lots, which would leave 5, under a lot; keeping a lot sells 10, not 25 - 10 = 15."""
    b = book([sec("B", 50.0, lot=10)], [pos("B", 25, 40.0, 50.0)], {"EUR": 8_750.0}, targets={"B": 0.005})
    assert found(weight_based.calculate, b) == [("SELL", "B", 10, 500.0, 12.0, "rebalance_sells")]


def test_weight_based_leaves_small_gaps_blocked_sides_and_securities_it_did_not_place():
    tiny = book([sec("A", 10.0)], [], {"EUR": 10_000.0}, targets={"A": 0.012})   # 120 EUR < 250
    within = book([sec("A", 10.0)], [], {"EUR": 10_000.0}, targets={"A": 0.009})  # under min_gap 1%
    blocked = book([sec("A", 100.0, buy_block="buy_cooldown: ..."), sec("B", 50.0, sell_block="min_hold: ...")],
                   [pos("B", 400, 40.0, 50.0)], {"EUR": 30_000.0}, targets={"A": 0.3, "B": 0.2})
    unplaced = book([sec("C", 20.0)], [pos("C", 30, 15.0, 20.0)], {"EUR": 9_400.0}, targets={}, optimised=set())
    one_lot = book([sec("C", 20.0, lot=30)], [pos("C", 30, 15.0, 20.0)], {"EUR": 9_400.0}, targets={}, optimised={"C"})
    for b in (tiny, within, blocked, unplaced, one_lot):
        assert weight_based.calculate(b, DEFAULT) == []


# --- profit taking ---

def test_profit_taking_sells_the_windfall_fraction():
    """X: +100% over 400 days with a 10% CAGR: excess 1 - (1.1^(400/365) - 1) = 0.89 -> sell
    50%, priority (1 + 0.5) x 1.2. Z: +45% over 365 days: excess 0.35 -> sell 20%, windfall
    score 0.5 + 2 x 0.10 = 0.7, priority 1.2 x 1.2. Y (+20%) is no windfall; W may not be sold."""
    b = book([sec("X", 100.0, cagr=0.10), sec("Y", 60.0, cagr=0.10), sec("Z", 72.5, cagr=0.10),
              sec("W", 100.0, cagr=0.10, sell_block="min_hold: ...")],
             [pos("X", 100, 50.0, 100.0, bought=400), pos("Y", 100, 50.0, 60.0, bought=400),
              pos("Z", 100, 50.0, 72.5, bought=365), pos("W", 100, 50.0, 100.0)])
    assert found(profit_taking.calculate, b) == [("SELL", "X", 50, 5_000.0, 1.8, "profit_taking"),
                                                 ("SELL", "Z", 20, 1_450.0, 1.44, "profit_taking")]
    assert "windfall" in profit_taking.calculate(b, DEFAULT)[0].tags


def test_profit_taking_is_whole_lots_and_at_least_the_minimum_trade():
    b = book([sec("X", 100.0, cagr=0.10, lot=30), sec("V", 4.0, cagr=0.10)],
             [pos("X", 100, 50.0, 100.0), pos("V", 100, 2.0, 4.0)])  # V: 50 x 4 = 200 EUR < 250
    assert found(profit_taking.calculate, b) == [("SELL", "X", 30, 3_000.0, 1.8, "profit_taking")]


# --- rebalancing by country group ---

def test_rebalance_sells_trim_an_overweight_country_group():
    """US is 60% against a 30% target: sell min(0.3 x 12,000, 0.3 x 20,000) = 3,600 = 36
    shares; priority 2 x 0.3 x 0.8."""
    b = book([sec("U1", 100.0, country_group="US"), sec("E1", 50.0, country_group="EU")],
             [pos("U1", 120, 80.0, 100.0)], {"EUR": 8_000.0}, country_targets={"US": 0.3})
    assert found(rebalance_sells.calculate, b) == [("SELL", "U1", 36, 3_600.0, 0.48, "rebalance_sells")]
    within = book([sec("U1", 100.0)], [pos("U1", 120, 80.0, 100.0)], {"EUR": 8_000.0},
                  country_targets={"US": 0.59})
    assert rebalance_sells.calculate(within, DEFAULT) == []


def test_rebalance_buys_add_to_an_underweight_country_group():
    """EU is 0% against 50%: each EU security of quality >= 0.5 (unscored: 0.5) buys at least
    250 EUR in whole lots; priority (2 x 0.5 + 0.5 x quality) x 0.9."""
    b = book([sec("E1", 40.0, country_group="EU", quality=0.6), sec("E2", 40.0, country_group="EU", quality=0.4),
              sec("E3", 300.0, country_group="EU"), sec("U1", 40.0, country_group="US", quality=0.9)],
             [], {"EUR": 10_000.0}, country_targets={"EU": 0.5})
    assert found(rebalance_buys.calculate, b) == [("BUY", "E1", 7, 280.0, 1.17, "rebalance_buys"),
                                                  ("BUY", "E3", 1, 300.0, 1.125, "rebalance_buys")]


# --- averaging down, opportunity buys ---

def test_averaging_down_buys_more_of_a_good_holding_that_fell():
    b = book([sec("D1", 70.0, quality=0.65), sec("D2", 90.0, quality=0.9), sec("D3", 70.0, quality=0.55)],
             [pos("D1", 10, 100.0, 70.0), pos("D2", 10, 100.0, 90.0), pos("D3", 10, 100.0, 70.0)])
    assert found(averaging_down.calculate, b) == [("BUY", "D1", 4, 280.0, 0.95, "averaging_down")]


def test_opportunity_buys_need_quality_and_a_buyable_security():
    b = book([sec("Q1", 30.0, quality=0.8), sec("Q2", 30.0, quality=0.69), sec("Q3", 30.0, quality=0.9,
                                                                            buy_block="allow_buy: ..."),
              sec("Q4", 30.0, quality=0.75, lot=10)])
    assert found(opportunity_buys.calculate, b) == [("BUY", "Q1", 9, 270.0, 0.88, "opportunity_buys"),
                                                    ("BUY", "Q4", 10, 300.0, 0.825, "opportunity_buys")]


def test_every_heuristic_buy_needs_the_planners_min_security_score():
    """With min_security_score 0.8 a holding of quality 0.65 that fell is not averaged down and
    a security of quality 0.75 is no opportunity, though each passes its calculator's own bar."""
    strict = replace(DEFAULT, planner=replace(DEFAULT.planner, min_security_score=0.8))
    fell = book([sec("D1", 70.0, quality=0.65)], [pos("D1", 10, 100.0, 70.0)])
    good = book([sec("Q1", 30.0, quality=0.75), sec("Q2", 30.0, quality=0.85)])
    assert averaging_down.calculate(fell, DEFAULT) and averaging_down.calculate(fell, strict) == []
    assert steps(opportunity_buys.calculate(good, strict)) == [("BUY", "Q2", 9)]
    assert len(opportunity_buys.calculate(good, DEFAULT)) == 2


# --- mandatory steps ---

def test_over_cap_sells_bring_a_holding_under_its_max_target():
    """H1 is 45% (9,000 of 20,000) with a 20% cap: 5,000 over -> 50 shares; in lots of 7,
    8 lots (56 shares) so it ends under the cap."""
    b = book([sec("H1", 100.0, max_weight=0.20)], [pos("H1", 90, 80.0, 100.0)], {"EUR": 11_000.0})
    assert steps(caps.calculate(b, DEFAULT)) == [("SELL", "H1", 50)]
    lots = book([sec("H1", 100.0, max_weight=0.20, lot=7)], [pos("H1", 91, 80.0, 100.0)], {"EUR": 10_900.0})
    assert steps(caps.calculate(lots, DEFAULT)) == [("SELL", "H1", 56)]
    blocked = book([sec("H1", 100.0, max_weight=0.20, sell_block="min_hold: ...")], [pos("H1", 90, 80.0, 100.0)],
                   {"EUR": 11_000.0})
    assert caps.calculate(blocked, DEFAULT) == []
    under = book([sec("H1", 100.0, max_weight=0.44)], [pos("H1", 90, 80.0, 100.0)], {"EUR": 11_000.0})
    assert caps.calculate(under, DEFAULT) == []  # 9,000 - 8,800 = 200 over: under the minimum trade


def test_emergency_sells_cover_a_negative_balance_with_a_buffer_from_its_currency_first():
    """USD is 2,000 below zero: 2,200 is raised, first from the USD holding (all 100 shares,
    1,500), then 14 shares of the largest other holding (700)."""
    b = book([sec("U", 15.0, currency="USD"), sec("V", 50.0), sec("S", 50.0)],
             [pos("U", 100, 10.0, 15.0), pos("V", 100, 40.0, 50.0), pos("S", 10, 40.0, 50.0)],
             {"EUR": 1_000.0, "USD": -2_000.0})
    assert steps(emergency.calculate(b, DEFAULT)) == [("SELL", "U", 100), ("SELL", "V", 14)]
    assert all(a.category == "emergency" and math.isinf(a.priority) for a in emergency.calculate(b, DEFAULT))
    assert emergency.calculate(book([sec("V", 50.0)], [pos("V", 100, 40.0, 50.0)]), DEFAULT) == []


def test_identify_sorts_each_category_and_honours_the_allow_flags():
    b = book([sec("Q1", 30.0, quality=0.8), sec("Q4", 30.0, quality=0.9), sec("X", 100.0, cagr=0.10)],
             [pos("X", 100, 50.0, 100.0)])
    found_all = identify(b, DEFAULT)
    assert steps(found_all["opportunity_buys"]) == [("BUY", "Q4", 9), ("BUY", "Q1", 9)]
    assert steps(found_all["profit_taking"]) == [("SELL", "X", 50)]
    no_buys = replace(DEFAULT, planner=replace(DEFAULT.planner, allow_buy=False))
    assert not any(identify(b, no_buys)[c] for c in ("opportunity_buys", "averaging_down", "rebalance_buys"))
    assert identify(b, no_buys)["profit_taking"]


# --- eligibility ---

RULES = HoldingRules(min_hold_days=90, sell_cooldown_days=180, buy_cooldown_days=30, max_sell_loss=-0.20)


@pytest.mark.parametrize("position,price,allow,market,rule", [
    (pos("A", 10, 100.0, 100.0, bought=181), 100.0, True, True, ""),
    (pos("A", 10, 100.0, 100.0, bought=100), 100.0, True, True, "holding_period"),  # 100 days < 180 since
    (pos("A", 10, 100.0, 100.0, bought=90), 100.0, True, True, "min_hold"),         # a full 90 days needed
    (pos("A", 10, 100.0, 100.0, bought=400, last_bought=91), 100.0, True, True, "holding_period"),
    (pos("A", 10, 100.0, 100.0, bought=400, sold=100), 100.0, True, True, "sell_cooldown"),
    (pos("A", 10, 100.0, 100.0, bought=400, sold=181), 100.0, True, True, ""),
    (pos("A", 10, 100.0, 75.0), 75.0, True, True, "max_sell_loss"),                  # -25% < -20%
    (pos("A", 10, 100.0, 80.0), 80.0, True, True, ""),                               # -20% exactly: allowed
    (pos("A", 10, 0.0, 80.0), 80.0, True, True, "max_sell_loss"),                    # no average cost
    (pos("A", 10, 100.0, 100.0), 100.0, True, False, "market_closed"),
    (pos("A", 10, 100.0, 100.0), 100.0, True, None, "market_closed"),
    (pos("A", 10, 100.0, 100.0), 100.0, False, True, "allow_sell"),
    (pos("A", 10, 100.0, 100.0, bought=None), 100.0, True, True, ""),                # no fill: nothing to count from
])
def test_sell_eligibility(position, price, allow, market, rule):
    block = sell_block("A", position, price, allow, market, RULES, TODAY)
    assert block.split(":")[0] == rule


def test_buy_eligibility_uses_the_stricter_cooldown_and_dismissals():
    from datetime import UTC, datetime, time
    bought = datetime.combine(days_ago(29), time(20), UTC)
    assert buy_block("A", "", True, bought, RULES, TODAY, False).startswith("buy_cooldown")
    assert buy_block("A", "", True, datetime.combine(days_ago(30), time(20), UTC), RULES, TODAY, False) == ""
    assert buy_block("A", "price_stale: old", True, None, RULES, TODAY, False) == "price_stale: old"
    assert buy_block("A", "", False, None, RULES, TODAY, False).startswith("allow_buy")
    assert buy_block("A", "", True, None, RULES, TODAY, True).startswith("dismissed")


def test_holding_rules_are_the_stricter_of_trading_and_the_configuration():
    trading = TradingRules(4, 30, 0.05, True, min_hold_days=90, sell_cooldown_days=180, max_sell_loss=-0.20)
    assert holding_rules(trading, preset("conservative").planner) == HoldingRules(120, 240, 60, -0.15)
    assert holding_rules(trading, preset("aggressive").planner) == HoldingRules(90, 180, 30, -0.20)
