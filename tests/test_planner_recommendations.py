"""Recommendations keyed by state, Optimize and DismissRecommendation over gRPC with the real data
and portfolio services (issue 13 items 5-7): the state key follows every input it covers, a
dismissed step stays dismissed for its state, executed steps are marked from trading's fills,
plan ids are deterministic, and bad input is INVALID_ARGUMENT naming the field, changing nothing."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from trader.data.v1 import data_pb2
from trader.planner.v1 import planner_pb2
from trader.portfolio.v1 import portfolio_pb2

from services.planner import store
from services.planner.optimizer.expected_returns import cost_haircut, expected_return
from services.planner.recommendations import (
    DISMISSED,
    EXECUTED,
    PENDING,
    Recommendation,
    recommendation_id,
    upsert_action,
)
from services.planner.settings import SETTINGS_KEYS, PlannerSettings, settings_hash, state_key
from services.trading.orders import plan_client_order_id
from tests.data_fixtures import random_walk, security
from tests.planner_fixtures import PlannerHarness, as_of

SYMBOLS = [f"S{i}.US" for i in range(7)]
COUNT = 420
LAST_DAY = random_walk(COUNT)[-1].date
NOW = datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, 22, tzinfo=UTC)


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(securities=None, name="h", **kw):
        folder = tmp_path / f"{name}{len(made)}"
        folder.mkdir()
        bars = {s: random_walk(COUNT, seed=i + 1) for i, s in enumerate(SYMBOLS)}
        made.append(PlannerHarness(folder, securities or [security(s) for s in SYMBOLS], bars, **kw))
        return made[-1]

    yield make
    for h in made:
        h.close()


def rows(h: PlannerHarness) -> dict[str, list]:
    """Everything the planner has stored."""
    with h.planner_db.transaction() as session:
        return {"plans": session.execute(select(store.PlanRow.portfolio_hash, store.PlanRow.as_of_date,
                                                store.PlanRow.payload)).all(),
                "recommendations": [r.to_domain() for r in session.scalars(select(store.RecommendationRow))]}


def rejected(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# --- Optimize ---

def test_optimize_reports_targets_method_fallback_and_why(harness):
    h = harness()
    reply = h.optimize(LAST_DAY)
    assert reply.method == "blend" and reply.fallback.level == "full"
    assert reply.fallback.objective in ("efficient_return", "min_volatility", "efficient_risk", "max_sharpe")
    assert reply.regime == "sideways" and reply.reserve_base == pytest.approx(3_000.0)  # 3% of 100,000
    assert sum(reply.target_weights.values()) == pytest.approx(0.97, abs=1e-5)
    assert all(0 < w <= 0.2 for w in reply.target_weights.values())
    by_symbol = {s.symbol: s for s in reply.securities}
    assert sorted(by_symbol) == SYMBOLS and all(s.upper == 0.2 and s.current_weight == 0 for s in by_symbol.values())
    assert reply.expected_return == pytest.approx(sum(by_symbol[s].expected_return * w
                                                      for s, w in reply.target_weights.items()), abs=1e-6)
    notes = " | ".join(reply.notes)
    assert "market regime unknown" in notes and "forward-looking terms" in notes and "no score" not in notes
    assert "7 of 7 securities have no dividend yield" in notes
    assert all(abs(c.rho) >= 0.8 for c in reply.correlations) and len(reply.correlations) <= 5
    assert rows(h) == {"plans": [], "recommendations": []}  # Optimize writes nothing
    only_hrp = h.optimize(LAST_DAY, blend=1.0)
    assert only_hrp.method == "hrp" and only_hrp.blend == 1.0 and not only_hrp.HasField("fallback")
    assert h.optimize(LAST_DAY, blend=0.0, target_return=0.05).method == "mean_variance"
    assert h.optimize(LAST_DAY).target_weights == reply.target_weights  # the same inputs, the same weights


def expected_returns(h: PlannerHarness, day) -> dict[str, float]:
    """What each security's expected return must be from its stored total score, the data
    service's CAGR and its imported dividend yield (planner.md section 3), for a portfolio of
    cash only (no holding: the new-position cost haircut)."""
    scores = h.planner_stub.GetScores(planner_pb2.GetScoresRequest(symbols=SYMBOLS), metadata=[as_of(day)])
    totals = {s.symbol: s.total for s in scores.scores if s.scored}
    metrics = h.data_stub.GetMetrics(data_pb2.GetMetricsRequest(symbols=SYMBOLS), metadata=[as_of(day)]).metrics
    facts = h.data_stub.GetFundamentals(data_pb2.GetFundamentalsRequest(symbols=SYMBOLS),
                                        metadata=[as_of(day)]).fundamentals
    yields = {f.symbol: f.dividend_yield for f in facts if f.HasField("dividend_yield")}
    assert sorted(totals) == SYMBOLS  # every security was scored by the run
    return {m.symbol: expected_return(m.values["CAGR_5Y"], yields.get(m.symbol), totals[m.symbol], "sideways")
            - cost_haircut(0.0, 100_000.0) for m in metrics}


def test_optimize_reads_the_scores_and_the_dividend_yields_of_the_fundamentals(harness):
    """The score factor is the stored total (refreshed by the run itself), the dividend yield the
    imported fundamentals'; a security without fundamentals keeps an unknown yield."""
    h = harness()
    reply = h.optimize(LAST_DAY)
    assert {s.symbol: s.expected_return for s in reply.securities} == pytest.approx(expected_returns(h, LAST_DAY))
    h.data_stub.ImportFundamentals(data_pb2.ImportFundamentalsRequest(content=(
        "symbol,date,dividend_yield,recommendation_key\n"
        f"S0.US,{LAST_DAY - timedelta(days=3)},0.04,strong_buy\n")))
    imported = h.optimize(LAST_DAY)
    mu = {s.symbol: s.expected_return for s in imported.securities}
    assert mu == pytest.approx(expected_returns(h, LAST_DAY))
    assert mu["S0.US"] > {s.symbol: s.expected_return for s in reply.securities}["S0.US"]
    assert "6 of 7 securities have no dividend yield" in " | ".join(imported.notes)
    scores = h.planner_stub.GetScores(planner_pb2.GetScoresRequest(symbols=["S0.US"]), metadata=[as_of(LAST_DAY)])
    assert scores.scores[0].groups["opinion"].components["recommendation"] == 1.0  # rescored from the import


class CountingStub:
    """Counts the calls made through a stub, by method."""

    def __init__(self, stub):
        self._stub, self.calls = stub, Counter()

    def __getattr__(self, name):
        method = getattr(self._stub, name)

        def call(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)
        return call


def counting_data(peers) -> CountingStub:
    """Counts the calls `peers` makes to the data service from now on (GetPriceHistories
    included: Peers.valid_closes calls it for the reply's bytes, not through the stub)."""
    peers._data = counting = CountingStub(peers._data)
    histories = peers._price_histories

    def price_histories(*args, **kwargs):
        counting.calls["GetPriceHistories"] += 1
        return histories(*args, **kwargs)
    peers._price_histories = price_histories
    return counting


def data_calls_of_a_plan(h: PlannerHarness) -> Counter:
    counting = counting_data(h.engine._peers)
    assert h.plan(LAST_DAY).steps
    return counting.calls


def test_a_plan_reads_each_kind_of_data_once_whatever_the_number_of_securities(harness):
    """Scores, CAGRs, yields, histories and quotes of every security come in one call each."""
    many = data_calls_of_a_plan(harness())
    few = data_calls_of_a_plan(harness([security(s) for s in SYMBOLS[:3]]))
    assert many == few == Counter(dict.fromkeys(("ListSecurities", "GetQuotes", "GetPriceHistories", "GetMetrics",
                                                  "GetFundamentals", "GetFxRates", "GetMarketRegime"), 1))


def test_reads_together_run_in_the_callers_context_and_fail_as_in_order():
    """Peers.together: results in order, every read in the request's as-of context (a read
    made in another thread without it would use the wall clock), every read done before the
    first failing one's error is raised."""
    from services.common import clock
    from services.common.background import ContextExecutor
    from services.planner.adapters.peers import read_together

    moment = datetime(2020, 3, 16, 21, tzinfo=UTC)
    done = []

    def read(name, error=None):
        def run():
            done.append(name)
            if error is not None:
                raise error
            return name, clock.as_of()
        return run

    with ContextExecutor(max_workers=2) as pool, clock.use_as_of(moment):
        assert read_together(pool, read("a"), read("b"), read("c")) == [("a", moment), ("b", moment), ("c", moment)]
        done.clear()
        with pytest.raises(KeyError, match="first"):
            read_together(pool, read("a"), read("b", KeyError("first")), read("c", ValueError("second")))
        assert sorted(done) == ["a", "b", "c"]


@pytest.mark.parametrize("request_fields,field", [
    ({"blend": 1.5}, "blend"), ({"blend": -0.01}, "blend"), ({"blend": float("nan")}, "blend"),
    ({"target_return": 0.5}, "target_return"), ({"target_return": float("inf")}, "target_return"),
    ({"target_return": -0.2}, "target_return"),
])
def test_optimize_bad_input_is_named_and_changes_nothing(harness, request_fields, field):
    h = harness()
    error = rejected(lambda: h.optimize(LAST_DAY, **request_fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(f"{field}: ")
    assert rows(h) == {"plans": [], "recommendations": []}


# --- GetRecommendations and the recommendations of a state ---

def test_steps_are_stored_as_the_state_recommendations(harness):
    h = harness()
    plan = h.plan(LAST_DAY)
    assert plan.method == "blend" and plan.steps and len(plan.steps) <= 5
    assert plan.state_key == f"{plan.portfolio_hash}:{plan.settings_hash}:{plan.allocations_hash}"
    assert plan.allocations_hash == "00000000" and plan.settings_hash == settings_hash(PlannerSettings())
    stored = {r.uuid: r for r in rows(h)["recommendations"]}
    assert [s.uuid for s in plan.steps] == [recommendation_id(plan.state_key, s.symbol, "BUY") for s in plan.steps]
    for number, step in enumerate(plan.steps, start=1):
        row = stored[step.uuid]
        assert (row.symbol, row.side, row.quantity, row.status, row.plan_id, row.step) == (
            step.symbol, "BUY", step.quantity, PENDING, plan.plan_id, number)
    first = h.plan(LAST_DAY, max_steps=1)
    assert first.cached and first.plan_id == plan.plan_id and list(first.steps) == [plan.steps[0]]


def test_a_dismissed_step_stays_dismissed_for_its_state(harness):
    h = harness()
    plan = h.plan(LAST_DAY)
    step = plan.steps[0]
    dismissed = h.dismiss(LAST_DAY, step.uuid)
    assert dismissed.status == DISMISSED and dismissed.HasField("dismissed_at") and dismissed.symbol == step.symbol
    again = h.plan(LAST_DAY)
    assert not again.cached and again.state_key == plan.state_key and again.plan_id != plan.plan_id
    assert step.symbol not in {s.symbol for s in again.steps} and again.steps
    assert ("dismissed" in {e.reason for e in again.excluded if e.symbol == step.symbol})
    assert [r.uuid for r in again.dismissed] == [step.uuid]
    assert h.plan(LAST_DAY).cached and h.plan(LAST_DAY + timedelta(days=1)).steps[0].symbol != step.symbol
    assert h.dismiss(LAST_DAY, step.uuid).dismissed_at == dismissed.dismissed_at  # once is enough
    # Another state (a deposit): the step may come back.
    h.portfolio_stub.ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(
        cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=100_500.0)]))
    other = h.plan(LAST_DAY)
    assert other.state_key != plan.state_key and not other.dismissed


def test_an_executed_step_is_marked_from_trading_fills_and_reset_when_the_state_returns(harness):
    h = harness()
    plan = h.plan(LAST_DAY)
    step = plan.steps[0]
    h.trading.buys = [(step.symbol, NOW - timedelta(hours=1))]
    h.trading.client_order_ids = {step.symbol: plan_client_order_id(plan.plan_id, 1, step.symbol, "BUY")}
    h.plan(LAST_DAY)
    stored = {r.uuid: r for r in rows(h)["recommendations"]}
    assert stored[step.uuid].status == EXECUTED and stored[step.uuid].executed_at == NOW - timedelta(hours=1)
    assert {r.status for u, r in stored.items() if u != step.uuid} == {PENDING}
    error = rejected(lambda: h.dismiss(LAST_DAY, step.uuid))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and error.details().startswith("recommendation_executed")


def test_a_fill_checked_before_its_step_was_planned_is_marked_once_the_step_is_stored(harness):
    """The planner keeps the client order ids of fills that matched no pending step and stops
    asking about them; a step stored later under such an id is pending again: the next request
    marks it executed."""
    long_ago = NOW - timedelta(days=100)  # read with the fills, outside every cooldown
    probe = harness(name="a")
    probe.trading.buys, probe.trading.client_order_ids = [("S6.US", long_ago)], {"S6.US": "not-a-step"}
    planned = probe.plan(LAST_DAY)
    step = planned.steps[0]
    client_order_id = plan_client_order_id(planned.plan_id, 1, step.symbol, "BUY")
    h = harness(name="b")
    h.trading.buys, h.trading.client_order_ids = [("S6.US", long_ago)], {"S6.US": client_order_id}
    plan = h.plan(LAST_DAY)  # the fill is checked (no step yet), then the step is stored under its id
    assert plan.plan_id == planned.plan_id
    assert {r.uuid: r for r in rows(h)["recommendations"]}[step.uuid].status == PENDING
    assert h.plan(LAST_DAY).cached
    stored = {r.uuid: r for r in rows(h)["recommendations"]}[step.uuid]
    assert stored.status == EXECUTED and stored.executed_at == long_ago


def test_plan_ids_and_recommendation_ids_are_deterministic(harness):
    first, second = harness(name="a"), harness(name="b")
    one, two = first.plan(LAST_DAY), second.plan(LAST_DAY)
    assert one.plan_id == two.plan_id and [s.uuid for s in one.steps] == [s.uuid for s in two.steps]
    assert [(s.symbol, s.quantity) for s in one.steps] == [(s.symbol, s.quantity) for s in two.steps]


@pytest.mark.parametrize("max_steps", [-1, 11, 1000])
def test_get_recommendations_bad_input_is_named_and_changes_nothing(harness, max_steps):
    h = harness()
    error = rejected(lambda: h.plan(LAST_DAY, max_steps=max_steps))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("max_steps: ")
    assert rows(h) == {"plans": [], "recommendations": []}


@pytest.mark.parametrize("value,code,starts", [
    ("", grpc.StatusCode.INVALID_ARGUMENT, "uuid: is required"),
    ("   ", grpc.StatusCode.INVALID_ARGUMENT, "uuid: is required"),
    ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT, "uuid: not a UUID"),
    ("x" * 10_000, grpc.StatusCode.INVALID_ARGUMENT, "uuid: not a UUID"),
    (str(uuid.UUID(int=7)), grpc.StatusCode.NOT_FOUND, "unknown recommendation"),
])
def test_dismiss_bad_input_is_named_and_changes_nothing(harness, value, code, starts):
    h = harness()
    h.plan(LAST_DAY)
    before = rows(h)
    error = rejected(lambda: h.dismiss(LAST_DAY, value))
    assert error.code() == code and error.details().startswith(starts)
    assert rows(h) == before


# --- the state key follows what it covers ---

def test_the_state_key_changes_with_a_target_an_allow_flag_cash_or_a_position(harness):
    h = harness()
    keys = [h.plan(LAST_DAY).state_key]

    def upsert(**fields):
        h.data_stub.UpsertSecurity(data_pb2.UpsertSecurityRequest(security=data_pb2.Security(
            symbol="S1.US", name="S1", currency="USD", exchange="XNYS", country="United States", industry="Software",
            active=True, **{"allow_buy": True, "allow_sell": True, **fields})), metadata=[as_of(LAST_DAY)])
        keys.append(h.plan(LAST_DAY).state_key)

    upsert(max_portfolio_target=5)
    upsert(max_portfolio_target=5, min_portfolio_target=1)
    upsert(max_portfolio_target=5, min_portfolio_target=1, allow_sell=False)
    upsert(max_portfolio_target=5, min_portfolio_target=1, allow_sell=False, allow_buy=False)
    positions = [portfolio_pb2.BrokerPosition(symbol="S2.US", quantity=3, average_cost=100.0, currency="USD"),
                 portfolio_pb2.BrokerPosition(symbol="S3.US", quantity=2, average_cost=100.0, currency="USD")]
    for cash, held in ((90_000.0, positions[:1]), (90_000.0, positions), (80_000.0, positions)):
        h.portfolio_stub.ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(
            cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=cash)], positions=held))
        keys.append(h.plan(LAST_DAY).state_key)
    assert len(set(keys)) == len(keys)
    h.portfolio_stub.ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(  # the same state, other order
        cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=80_000.0)], positions=positions[::-1]))
    assert h.plan(LAST_DAY).state_key == keys[-1]


def test_other_settings_are_another_state(harness):
    default, cautious = harness(name="d"), harness(name="c", config_toml="[optimizer]\nmin_cash_reserve = 5000.0\n")
    one, two = default.plan(LAST_DAY), cautious.plan(LAST_DAY)
    assert one.portfolio_hash == two.portfolio_hash and one.settings_hash != two.settings_hash
    assert two.reserve_base == 5_000.0 and sum(two.target_weights.values()) == pytest.approx(0.95, abs=1e-5)


settings_values = st.fixed_dictionaries({key: st.one_of(st.integers(-1000, 1000), st.floats(allow_nan=False))
                                         for key in SETTINGS_KEYS})


@given(settings_values, st.randoms(use_true_random=False), st.sampled_from(SETTINGS_KEYS))
def test_settings_hash_is_the_original_stable_under_reordering_and_moves_with_each_key(values, rng, key):
    shuffled = list(values.items())
    rng.shuffle(shuffled)
    canonical = ",".join(f"{k}:{values[k]}" for k in sorted(values))
    assert settings_hash(dict(shuffled)) == settings_hash(values) == hashlib.md5(canonical.encode()).hexdigest()[:8]
    changed = {**values, key: f"{values[key]}1"}
    assert settings_hash(changed) != settings_hash(values)
    missing = {k: v for k, v in values.items() if k != key}
    assert settings_hash(missing) == hashlib.md5(canonical.replace(f"{key}:{values[key]}", f"{key}:").encode()
                                                 ).hexdigest()[:8]
    assert len(state_key("a" * 8, settings_hash(values), "00000000")) == 26


# --- the upsert rules (planner.md section 7) on the store ---

def test_upsert_rules(tmp_path):
    db = store.open_database(f"sqlite:///{tmp_path / 'planner.db'}")
    key = "aaaaaaaa:bbbbbbbb:00000000"
    step = Recommendation(recommendation_id(key, "X.US", "BUY"), key, "X.US", "BUY", 10, 50.0, "USD", 450.0, "why",
                          PENDING, "plan-1", 1, NOW, NOW)
    assert [upsert_action(s) for s in (None, PENDING, EXECUTED, DISMISSED)] == ["insert", "update", "reset",
                                                                               "suppress"]
    try:
        with db.transaction() as session:
            inserted = store.upsert_recommendation(session, step, "coid-1", NOW)
            assert inserted.status == PENDING and inserted.uuid == step.uuid
            later = NOW + timedelta(days=1)
            updated = store.upsert_recommendation(session, Recommendation(**{**vars(step), "quantity": 12}), None,
                                                  later)
            assert (updated.uuid, updated.quantity, updated.created_at, updated.updated_at) == (
                step.uuid, 12, NOW, later)
            assert store.mark_executed(session, {"coid-1": later}) == 0  # the id went with the update
            store.upsert_recommendation(session, step, "coid-2", later)
            assert store.mark_executed(session, {"coid-2": later, "other": later}) == 1
            assert store.find_recommendation(session, step.uuid).status == EXECUTED
            reset = store.upsert_recommendation(session, step, "coid-3", later)
            assert reset.status == PENDING and reset.executed_at is None and reset.uuid == step.uuid
            store.dismiss(session, store.find_recommendation(session, step.uuid), later)
            assert store.upsert_recommendation(session, step, "coid-4", later) is None
            assert session.scalar(select(func.count()).select_from(store.RecommendationRow)) == 1
    finally:
        db.close()


# --- on the bundled history (the six services as processes) ---

@pytest.mark.e2e
def test_optimize_on_the_bundled_history(running_suite):
    from trader.planner.v1 import planner_pb2, planner_pb2_grpc

    from tests.helpers import TOKEN

    planner = planner_pb2_grpc.PlannerStub(running_suite.channel("planner"))
    metadata = [("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", "2020-03-16T22:00:00+00:00")]
    reply = planner.Optimize(planner_pb2.OptimizeRequest(), metadata=metadata, timeout=120)
    assert reply.method == "blend" and reply.fallback.level == "full" and reply.regime == "bear"  # March 2020
    assert len(reply.securities) == 20 and not reply.excluded  # the 20 bundled stocks, the index never traded
    assert all(0 < w <= 0.2 for w in reply.target_weights.values())
    assert sum(reply.target_weights.values()) <= 1 + 1e-9 and reply.reserve_base >= 500
    assert not any("market regime unknown" in note for note in reply.notes)
    again = planner.Optimize(planner_pb2.OptimizeRequest(), metadata=metadata, timeout=120)
    assert again.target_weights == reply.target_weights


def test_targets_are_reused_for_the_same_state_for_48_hours(harness, monkeypatch):
    """The original's 48-hour cache per state: the next day's plan reuses the targets (the
    optimiser not run; the holistic planner still reads closes, metrics and fundamentals, one
    call each), a new state or a target older than 48 hours is computed again."""
    from services.planner import engine as planner_engine

    runs = []
    optimize = planner_engine.optimize
    monkeypatch.setattr(planner_engine, "optimize", lambda inputs: runs.append(inputs) or optimize(inputs))
    h = harness()
    first = h.plan(LAST_DAY)
    assert not any("reused" in note for note in first.notes) and len(runs) == 1
    peers = h.engine._peers
    original = peers._data
    counting = counting_data(peers)
    next_day = h.plan(LAST_DAY + timedelta(days=1))
    assert [note for note in next_day.notes if "reused" in note] == [
        f"targets computed {NOW:%Y-%m-%d %H:%M} UTC for this state reused (at most 48 hours)"]
    assert dict(next_day.target_weights) == dict(first.target_weights) and next_day.plan_id != first.plan_id
    assert len(runs) == 1
    assert all(counting.calls[m] == 1 for m in ("GetPriceHistories", "GetMetrics", "GetFundamentals"))
    peers._data = original
    later = h.plan(LAST_DAY + timedelta(days=3))  # 72 hours after the targets
    assert len(runs) == 2
    assert not any("reused" in note for note in later.notes)
    h.portfolio_stub.ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(
        cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=90_000.0)]))
    other_state = h.plan(LAST_DAY + timedelta(days=3))
    assert other_state.state_key != later.state_key and not any("reused" in note for note in other_state.notes)


def test_the_planner_reads_the_targets_anew_once_another_transaction_changed_them(harness, monkeypatch):
    """The targets' index kept in memory (what reuse is decided on) follows the table: deleted
    by another transaction (retention), the targets are computed again the next day."""
    from services.planner import engine as planner_engine

    runs = []
    optimize = planner_engine.optimize
    monkeypatch.setattr(planner_engine, "optimize", lambda inputs: runs.append(inputs) or optimize(inputs))
    h = harness()
    h.plan(LAST_DAY)
    with h.planner_db.transaction() as session:
        assert store.delete_plans_created_before(session, NOW + timedelta(hours=1)) == 2  # the plan, the targets
    next_day = h.plan(LAST_DAY + timedelta(days=1))
    assert len(runs) == 2 and not any("reused" in note for note in next_day.notes)
    assert any("reused" in note for note in h.plan(LAST_DAY + timedelta(days=2)).notes) and len(runs) == 2


def test_upserting_steps_together_stores_what_one_at_a_time_stores(tmp_path):
    """upsert_recommendations (one read, one INSERT, one UPDATE) = upsert_recommendation per step."""
    key, later = "aaaaaaaa:bbbbbbbb:00000000", NOW + timedelta(days=1)

    def step(symbol, side="BUY", quantity=10, number=1):
        return Recommendation(recommendation_id(key, symbol, side), key, symbol, side, quantity, 50.0, "USD", 450.0,
                              "why", PENDING, "plan-2", number, later, later)

    def stored(db):
        with db.transaction() as session:
            found = session.scalars(select(store.RecommendationRow))
            return sorted(((r.to_domain(), r.client_order_id) for r in found), key=lambda pair: pair[0].uuid)

    planned = [(step("NEW.US"), "coid-n"), (step("PEND.US", quantity=3, number=2), None),
               (step("EXEC.US", "SELL", number=3), None), (step("DISM.US"), None),
               (step("NEW.US", quantity=7, number=4), "coid-again"), (step("PEND.US", "SELL", number=5), None)]
    dbs, results = [], []
    for name in ("together", "apart"):
        db = store.open_database(f"sqlite:///{tmp_path / name}.db")
        dbs.append(db)
        with db.transaction() as session:
            for symbol, side in (("PEND.US", "BUY"), ("EXEC.US", "SELL"), ("DISM.US", "BUY")):
                store.upsert_recommendation(session, replace(step(symbol, side), plan_id="plan-1",
                                                             created_at=NOW, updated_at=NOW), f"old-{symbol}", NOW)
            store.mark_executed(session, {"old-EXEC.US": NOW})
            store.dismiss(session, store.find_recommendation(session, step("DISM.US").uuid), NOW)
        with db.transaction() as session:
            if name == "together":
                results.append(store.upsert_recommendations(session, planned, later))
            else:
                results.append([store.upsert_recommendation(session, s, c, later) for s, c in planned])
    try:
        assert results[0] == results[1] and results[0][3] is None and results[0][4].quantity == 7
        assert stored(dbs[0]) == stored(dbs[1])
        assert {r.symbol: r.status for r, _ in stored(dbs[0])} == {
            "NEW.US": PENDING, "PEND.US": PENDING, "EXEC.US": PENDING, "DISM.US": DISMISSED}
    finally:
        for db in dbs:
            db.close()
