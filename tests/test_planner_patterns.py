"""The 13 patterns of planner.md section 2 on one small set of opportunities, with the
expected sequences written out (issue 14 item 2): SELLs first, each BUY fits the running cash.

Cash 1,000 EUR (no reserve, no price band): a BUY of 300 needs 300 + 2 + 0.6 = 302.60, one of
900 needs 903.80; a SELL of 600 brings 596.80, 400 -> 397.20, 500 -> 497.00.
"""

from __future__ import annotations

import pytest

from services.planner.feasibility import RunningCash
from services.planner.patterns import PATTERNS, PatternInputs, fill
from services.planner.plan import Cash
from tests.holistic_fixtures import act, steps

P1 = act("SELL", "X", 600, 1.5, "profit_taking", country="US")
P2 = act("SELL", "Y", 400, 1.2, "profit_taking", country="EU")
R1 = act("SELL", "Z", 500, 0.6, "rebalance_sells", country="US")
A1 = act("BUY", "U", 300, 0.9, "averaging_down", country="EU")
B1 = act("BUY", "V", 300, 1.1, "rebalance_buys", country="EU")
B2 = act("BUY", "W", 900, 0.7, "rebalance_buys", country="ASIA")
O1 = act("BUY", "Q", 300, 0.8, "opportunity_buys", country="US")
OPPORTUNITIES = {"profit_taking": [P1, P2], "rebalance_sells": [R1], "averaging_down": [A1],
                 "rebalance_buys": [B1, B2], "opportunity_buys": [O1]}


def inputs(cash: float = 1_000.0, regime: str = "sideways", opportunities=None) -> PatternInputs:
    return PatternInputs(OPPORTUNITIES if opportunities is None else opportunities,
                         RunningCash(Cash("EUR", {"EUR": cash}, 0.0)), regime,
                         country_gaps={"EU": 0.10, "US": 0.01, "ASIA": 0.05})


def S(symbol):  # noqa: N802 - reads as a step
    return ("SELL", symbol, {"X": 60, "Y": 40, "Z": 50}[symbol])


def B(symbol):  # noqa: N802
    return ("BUY", symbol, {"U": 30, "V": 30, "W": 90, "Q": 30}[symbol])


@pytest.mark.parametrize("name,expected", [
    ("direct_buy", [B("U"), B("V"), B("Q")]),                  # W (903.80) no longer fits after U and V
    ("profit_taking", [S("X"), S("Y"), B("U"), B("V")]),
    ("rebalance", [S("Z"), B("V"), B("W")]),
    ("averaging_down", [B("U")]),
    ("single_best", [S("X")]),
    ("multi_sell", [S("X"), S("Y"), S("Z"), B("U")]),
    ("mixed_strategy", [S("X"), S("Y"), B("U"), B("V")]),      # at most 4 // 2 sells
    ("opportunity_first", [B("Q"), B("U"), B("V")]),
    ("deep_rebalance", [S("Z"), B("V"), B("W")]),
    ("cash_generation", [S("X"), S("Y"), S("Z"), B("Q")]),
    ("cost_optimized", [S("X"), S("Y"), S("Z"), B("V")]),      # buys by priority: V 1.1 first
    ("adaptive", [B("V"), B("U")]),                            # EU and ASIA are under target; W does not fit
    ("market_regime", [S("Z"), B("V"), B("W")]),               # sideways
])
def test_each_pattern_at_depth_4(name, expected):
    assert steps(PATTERNS[name](inputs(), 4)) == expected


def test_every_pattern_is_registered():
    assert list(PATTERNS) == ["direct_buy", "profit_taking", "rebalance", "averaging_down", "single_best",
                              "multi_sell", "mixed_strategy", "opportunity_first", "deep_rebalance",
                              "cash_generation", "cost_optimized", "adaptive", "market_regime"]


@pytest.mark.parametrize("regime,expected", [
    ("bull", [S("X"), S("Y"), B("Q"), B("V")]),                 # 2 profit-taking sells, opportunity + rebalance
    ("bear", [S("X"), S("Y"), B("U")]),                         # sells up to 4 // 2, then averaging down
    ("sideways", [S("Z"), B("V"), B("W")]),                     # 2 rebalance sells, rebalance + opportunity
])
def test_market_regime_by_regime(regime, expected):
    assert steps(PATTERNS["market_regime"](inputs(regime=regime), 4)) == expected


@pytest.mark.parametrize("name,expected", [
    ("direct_buy", [B("U"), B("V"), B("Q")]),
    ("profit_taking", [S("X"), S("Y"), B("U")]),
    ("multi_sell", [S("X"), S("Y"), S("Z")]),
    ("mixed_strategy", [S("X"), B("U"), B("V")]),              # max(1, 3 // 2) = 1 sell
    ("deep_rebalance", [S("Z"), B("V"), B("W")]),
])
def test_depth_3_limits_the_steps(name, expected):
    assert steps(PATTERNS[name](inputs(), 3)) == expected


def test_depth_1():
    assert steps(PATTERNS["deep_rebalance"](inputs(), 1)) == []   # needs a sell and a buy
    assert steps(PATTERNS["mixed_strategy"](inputs(), 1)) == [S("X")]
    assert steps(PATTERNS["direct_buy"](inputs(), 1)) == [B("U")]


def test_averaging_down_sells_first_when_the_cash_does_not_cover_it():
    assert steps(PATTERNS["averaging_down"](inputs(cash=200.0), 2)) == [S("X"), B("U")]
    assert steps(PATTERNS["averaging_down"](inputs(cash=200.0), 1)) == []  # the buy does not fit alone


def test_without_cash_nothing_is_bought_directly_and_buys_follow_sells():
    assert PATTERNS["direct_buy"](inputs(cash=0.0), 4) == []
    assert steps(PATTERNS["single_best"](inputs(cash=0.0, opportunities={"rebalance_buys": [B1]}), 4)) == []
    assert steps(PATTERNS["multi_sell"](inputs(cash=0.0), 5)) == [S("X"), S("Y"), S("Z"), B("U"), B("V")]


def test_fill_keeps_a_symbol_once_and_skips_what_does_not_fit():
    cash = RunningCash(Cash("EUR", {"EUR": 500.0}, 0.0))
    assert steps(fill([A1], [A1, B2, B1], cash, 5)) == [B("U")]  # U once; W needs 903.80; V needs more than 197.40
    assert steps(fill([], [A1, B1], cash, 5, limit=1)) == [B("U")]
