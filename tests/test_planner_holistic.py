"""The holistic planner over gRPC with the real data and portfolio services (issue 14): plans
with SELL steps once the holding rules allow, determinism, incremental batches, CreatePlan,
planner configurations with history, allocation targets reaching the optimiser, and bad input
to every new RPC refused (INVALID_ARGUMENT naming the field) without changing anything."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace

import grpc
import pytest
from sqlalchemy import select
from trader.data.v1 import data_pb2
from trader.planner.v1 import planner_pb2
from trader.portfolio.v1 import portfolio_pb2

from services.common import clock
from services.common.timestamps import to_timestamp
from services.planner import store
from services.planner.config import preset_text
from services.planner.server import PlannerServicer
from tests.data_fixtures import random_walk, security
from tests.planner_fixtures import PlannerHarness, as_of

SYMBOLS = [f"S{i}.US" for i in range(7)]
COUNTRIES = ["United States"] * 3 + ["Germany"] * 2 + ["Japan"] * 2
COUNT = 420
LAST_DAY = random_walk(COUNT)[-1].date
IN_SESSION = datetime.combine(LAST_DAY, time(15), UTC)   # 11:00 in New York: the market is open
PRICE_S0 = random_walk(COUNT, seed=1)[-2].close             # the quote at IN_SESSION: the day before's close


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(name="h", **kw):
        folder = tmp_path / f"{name}{len(made)}"
        folder.mkdir()
        bars = {s: random_walk(COUNT, seed=i + 1) for i, s in enumerate(SYMBOLS)}
        made.append(PlannerHarness(folder, [security(s, country=c) for s, c in zip(SYMBOLS, COUNTRIES, strict=True)],
                                   bars, **kw))
        return made[-1]

    yield make
    for h in made:
        h.close()


def at(moment: datetime) -> list[tuple[str, str]]:
    return [("x-trader-as-of", moment.isoformat())]


def plan_at(h: PlannerHarness, moment: datetime, **request) -> planner_pb2.GetRecommendationsResponse:
    return h.planner_stub.GetRecommendations(planner_pb2.GetRecommendationsRequest(**request), metadata=at(moment),
                                             timeout=60)


def hold(h: PlannerHarness, symbol: str, quantity: int, cost: float, bought: datetime, cash: float) -> None:
    """The broker holds `quantity` of `symbol`, bought at `cost` (USD) on `bought`, and `cash` EUR."""
    h.portfolio_stub.ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(
        positions=[portfolio_pb2.BrokerPosition(symbol=symbol, quantity=quantity, average_cost=cost, currency="USD")],
        cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=cash)],
        fills=[portfolio_pb2.BrokerFill(ledger_id=1, broker_trade_id="T1", client_order_id="old", symbol=symbol,
                                        side=portfolio_pb2.BUY, quantity=quantity, price=cost, currency="USD",
                                        executed_at=to_timestamp(bought))]), metadata=at(bought))


def cap(h: PlannerHarness, symbol: str, percent: float) -> None:
    country = COUNTRIES[SYMBOLS.index(symbol)]
    h.data_stub.UpsertSecurity(data_pb2.UpsertSecurityRequest(security=data_pb2.Security(
        symbol=symbol, name=symbol, currency="USD", exchange="XNYS", country=country, industry="Software",
        allow_buy=True, allow_sell=True, active=True, max_portfolio_target=percent)), metadata=at(IN_SESSION))


def rows(h: PlannerHarness) -> dict[str, list]:
    with h.planner_db.transaction() as session:
        return {name: [tuple(getattr(r, c.name) for c in table.__table__.columns) for r in session.scalars(
            select(table))] for name, table in (
            ("plans", store.PlanRow), ("recommendations", store.RecommendationRow), ("batches", store.BatchRow),
            ("sequences", store.SequenceRow), ("evaluations", store.EvaluationRow),
            ("configs", store.PlannerConfigRow), ("history", store.PlannerConfigHistoryRow))}


def rejected(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# --- SELL steps ---

def test_an_overweight_holding_gets_a_sell_step_once_its_holding_rules_allow(harness):
    """S0 is about half the portfolio with max_portfolio_target 5%: bought 275 days ago the plan
    sells it down to 5% first; bought 100 days ago (inside the 180-day holding period counted
    from the last transaction), or with the market closed, it does not."""
    h = harness()
    hold(h, "S0.US", 500, PRICE_S0 * 0.9, IN_SESSION - timedelta(days=275), 40_000.0)
    cap(h, "S0.US", 5)
    plan = plan_at(h, IN_SESSION)
    first = plan.steps[0]
    assert (planner_pb2.Side.Name(first.side), first.symbol, first.category) == ("SELL", "S0.US", "over_cap")
    value = 500 * PRICE_S0 / 1.10
    total = value + 40_000
    left = (500 - first.quantity) * PRICE_S0 / 1.10
    assert left <= 0.05 * (total) and left + PRICE_S0 / 1.10 > 0.05 * total  # whole shares, just under the cap
    assert plan.complete and plan.feasible and plan.cash_generated_base > 0 and "S0.US" in first.narrative
    assert all(s.symbol != "S0.US" for s in plan.steps[1:])
    recent = harness(name="recent")
    hold(recent, "S0.US", 500, PRICE_S0 * 0.9, IN_SESSION - timedelta(days=100), 40_000.0)
    cap(recent, "S0.US", 5)
    assert all(planner_pb2.Side.Name(s.side) == "BUY" for s in plan_at(recent, IN_SESSION).steps)
    closed = plan_at(h, datetime.combine(LAST_DAY, time(22), UTC))  # after the close: a SELL needs it open
    assert all(planner_pb2.Side.Name(s.side) == "BUY" for s in closed.steps)


def test_a_holding_below_the_loss_floor_is_not_sold(harness):
    h = harness()
    hold(h, "S0.US", 500, PRICE_S0 * 1.3, IN_SESSION - timedelta(days=275), 40_000.0)  # -23%
    cap(h, "S0.US", 5)
    assert "S0.US" not in {s.symbol for s in plan_at(h, IN_SESSION).steps if planner_pb2.Side.Name(s.side) == "SELL"}


def test_the_same_state_gives_the_same_plan(harness):
    one, two = harness(name="a"), harness(name="b")
    for h in (one, two):
        hold(h, "S0.US", 500, PRICE_S0 * 0.9, IN_SESSION - timedelta(days=275), 40_000.0)
        cap(h, "S0.US", 5)
    first, second = plan_at(one, IN_SESSION), plan_at(two, IN_SESSION)
    assert first.plan_id == second.plan_id and first.steps == second.steps and first.steps
    assert first.end_state_score == second.end_state_score and first.sequences_generated > 1


def test_the_plan_reports_scores_cash_and_narratives(harness):
    h = harness()
    plan = h.plan(LAST_DAY)
    assert plan.complete and plan.steps and plan.config_name == "core" and plan.evaluation_mode == "deterministic"
    assert 0 <= plan.current_score <= 100 and 0 <= plan.end_state_score <= 100
    assert plan.improvement == pytest.approx(plan.end_state_score - plan.current_score)
    required = sum(s.estimated_value_base + 2 + 0.002 * s.estimated_value_base for s in plan.steps)
    assert plan.cash_required_base == pytest.approx(required) and plan.cash_generated_base == 0 and plan.feasible
    assert all(s.narrative.startswith(f"Step {s.step}: buy ") and s.category for s in plan.steps)
    assert plan.narrative and plan.sequences_evaluated == plan.sequences_generated > 0


# --- batches ---

def test_a_cycle_without_time_budget_waits_for_the_batches(harness):
    """With a budget of 0 s the cycle's plan has no step until RunPlannerBatch has evaluated
    every sequence; then it is the batch's best, the same as a plan evaluated at once."""
    h = harness(config_toml="[batch]\ncycle_time_budget_seconds = 0.0\n")
    waiting = h.plan(LAST_DAY)
    assert not waiting.complete and not waiting.steps and not waiting.cached and waiting.sequences_generated > 3
    assert any("evaluation in progress" in n for n in waiting.notes)
    assert rows(h)["recommendations"] == [] and rows(h)["plans"] == []
    status = h.planner_stub.RunPlannerBatch(planner_pb2.RunPlannerBatchRequest(size=2), metadata=[as_of(LAST_DAY)])
    assert (status.evaluated, status.evaluated_now, status.complete) == (2, 2, False)
    assert status.HasField("best_score") and status.best_steps and status.state_key == waiting.state_key
    assert h.planner_stub.GetPlannerStatus(planner_pb2.GetPlannerStatusRequest()).evaluated == 2
    while not status.complete:
        status = h.planner_stub.RunPlannerBatch(planner_pb2.RunPlannerBatchRequest(), metadata=[as_of(LAST_DAY)])
    assert status.evaluated == status.generated == waiting.sequences_generated
    done = h.plan(LAST_DAY)
    assert done.complete and done.steps and done.end_state_score == pytest.approx(status.best_score)
    assert [s.symbol for s in done.steps] == [s.symbol for s in status.best_steps]
    once = harness(name="once")
    assert [(s.symbol, s.quantity) for s in once.plan(LAST_DAY).steps] == [(s.symbol, s.quantity) for s in done.steps]


def test_a_batch_evaluated_by_the_request_that_generated_it_scores_as_one_read_back(harness):
    """The request that generates a batch evaluates it from the sequences and books it has in
    memory; RunPlannerBatch reads them back from the store: every evaluation and the best are
    bit for bit the same."""
    pieces = harness(name="pieces", config_toml="[batch]\ncycle_time_budget_seconds = 0.0\n")
    assert not pieces.plan(LAST_DAY).complete
    status = pieces.planner_stub.RunPlannerBatch(planner_pb2.RunPlannerBatchRequest(size=3),
                                                 metadata=[as_of(LAST_DAY)])
    while not status.complete:
        status = pieces.planner_stub.RunPlannerBatch(planner_pb2.RunPlannerBatchRequest(), metadata=[as_of(LAST_DAY)])
    once = harness(name="once")
    assert once.plan(LAST_DAY).complete
    scored = [sorted(r[1:6] for r in rows(h)["evaluations"]) for h in (pieces, once)]
    assert scored[0] == scored[1] and len(scored[0]) == status.generated
    best = [[r[11:13] for r in rows(h)["batches"]] for h in (pieces, once)]  # best_sequence_hash, best_score
    assert best[0] == best[1] and best[0][0][1] is not None


def test_the_cycle_budget_stops_before_the_callers_deadline(harness):
    """A caller whose deadline is closer than the reply margin gets a plan without steps (its
    batch stored, nothing evaluated) instead of a DEADLINE_EXCEEDED; without a deadline the
    configured budget completes it. The servicer hands the call's time remaining on."""
    h = harness()
    moment = datetime.combine(LAST_DAY, time(22), UTC)
    with clock.use_as_of(moment):
        hurried = h.engine.recommendations(moment, time_left=0.5)
        assert not hurried.complete and not hurried.steps and hurried.sequences_evaluated == 0
        assert any("within the 0 s budget" in n for n in hurried.notes)
        servicer = PlannerServicer(h.engine, None, h.configs)
        reply = servicer.GetRecommendations(planner_pb2.GetRecommendationsRequest(),
                                            SimpleNamespace(time_remaining=lambda: 0.2))
        assert not reply.complete and not reply.steps
        assert rows(h)["recommendations"] == [] and rows(h)["plans"] == []
        done = h.engine.recommendations(moment, time_left=None)
    assert done.complete and done.steps and done.sequences_evaluated == hurried.sequences_generated


def test_in_replay_and_backtest_mode_neither_the_budget_nor_the_deadline_cuts_the_batch(harness):
    """A backtest's plan must not depend on the machine's speed: with complete_batches (the
    simulated modes) a hurried caller and a zero budget still get the whole batch's plan, the
    same plan as an unhurried one."""
    unhurried = harness(name="unhurried")
    moment = datetime.combine(LAST_DAY, time(22), UTC)
    with clock.use_as_of(moment):
        expected = unhurried.engine.recommendations(moment, time_left=None)
    zero_budget = re.sub(r"cycle_time_budget_seconds = [0-9.]+", "cycle_time_budget_seconds = 0.0",
                         preset_text("default"))
    for made in (harness(name="hurried", complete_batches=True),
                 harness(name="zero", complete_batches=True, config_toml=zero_budget)):
        with clock.use_as_of(moment):
            plan = made.engine.recommendations(moment, time_left=0.01)
        assert plan.complete and plan.steps and plan.sequences_evaluated == plan.sequences_generated
        assert [(s.symbol, s.side, s.quantity) for s in plan.steps] == \
            [(s.symbol, s.side, s.quantity) for s in expected.steps]


def test_a_new_state_discards_the_old_batch(harness):
    h = harness()
    first = h.plan(LAST_DAY)
    old = h.planner_stub.GetPlannerStatus(planner_pb2.GetPlannerStatusRequest())
    assert old.complete and old.state_key == first.state_key
    h.portfolio_stub.ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(
        cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=90_000.0)]))
    second = h.plan(LAST_DAY)
    assert second.state_key != first.state_key
    stored = rows(h)
    assert {r[0] for r in stored["batches"]} == {r[0] for r in stored["sequences"]} == \
        {h.planner_stub.GetPlannerStatus(planner_pb2.GetPlannerStatusRequest()).batch_key} != {old.batch_key}


def test_create_plan_evaluates_under_a_configuration_and_stores_nothing(harness):
    h = harness()
    before = rows(h)
    aggressive = h.planner_stub.GetPlannerConfig(planner_pb2.GetPlannerConfigRequest(name="aggressive"))
    plan = h.planner_stub.CreatePlan(planner_pb2.CreatePlanRequest(config_id=aggressive.id),
                                     metadata=[as_of(LAST_DAY)], timeout=60)
    assert plan.config_name == "aggressive" and plan.evaluation_mode == "stochastic" and plan.steps
    assert plan.settings_hash != h.plan(LAST_DAY).settings_hash
    core = h.planner_stub.CreatePlan(planner_pb2.CreatePlanRequest(), metadata=[as_of(LAST_DAY)], timeout=60)
    assert core.config_name == "core" and rows(h)["batches"] and before["batches"] == []
    assert [(s.symbol, s.quantity) for s in core.steps] == [(s.symbol, s.quantity) for s in h.plan(LAST_DAY).steps]
    after = rows(h)
    h.planner_stub.CreatePlan(planner_pb2.CreatePlanRequest(config_id=aggressive.id), metadata=[as_of(LAST_DAY)])
    assert rows(h) == after


# --- configurations ---

def test_configs_are_seeded_updated_with_history_and_change_the_plan(harness):
    h = harness()
    listed = h.planner_stub.ListPlannerConfigs(planner_pb2.ListPlannerConfigsRequest()).configs
    assert [(c.name, c.bucket_id) for c in listed] == [("core", "core"), ("aggressive", ""), ("conservative", ""),
                                                       ("default", "")]
    core = listed[0]
    assert core.toml == preset_text("default") and json.loads(core.effective)["planner"]["max_depth"] == 5
    plan = h.plan(LAST_DAY)
    updated = h.planner_stub.UpdatePlannerConfig(planner_pb2.UpdatePlannerConfigRequest(
        bucket_id="core", toml="[planner]\nmax_depth = 2\n"), metadata=[as_of(LAST_DAY)])
    assert updated.id == core.id and updated.digest != core.digest
    assert json.loads(updated.effective)["planner"]["max_depth"] == 2
    replanned = h.plan(LAST_DAY)
    assert replanned.settings_hash != plan.settings_hash and replanned.plan_id != plan.plan_id
    assert len(replanned.steps) <= 2 and not replanned.cached
    h.planner_stub.UpdatePlannerConfig(planner_pb2.UpdatePlannerConfigRequest(id=core.id, preset="conservative"))
    history = h.planner_stub.GetPlannerConfigHistory(planner_pb2.GetPlannerConfigHistoryRequest(id=core.id)).versions
    assert [v.toml for v in history] == ["[planner]\nmax_depth = 2\n", preset_text("default")]  # newest first
    unchanged = h.planner_stub.UpdatePlannerConfig(planner_pb2.UpdatePlannerConfigRequest(
        id=core.id, preset="conservative"))
    assert unchanged.updated_at == h.planner_stub.GetPlannerConfig(planner_pb2.GetPlannerConfigRequest(
        id=core.id)).updated_at
    assert len(h.planner_stub.GetPlannerConfigHistory(planner_pb2.GetPlannerConfigHistoryRequest(
        id=core.id)).versions) == 2  # nothing changed, nothing kept


def test_a_satellite_gets_its_own_configuration_with_sliders(harness):
    h = harness()
    h.portfolio_stub.CreateBucket(portfolio_pb2.CreateBucketRequest(id="growth", name="Growth"))
    made = h.planner_stub.UpdatePlannerConfig(planner_pb2.UpdatePlannerConfigRequest(
        bucket_id="growth", preset="aggressive", sliders=planner_pb2.Sliders(risk=1.0, hold=0.5, spread=0.5)))
    effective = json.loads(made.effective)
    assert made.bucket_id == "growth" and made.name == "growth"
    assert effective["planner"]["priority_threshold"] == pytest.approx(0.2)     # 0.5 - 0.3 x 1
    assert effective["planner"]["min_hold_days"] == 105                         # int(30 + 150 x 0.5)
    assert effective["planner"]["max_opportunities_per_category"] == 6         # int(2 + 8 x 0.5)
    assert effective["planner"]["diversity_weight"] == pytest.approx(0.25)      # 0.5 x 0.5
    assert made.sliders == planner_pb2.Sliders(risk=1.0, hold=0.5, spread=0.5)
    cleared = h.planner_stub.UpdatePlannerConfig(planner_pb2.UpdatePlannerConfigRequest(
        id=made.id, sliders=planner_pb2.Sliders()))
    assert not cleared.sliders.HasField("risk") and json.loads(cleared.effective)["planner"]["min_hold_days"] == 60


UPDATE = planner_pb2.UpdatePlannerConfigRequest


@pytest.mark.parametrize("request_message,code,field", [
    (UPDATE(bucket_id="core", toml="[planner]\nmax_dept = 3\n"), "INVALID_ARGUMENT", "toml: planner.max_dept"),
    (UPDATE(bucket_id="core", toml="[planner]\nmax_depth = 11\n"), "INVALID_ARGUMENT", "toml: planner.max_depth"),
    (UPDATE(bucket_id="core", toml="[planners]\n"), "INVALID_ARGUMENT", "toml: planners"),
    (UPDATE(bucket_id="core", toml="[filters.magic]\nenabled = true\n"), "INVALID_ARGUMENT", "toml: filters.magic"),
    (UPDATE(bucket_id="core", toml="[planner\n"), "INVALID_ARGUMENT", "toml: not valid TOML"),
    (UPDATE(bucket_id="core", toml="[planner]\nallow_buy = false\nallow_sell = false\n"), "INVALID_ARGUMENT",
     "toml: planner.allow_buy"),
    (UPDATE(bucket_id="core", preset="reckless"), "INVALID_ARGUMENT", "preset"),
    (UPDATE(bucket_id="core", preset="default", toml=""), "INVALID_ARGUMENT", "preset"),
    (UPDATE(bucket_id="core", sliders=planner_pb2.Sliders(risk=0.5)), "INVALID_ARGUMENT", "sliders"),
    (UPDATE(bucket_id="core", name=""), "INVALID_ARGUMENT", "name"),
    (UPDATE(bucket_id="core", name="aggressive"), "INVALID_ARGUMENT", "name"),
    (UPDATE(bucket_id="Not A Bucket"), "INVALID_ARGUMENT", "bucket_id"),
    (UPDATE(bucket_id="nosuch"), "NOT_FOUND", ""),
    (UPDATE(id="not-a-uuid"), "INVALID_ARGUMENT", "id"),
    (UPDATE(id="6f1c1f8e-3d0a-5d43-9a57-5d1e1c0f7a11"), "NOT_FOUND", ""),
    (UPDATE(), "INVALID_ARGUMENT", "id"),
    (UPDATE(id="6f1c1f8e-3d0a-5d43-9a57-5d1e1c0f7a11", bucket_id="core"), "INVALID_ARGUMENT", "id"),
])
def test_update_planner_config_bad_input_is_named_and_changes_nothing(harness, request_message, code, field):
    h = harness()
    h.portfolio_stub.CreateBucket(portfolio_pb2.CreateBucketRequest(id="growth", name="Growth"))
    before = rows(h)
    error = rejected(lambda: h.planner_stub.UpdatePlannerConfig(request_message))
    assert error.code().name == code and error.details().startswith(field)
    assert rows(h) == before


def test_sliders_out_of_range_on_a_satellite_are_refused(harness):
    h = harness()
    h.portfolio_stub.CreateBucket(portfolio_pb2.CreateBucketRequest(id="growth", name="Growth"))
    before = rows(h)
    error = rejected(lambda: h.planner_stub.UpdatePlannerConfig(UPDATE(
        bucket_id="growth", sliders=planner_pb2.Sliders(hold=1.5))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("sliders.hold")
    assert rows(h) == before


@pytest.mark.parametrize("call,code,field", [
    (lambda s: s.RunPlannerBatch(planner_pb2.RunPlannerBatchRequest(size=-1)), "INVALID_ARGUMENT", "size"),
    (lambda s: s.RunPlannerBatch(planner_pb2.RunPlannerBatchRequest(size=100_001)), "INVALID_ARGUMENT", "size"),
    (lambda s: s.CreatePlan(planner_pb2.CreatePlanRequest(config_id="x")), "INVALID_ARGUMENT", "id"),
    (lambda s: s.CreatePlan(planner_pb2.CreatePlanRequest(config_id="6f1c1f8e-3d0a-5d43-9a57-5d1e1c0f7a11")),
     "NOT_FOUND", ""),
    (lambda s: s.GetPlannerConfig(planner_pb2.GetPlannerConfigRequest()), "INVALID_ARGUMENT", "id"),
    (lambda s: s.GetPlannerConfig(planner_pb2.GetPlannerConfigRequest(name="core", bucket_id="core")),
     "INVALID_ARGUMENT", "id"),
    (lambda s: s.GetPlannerConfig(planner_pb2.GetPlannerConfigRequest(name="nope")), "NOT_FOUND", ""),
    (lambda s: s.GetPlannerConfigHistory(planner_pb2.GetPlannerConfigHistoryRequest(id="x")), "INVALID_ARGUMENT",
     "id"),
    (lambda s: s.GetPlannerConfigHistory(planner_pb2.GetPlannerConfigHistoryRequest(limit=-1)), "INVALID_ARGUMENT",
     "limit"),
    (lambda s: s.GetPlannerConfigHistory(planner_pb2.GetPlannerConfigHistoryRequest(limit=1001)),
     "INVALID_ARGUMENT", "limit"),
])
def test_bad_input_to_the_new_rpcs_is_named_and_changes_nothing(harness, call, code, field):
    h = harness()
    before = rows(h)
    error = rejected(lambda: call(h.planner_stub))
    assert error.code().name == code and error.details().startswith(field)
    assert rows(h) == before


def test_status_before_any_plan_is_empty(harness):
    status = harness().planner_stub.GetPlannerStatus(planner_pb2.GetPlannerStatusRequest())
    assert status.batch_key == "" and status.generated == 0 and not status.HasField("best_score")


# --- allocation targets reach the optimiser ---

def test_set_allocation_targets_changes_the_optimisers_sector_constraints(harness):
    h = harness()
    now = datetime.combine(LAST_DAY, time(22), UTC)
    assert h.optimize(LAST_DAY).target_weights and h.engine.optimize(now).result.constraints == []
    h.portfolio_stub.SetAllocationTargets(portfolio_pb2.SetAllocationTargetsRequest(country_targets=[
        portfolio_pb2.GroupTarget(group="US", share=0.5), portfolio_pb2.GroupTarget(group="EU", share=0.3),
        portfolio_pb2.GroupTarget(group="ASIA", share=0.2)]))
    reply = h.optimize(LAST_DAY)
    constraints = {c.name: c for c in h.engine.optimize(now).result.constraints}
    assert set(constraints) == {"US", "EU", "ASIA"}
    invested = sum(reply.target_weights.values())
    for name, constraint in constraints.items():
        share = sum(reply.target_weights.get(s, 0.0) for s in constraint.symbols) / invested
        assert constraint.lower - 1e-4 <= share <= constraint.upper + 1e-4, name
    assert h.plan(LAST_DAY).allocations_hash != "00000000"
