"""Sequence generation and filters (issue 14 items 2-3): properties over random books
(hypothesis) and the rules written out on small ones."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.planner import filters, holistic
from services.planner.config import preset
from services.planner.feasibility import infeasibility
from services.planner.opportunities import identify
from services.planner.opportunities.eligibility import HoldingRules, sell_block
from services.planner.sequences import (
    FULL,
    ActionSequence,
    GenerationInputs,
    dedupe,
    diverse_selection,
    enhanced_combinatorial,
    exhaustive,
    generate,
    partial_executions,
)
from tests.holistic_fixtures import DEFAULT, TODAY, act, book, pos, sec, steps

RULES = HoldingRules(90, 180, 30, -0.20)
GROUPS = ("US", "EU", "ASIA")


@st.composite
def books(draw):
    """A book of 2-8 securities, some held (with fill dates), cash in EUR and maybe USD, the
    optimiser's targets and country targets; each side's block from the real rules."""
    count = draw(st.integers(2, 8))
    securities, positions = [], []
    for i in range(count):
        symbol = f"S{i}"
        price = draw(st.floats(5, 500))
        held = draw(st.integers(0, 300))
        position = None
        if held:
            position = pos(symbol, held, draw(st.floats(3, 600)), price, bought=draw(st.integers(0, 800)),
                           sold=draw(st.none() | st.integers(0, 800)))
            positions.append(position)
        block = sell_block(symbol, position, price, True, True, RULES, TODAY) if position else ""
        securities.append(sec(symbol, price, lot=draw(st.sampled_from([1, 1, 5, 10])),
                              quality=draw(st.none() | st.floats(0.3, 0.95)),
                              country_group=draw(st.sampled_from(GROUPS)),
                              cagr=draw(st.none() | st.floats(-0.1, 0.3)),
                              max_weight=draw(st.none() | st.floats(0.02, 0.5)),
                              buy_block=draw(st.sampled_from(["", "", "", "buy_cooldown: recent"])),
                              sell_block=block if position else "not held"))
    cash = {"EUR": draw(st.floats(-500, 60_000))}
    if draw(st.booleans()):
        cash["USD"] = draw(st.floats(0, 5_000))
    targets = {s.symbol: draw(st.floats(0, 0.4)) for s in securities if draw(st.booleans())}
    country = {g: draw(st.floats(0, 0.6)) for g in GROUPS if draw(st.booleans())}
    return book(securities, positions, cash, reserve=draw(st.floats(0, 1_000)), targets=targets,
                country_targets=country, band=draw(st.sampled_from([0.0, 0.05])))


def check(sequence: ActionSequence, b) -> None:
    actions = sequence.actions
    assert infeasibility(actions, b) == ""                                      # running cash, lots, holdings
    assert len({a.symbol for a in actions}) == len(actions)                     # no symbol twice
    sides = [a.side for a in actions]
    assert sides == sorted(sides, key=lambda side: side == "BUY")               # every SELL before every BUY
    for action in actions:
        if action.side == "SELL":
            held = b.positions[action.symbol]
            assert action.quantity <= held.quantity                             # never more than held
            last = max(d for d in (held.first_buy, held.last_buy, held.last_sell) if d is not None)
            assert (TODAY - last).days > 180                                    # never inside a holding period
            assert held.gain(b.securities[action.symbol].price) >= -0.20       # never below the loss floor


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(books(), st.sampled_from(["default", "aggressive", "conservative"]))
def test_every_generated_sequence_is_executable(b, name):
    config = preset(name)
    found = holistic.candidates(b, config, GenerationInputs(config.planner.mode), {})
    for action in found.mandatory:
        assert action.side == "SELL" and action.quantity <= b.positions[action.symbol].quantity
    for sequence in found.sequences:
        check(sequence, found.book)
        assert sequence.mean_priority >= config.planner.priority_threshold
        assert not {a.symbol for a in sequence.actions} & {a.symbol for a in found.mandatory}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(books())
def test_the_same_state_gives_the_same_sequences(b):
    inputs = GenerationInputs(FULL)
    config = preset("aggressive")
    first = holistic.candidates(b, config, inputs, {})
    again = holistic.candidates(b, config, inputs, {})
    assert [s.sequence_hash for s in first.sequences] == [s.sequence_hash for s in again.sequences]


def test_emergency_then_over_cap_steps_come_first_and_the_rest_is_planned_after_them():
    """USD is 1,000 below zero: 74 U (1,110 USD) are sold first; V, 64% of the portfolio with a
    20% cap, is sold down next; the sequences never touch U or V again and are planned on the
    books after both; the plan lists the mandatory steps first."""
    b = book([sec("U", 15.0, currency="USD"), sec("V", 50.0, max_weight=0.2), sec("Q", 30.0, quality=0.9)],
             [pos("U", 100, 10.0, 15.0), pos("V", 200, 40.0, 50.0)], {"EUR": 5_000.0, "USD": -1_000.0})
    found = holistic.candidates(b, DEFAULT, GenerationInputs(), {})
    assert [(a.category, a.side, a.symbol) for a in found.mandatory] == [("emergency", "SELL", "U"),
                                                                         ("over_cap", "SELL", "V")]
    assert found.mandatory[0].quantity == 74 and found.book.cash.balances["USD"] > 0
    assert found.book.positions["V"].value_base <= 0.2 * found.book.total_value_base
    assert found.sequences and all(not {a.symbol for a in s.actions} & {"U", "V"} for s in found.sequences)
    plan = holistic.build_plan(b, [*found.mandatory, *found.sequences[0].actions], 0.5, 0.6, DEFAULT)
    assert [s.category for s in plan.steps[:2]] == ["emergency", "over_cap"]
    assert [s.symbol for s in plan.steps[2:]] == [a.symbol for a in found.sequences[0].actions]


# --- on small books, written out ---

SELLS = [act("SELL", "X", 600, 1.5, "profit_taking"), act("SELL", "Y", 400, 1.2, "rebalance_sells", country="EU")]
BUYS = [act("BUY", "U", 300, 0.9, "averaging_down", country="EU"), act("BUY", "V", 300, 1.1, "rebalance_buys"),
        act("BUY", "Q", 300, 0.8, "opportunity_buys", country="ASIA")]
OPPORTUNITIES = {"profit_taking": SELLS[:1], "rebalance_sells": SELLS[1:], "averaging_down": BUYS[:1],
                 "rebalance_buys": BUYS[1:2], "opportunity_buys": BUYS[2:]}


def test_exhaustive_lists_every_choice_of_sells_and_buys_best_first():
    found = [steps(s.actions) for s in exhaustive(OPPORTUNITIES, DEFAULT, 2)]
    X, Y = ("SELL", "X", 60), ("SELL", "Y", 40)  # noqa: N806
    U, V, Q = ("BUY", "U", 30), ("BUY", "V", 30), ("BUY", "Q", 30)  # noqa: N806
    assert found == [[V], [U], [Q], [V, U], [V, Q], [U, Q],            # no sell; buys by priority
                     [X], [Y], [X, V], [X, U], [X, Q], [Y, V], [Y, U], [Y, Q],  # one sell
                     [X, Y]]                                                # two sells


def test_enhanced_combinatorial_is_seeded_and_keeps_its_bounds():
    first = enhanced_combinatorial(OPPORTUNITIES, DEFAULT, 3)
    assert [s.key for s in first] == [s.key for s in enhanced_combinatorial(OPPORTUNITIES, DEFAULT, 3)]
    for sequence in first:
        sells = sum(a.side == "SELL" for a in sequence.actions)
        assert sells <= 3 // 2 and len(sequence.actions) <= 3 and sequence.actions
        assert len({a.symbol for a in sequence.actions}) == len(sequence.actions)
    other = replace(DEFAULT, evaluation=replace(DEFAULT.evaluation, seed=7))
    assert {s.key for s in enhanced_combinatorial(OPPORTUNITIES, other, 5)} != \
        {s.key for s in enhanced_combinatorial(OPPORTUNITIES, DEFAULT, 5)} or len(first) < 3


def test_dedupe_keeps_the_first_of_an_ordered_symbol_side_tuple():
    one = ActionSequence((SELLS[0], BUYS[0]), "a")
    same = ActionSequence((SELLS[0], replace(BUYS[0], quantity=99)), "b")
    other_order = ActionSequence((BUYS[0], SELLS[0]), "c")
    repeated = ActionSequence((BUYS[0], BUYS[0]), "d")
    assert [s.generator for s in dedupe([one, same, other_order, repeated])] == ["a", "c"]


def test_diverse_selection_spreads_over_clusters():
    actions = [act("BUY", f"US{i}", 300, 2.0 - i / 10, "opportunity_buys", country="US") for i in range(4)]
    actions.append(act("BUY", "EU0", 300, 0.5, "opportunity_buys", country="EU"))
    chosen = diverse_selection(actions, 3, 0.3)
    assert {a.symbol for a in chosen} == {"US0", "US1", "EU0"}  # the best of each cluster, then by priority
    assert chosen[0].symbol == "EU0"  # alone in its cluster: (1 - 0.3) x 0.005 + 0.3 / 1 is highest


def test_filters_written_out():
    b = book([sec("X", 10.0), sec("U", 10.0), sec("V", 10.0)], [pos("X", 60, 8.0, 10.0, bought=400)],
             {"EUR": 1_000.0}, last_sells={"V": 100})
    sell_x, buy_u = act("SELL", "X", 600, 1.5, "profit_taking"), act("BUY", "U", 300, 0.9, "averaging_down")
    buy_v = act("BUY", "V", 300, 1.1, "rebalance_buys")
    sequences = [ActionSequence((sell_x, buy_u), "a"), ActionSequence((sell_x, buy_v), "b"),
                 ActionSequence((buy_u, buy_v), "c"), ActionSequence((buy_u, sell_x), "d")]
    assert [s.generator for s in filters.feasible(sequences, b, 0.3)] == ["a", "b", "c"]  # d: a SELL after a BUY
    assert [s.generator for s in filters.feasible(sequences, b, 1.2)] == ["a", "b"]       # c: mean priority 1.0
    assert [s.generator for s in filters.recently_traded(sequences, b)] == ["a", "d"]    # V was sold 100 days ago
    correlated = {frozenset(("U", "V")): 0.75}
    assert [s.generator for s in filters.correlation_aware(sequences, correlated, 0.7)] == ["a", "b", "d"]
    assert [s.generator for s in filters.correlation_aware(sequences, {}, 0.7)] == ["a", "b", "c", "d"]
    # every sequence of 2 has diversity 0.4 + 0.3 x 0.5 + 0.3 x 2 / 2 = 0.85: b's mean priority 1.3 wins
    assert [s.generator for s in filters.diversity(sequences, 0.3, 1)] == ["b"]
    blocked = replace(b, securities={**b.securities, "U": sec("U", 10.0, buy_block="allow_buy: no")})
    assert [s.generator for s in filters.eligibility(sequences, blocked)] == ["b"]


def test_recently_traded_drops_a_buy_within_the_buy_cooldown_and_a_sell_within_the_sell_cooldown():
    """planner.md: recently_traded (buy cooldown 30 d, sell cooldown 180 d). U was bought 29
    days ago (30: allowed again), X sold 180 days ago (181: allowed again)."""
    sell_x, buy_u = act("SELL", "X", 600, 1.5, "profit_taking"), act("BUY", "U", 300, 0.9, "averaging_down")
    sequences = [ActionSequence((sell_x,), "sell"), ActionSequence((buy_u,), "buy")]

    def kept(**recent):
        b = book([sec("X", 10.0), sec("U", 10.0)], [pos("X", 60, 8.0, 10.0, bought=400)], **recent)
        return [s.generator for s in filters.recently_traded(sequences, b)]
    assert kept(last_buys={"U": 29}) == ["sell"] and kept(last_buys={"U": 30}) == ["sell", "buy"]
    assert kept(last_sells={"X": 180}) == ["buy"] and kept(last_sells={"X": 181}) == ["sell", "buy"]
    assert kept(last_buys={"X": 5}) == ["sell", "buy"]  # a recent BUY does not stop a SELL (min_hold does)


def test_generate_runs_every_depth_and_full_mode_adds_the_extras():
    b = book([sec("X", 10.0, cagr=0.1), sec("U", 10.0, quality=0.8), sec("V", 20.0, quality=0.75)],
             [pos("X", 100, 4.0, 10.0)], {"EUR": 2_000.0})
    opportunities = identify(b, DEFAULT)
    incremental = generate(b, opportunities, DEFAULT)
    assert {len(s.actions) for s in incremental} == {1, 2, 3}
    aggressive = preset("aggressive")
    full = generate(b, identify(b, aggressive), aggressive, GenerationInputs(FULL))
    relaxed = {steps(s.actions)[0] for s in full if s.generator == "constraint_relaxation" and len(s.actions) == 1}
    assert relaxed == {("BUY", "U", 27), ("BUY", "U", 30), ("BUY", "U", 32),   # 25 x 1.1, 1.2, 1.3
                       ("BUY", "V", 14), ("BUY", "V", 15), ("BUY", "V", 16)}   # 13 x 1.1, 1.2, 1.3
    assert all(not infeasibility(s.actions, b) for s in full)
    # every prefix is there already (patterns build them), so partial execution adds none here
    assert "partial_execution" not in {s.generator for s in full}
    assert [steps(s.actions) for s in partial_executions([ActionSequence(tuple(SELLS + BUYS[:1]), "x")])] == [
        [("SELL", "X", 60)], [("SELL", "X", 60), ("SELL", "Y", 40)]]
