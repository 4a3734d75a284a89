"""ScoreSecurities and GetScores (issue 13 item 3): scores computed from the data service's
metrics and fundamentals and the portfolio, stored with their groups and inputs' dates,
recomputed by the original's TTLs or when a price or fundamentals change, never from a later
bar; bad input refused over gRPC with nothing stored."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from sqlalchemy import update
from trader.data.v1 import data_pb2
from trader.planner.v1 import planner_pb2
from trader.portfolio.v1 import portfolio_pb2

from services.data import indicators
from services.planner import store as planner_store
from services.planner.scoring.inputs import Metrics
from services.planner.scoring.refresh import (
    FUNDAMENTALS_BASED,
    PRICE_BASED,
    SCORING_VERSION,
    Inputs,
    StoredState,
    stale_groups,
)
from services.planner.scoring.security import GROUP_WEIGHTS, STATIC_GROUPS, SecurityInput, score_security
from services.planner.scoring_engine import ScoringEngine
from tests.data_fixtures import random_walk, security
from tests.planner_fixtures import PlannerHarness

COUNT = 600
BARS = {"S0.US": random_walk(COUNT, seed=1), "S1.US": random_walk(COUNT, seed=2),
        "NEW.US": random_walk(40, seed=3)}  # 40 bars: not scored
LAST = BARS["S0.US"][-1].date
EVERYTHING = frozenset(STATIC_GROUPS)


def at(day, hour=22) -> list[tuple[str, str]]:
    return [("x-trader-as-of", datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat())]


@pytest.fixture
def harness(tmp_path):
    made = PlannerHarness(tmp_path, [security(s) for s in BARS], BARS)
    yield made
    made.close()


def score(harness, day, *symbols):
    reply = harness.planner_stub.ScoreSecurities(planner_pb2.ScoreSecuritiesRequest(symbols=symbols),
                                                 metadata=at(day), timeout=60)
    return {s.symbol: s for s in reply.scores}


def stored_rows(harness) -> dict:
    with harness.planner_db.transaction() as session:
        return {s: (r.total, r.scored_at) for s, r in planner_store.load_scores(session).items()}


# --- the pure refresh rules ---

NOW = datetime(2020, 6, 1, 12, tzinfo=UTC)
INPUTS = Inputs(NOW.date(), 100.0, "k1")


def state(ages: dict[str, timedelta] | None = None, **extra) -> StoredState:
    ages = ages or {}
    computed = {g: NOW - ages.get(g, timedelta(0)) for g in STATIC_GROUPS}
    return StoredState(**{**dict(inputs=INPUTS, scored_at=NOW, version=SCORING_VERSION, scored=True,
                                 computed_at=computed), **extra})


HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@pytest.mark.parametrize("stored, current, expected", [
    (None, INPUTS, EVERYTHING),
    (state(), INPUTS, frozenset()),
    (state(version=SCORING_VERSION - 1), INPUTS, EVERYTHING),
    (state(scored_at=NOW + HOUR), INPUTS, EVERYTHING),                        # scored after now
    (state(), Inputs(NOW.date(), 100.5, "k1"), PRICE_BASED),                  # a corrected close
    (state(), Inputs(NOW.date() + DAY, 100.0, "k1"), PRICE_BASED),            # a new bar
    (state(), Inputs(NOW.date(), 100.0, "k2"), FUNDAMENTALS_BASED),
    (state({g: 24 * HOUR - timedelta(seconds=1) for g in STATIC_GROUPS}), INPUTS, frozenset()),
    (state({g: 24 * HOUR for g in STATIC_GROUPS}), INPUTS,
     frozenset({"technicals", "short_term", "opportunity", "opinion"})),
    (state({g: 7 * DAY - HOUR for g in STATIC_GROUPS}), INPUTS,
     frozenset({"technicals", "short_term", "opportunity", "opinion"})),
    (state({g: 7 * DAY for g in STATIC_GROUPS}), INPUTS, EVERYTHING - {"dividends"}),
    (state({g: 30 * DAY - HOUR for g in STATIC_GROUPS}), INPUTS, EVERYTHING - {"dividends"}),
    (state({g: 30 * DAY for g in STATIC_GROUPS}), INPUTS, EVERYTHING),
    (state({"dividends": -HOUR}), INPUTS, frozenset({"dividends"})),          # a group computed after now
    (state(scored=False, computed_at={}), INPUTS, frozenset()),
    (state(scored=False, computed_at={}, scored_at=NOW - DAY), INPUTS, EVERYTHING),
    (state(scored=False, computed_at={}), Inputs(NOW.date() + DAY, 1.0, "k1"), EVERYTHING),
])
def test_which_groups_are_recomputed(stored, current, expected):
    assert stale_groups(stored, current, NOW) == expected


# --- over gRPC ---

def test_scores_are_computed_stored_and_read_back(harness):
    scores = score(harness, LAST)
    assert set(scores) == {"S0.US", "S1.US", "NEW.US"}
    s0 = scores["S0.US"]
    assert s0.scored and set(s0.groups) == set(GROUP_WEIGHTS) and s0.inputs_as_of == LAST.isoformat()
    assert 0 <= s0.total <= 1 and s0.quality == pytest.approx(
        round((s0.groups["long_term"].score + s0.groups["fundamentals"].score) / 2, 3))
    assert s0.fundamentals_as_of == "" and s0.groups["dividends"].score == 0.5  # no fundamentals: neutral
    assert sorted(s0.recomputed) == sorted(STATIC_GROUPS)
    assert not s0.groups["diversification"].HasField("computed_at")
    new = scores["NEW.US"]
    assert not new.scored and new.reason == "insufficient_history" and not new.HasField("total")
    assert "40 valid daily bars" in new.detail
    read = harness.planner_stub.GetScores(planner_pb2.GetScoresRequest(symbols=["S1.US", "XX.US"]),
                                          metadata=at(LAST))
    assert [s.symbol for s in read.scores] == ["S1.US"] and list(read.missing) == ["XX.US"]
    expected = planner_pb2.SecurityScore()
    expected.CopyFrom(scores["S1.US"])
    del expected.recomputed[:]  # only ScoreSecurities says what it computed
    assert read.scores[0] == expected


def test_a_score_uses_no_later_bar(harness):
    day = BARS["S0.US"][-200].date
    scores = score(harness, day, "S0.US")
    bars = [b for b in BARS["S0.US"] if b.date <= day]
    closes = np.array([b.close for b in bars])
    values = indicators.compute(closes, None, None, np.array([b.date.year * 12 + b.date.month for b in bars]))
    months = len({(b.date.year, b.date.month) for b in bars})
    expected = score_security(SecurityInput("S0.US", Metrics.from_values(values, len(bars), months),
                                            country="United States", industry="Software"))
    assert scores["S0.US"].inputs_as_of == day.isoformat()
    assert scores["S0.US"].total == pytest.approx(expected.total)
    assert {g: v.score for g, v in scores["S0.US"].groups.items()} == pytest.approx(expected.groups)
    # a score computed later is neither shown nor reused as of an earlier date
    score(harness, LAST, "S0.US")
    earlier = harness.planner_stub.GetScores(planner_pb2.GetScoresRequest(symbols=["S0.US"]), metadata=at(day))
    assert not earlier.scores and list(earlier.missing) == ["S0.US"]
    again = score(harness, day, "S0.US")["S0.US"]
    assert sorted(again.recomputed) == sorted(STATIC_GROUPS) and again.total == pytest.approx(expected.total)


def test_fresh_groups_are_kept_and_a_new_price_recomputes_the_price_based_ones(harness):
    before = BARS["S0.US"][-2].date
    first = score(harness, before, "S0.US")["S0.US"]
    again = score(harness, before, "S0.US")["S0.US"]
    assert list(again.recomputed) == [] and again.groups["long_term"].computed_at == \
        first.groups["long_term"].computed_at and again.total == first.total
    nextday = score(harness, LAST, "S0.US")["S0.US"]
    assert set(nextday.recomputed) == PRICE_BASED and nextday.inputs_as_of == LAST.isoformat()
    assert nextday.groups["dividends"].computed_at == first.groups["dividends"].computed_at


def test_a_fundamentals_change_recomputes_the_fundamentals_based_groups(harness):
    score(harness, LAST, "S0.US", "S1.US")
    harness.data_stub.ImportFundamentals(data_pb2.ImportFundamentalsRequest(content=(
        "symbol,date,trailing_pe,dividend_yield,payout_ratio,recommendation_key,target_mean_price\n"
        f"S0.US,{LAST - timedelta(days=10)},12.0,0.045,0.45,strong_buy,{BARS['S0.US'][-1].close * 1.3}\n")))
    scores = score(harness, LAST, "S0.US", "S1.US")
    s0 = scores["S0.US"]
    assert set(s0.recomputed) == FUNDAMENTALS_BASED and list(scores["S1.US"].recomputed) == []
    assert s0.fundamentals_as_of == (LAST - timedelta(days=10)).isoformat()
    assert s0.groups["dividends"].score > 0.5 and s0.groups["opinion"].score == 1.0
    assert s0.groups["opportunity"].components["pe"] == 1.0


def test_ttls_recompute_without_new_inputs(harness):
    first = score(harness, LAST, "S0.US")["S0.US"]
    daily = {"technicals", "short_term", "opportunity", "opinion"}
    expected = {0: set(), 2: daily, 3: daily, 8: daily | {"long_term", "fundamentals"}, 31: set(STATIC_GROUPS)}
    for days, groups in expected.items():  # no bar after LAST: only the TTLs make groups stale
        result = score(harness, LAST + timedelta(days=days), "S0.US")["S0.US"]
        assert set(result.recomputed) == groups, days
        assert result.inputs_as_of == LAST.isoformat() and result.total == pytest.approx(first.total)


def test_holdings_change_the_diversification_only(harness):
    plain = score(harness, LAST, "S0.US")["S0.US"]
    harness.portfolio_stub.ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(
        positions=[portfolio_pb2.BrokerPosition(symbol="S0.US", quantity=100, average_cost=BARS["S0.US"][-1].close
                                                * 1.1, currency="USD")],
        cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=100_000.0)]), metadata=at(LAST))
    held = score(harness, LAST, "S0.US")["S0.US"]
    assert list(held.recomputed) == []
    assert held.groups["diversification"].components["averaging"] != 0.5
    assert held.groups["diversification"].components["country"] == 0.5  # no allocation targets yet
    assert {g: v.score for g, v in held.groups.items() if g != "diversification"} == \
        {g: v.score for g, v in plain.groups.items() if g != "diversification"}


@pytest.mark.parametrize("symbols, code, fragment", [
    (["S0.US", " "], grpc.StatusCode.INVALID_ARGUMENT, "symbols[1]"),
    (["S0.US", "MOON.US"], grpc.StatusCode.NOT_FOUND, "MOON.US"),
])
def test_bad_input_is_refused_and_stores_nothing(harness, symbols, code, fragment):
    with pytest.raises(grpc.RpcError) as refused:
        harness.planner_stub.ScoreSecurities(planner_pb2.ScoreSecuritiesRequest(symbols=symbols), metadata=at(LAST))
    assert refused.value.code() == code and fragment in refused.value.details()
    assert stored_rows(harness) == {}
    with pytest.raises(grpc.RpcError) as refused:
        harness.planner_stub.GetScores(planner_pb2.GetScoresRequest(symbols=["", "S0.US"]), metadata=at(LAST))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "symbols[0]" in refused.value.details()


# --- the scores kept after storing them (scoring_engine.ScoringEngine._previous) ---

def test_the_scores_kept_are_what_a_fresh_process_reads(harness):
    symbols = ["NEW.US", "S0.US", "S1.US"]
    score(harness, BARS["S0.US"][-2].date)
    assert set(harness.engine._scoring._kept[1]) == set(symbols)  # served from what was stored
    kept = harness.engine._scoring._previous(symbols)[1]
    assert set(kept) == set(symbols)
    fresh_db = planner_store.open_database(str(harness.planner_db.engine.url))
    try:
        read = ScoringEngine(fresh_db, harness.engine._peers)._previous(symbols)[1]
    finally:
        fresh_db.close()
    # as read, but for `recomputed` (never passed on from a stored score) and the order of the
    # groups and components (the JSON sorts them; nothing reads their order)
    assert {s: (replace(score, recomputed=[]), state) for s, (score, state) in kept.items()} == read
    again = score(harness, BARS["S0.US"][-2].date)  # from the kept scores: nothing stale, the verdict stands
    assert [list(again[s].recomputed) for s in symbols] == [[], [], []] and not again["NEW.US"].scored


def test_a_write_to_the_scores_table_is_read_not_the_kept_scores(harness):
    first = score(harness, LAST, "S0.US")["S0.US"]
    assert list(score(harness, LAST, "S0.US")["S0.US"].recomputed) == []  # kept: nothing stale
    with harness.planner_db.transaction() as session:  # another transaction of this process
        session.execute(update(planner_store.ScoreRow).where(planner_store.ScoreRow.symbol == "S0.US")
                        .values(version=SCORING_VERSION - 1))
    again = score(harness, LAST, "S0.US")["S0.US"]
    assert sorted(again.recomputed) == sorted(STATIC_GROUPS) and again.total == first.total
