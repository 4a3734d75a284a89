"""Buckets (issue 12 item 5, trading-portfolio-jobs.md section 6): every lifecycle transition,
deposit allocation, withdrawals, the loss streak, drawdown hibernation and re-awakening, the
aggression multiplier, the meta-allocator, transfers and the daily reconciliation."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from services.portfolio import buckets as rules
from services.portfolio.engine import BrokerState
from services.portfolio.positions import FillRecord
from services.portfolio.valuation import Holding
from tests.portfolio_fixtures import START, FakePeers, portfolio_engine

STATUSES = ("research", "accumulating", "active", "hibernating", "paused", "retired")
# (transition, kind) -> {status it may start from: status it ends in}; written out from the
# specification, independently of buckets.TRANSITIONS.
ALLOWED = {
    ("activate", "satellite"): {"research": "active", "accumulating": "active"},
    ("activate", "core"): {"research": "active", "accumulating": "active"},
    ("pause", "satellite"): {s: "paused" for s in ("research", "accumulating", "active", "hibernating")},
    ("pause", "core"): {s: "paused" for s in ("research", "accumulating", "active", "hibernating")},
    ("resume", "satellite"): {"paused": "active"},  # target >= min here; below: accumulating (tested apart)
    ("resume", "core"): {"paused": "active"},
    ("hibernate", "satellite"): {s: "hibernating" for s in ("accumulating", "active", "paused")},
    ("hibernate", "core"): {},
    ("retire", "satellite"): {"paused": "retired"},
    ("retire", "core"): {},
}
RULES = {"activate": "activate_from_research_or_accumulating", "pause": "pause_not_from_paused_or_retired",
         "resume": "resume_only_from_paused", "hibernate": "hibernate_not_from_research_retired_or_hibernating",
         "retire": "retire_only_from_paused"}
CORE_RULES = {"hibernate": "core_never_hibernates", "retire": "core_is_permanent"}


def bucket(status: str, kind: str = "satellite", target: float = 0.05, minimum: float = 0.02) -> rules.Bucket:
    return rules.Bucket("core" if kind == "core" else "sat", kind, status, target, minimum, 0.15)


@pytest.mark.parametrize("kind", ["satellite", "core"])
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ["activate", "pause", "resume", "hibernate", "retire"])
def test_every_transition_is_allowed_or_refused_naming_the_rule(action, status, kind):
    allowed = ALLOWED[(action, kind)]
    if status in allowed:
        assert rules.transition(bucket(status, kind), action, largest_balance=0.0) == allowed[status]
        return
    with pytest.raises(FailedPrecondition) as refused:
        rules.transition(bucket(status, kind), action, largest_balance=0.0)
    expected = CORE_RULES.get(action) if kind == "core" and action in CORE_RULES else RULES[action]
    assert refused.value.rule == expected and refused.value.message.startswith(expected + ":")


def test_resume_below_the_minimum_share_accumulates():
    assert rules.transition(bucket("paused", target=0.01, minimum=0.02), "resume", 0.0) == "accumulating"


def test_retiring_needs_empty_balances():
    with pytest.raises(FailedPrecondition, match="^retire_needs_empty_balances"):
        rules.transition(bucket("paused"), "retire", largest_balance=0.02)
    assert rules.transition(bucket("paused"), "retire", largest_balance=0.01) == "retired"


def test_transitions_through_the_engine_store_the_status_and_refuse_without_change(tmp_path):
    engine, _, db = portfolio_engine(tmp_path)
    book = engine.buckets
    try:
        book.create("momentum", "Momentum", "research", None, None, "reinvest_same", START)
        assert book.transition("momentum", "activate", "ready", START).bucket.status == "active"
        with pytest.raises(FailedPrecondition, match="^activate_from_research_or_accumulating"):
            book.transition("momentum", "activate", "again", START)
        assert book.view("momentum", START).bucket.status == "active"
        assert book.transition("momentum", "hibernate", "", START).bucket.status == "hibernating"
        assert book.transition("momentum", "pause", "", START).bucket.status == "paused"
        assert book.transition("momentum", "retire", "", START).bucket.status == "retired"
        with pytest.raises(FailedPrecondition, match="^core_never_hibernates"):
            book.transition("core", "hibernate", "", START)
        with pytest.raises(AlreadyExists):
            book.create("momentum", "Again", "research", None, None, "reinvest_same", START)
        with pytest.raises(InvalidArgument, match="^status"):
            book.create("other", "Other", "active", None, None, "reinvest_same", START)
        with pytest.raises(InvalidArgument, match="^id"):
            book.create("Not Valid", "Other", "research", None, None, "reinvest_same", START)
    finally:
        db.close()


def test_a_target_above_the_maximum_or_the_budget_is_refused(tmp_path):
    engine, _, db = portfolio_engine(tmp_path)
    book = engine.buckets
    try:
        book.update_settings({"satellite_budget": 0.2}, START)
        book.create("a", "A", "accumulating", 0.02, 0.10, "reinvest_same", START)
        book.create("b", "B", "accumulating", 0.02, 0.15, "reinvest_same", START)
        with pytest.raises(InvalidArgument, match="^target_share"):
            book.update("a", {"target_share": 0.12}, START)
        book.update("a", {"target_share": 0.10}, START)
        with pytest.raises(FailedPrecondition, match="^satellite_budget_exceeded"):
            book.update("b", {"target_share": 0.11}, START)
        with pytest.raises(FailedPrecondition, match="^core_target_follows_budget"):
            book.update("core", {"target_share": 0.5}, START)
        with pytest.raises(InvalidArgument, match="^satellite_budget"):
            book.update_settings({"satellite_budget": 0.31}, START)
        with pytest.raises(FailedPrecondition, match="^satellite_budget_exceeded"):
            book.update_settings({"satellite_budget": 0.05}, START)
        assert book.view("core", START).bucket.target_share == pytest.approx(0.8)
    finally:
        db.close()


# --- money ---

def funding(buckets):
    return [rules.Funding(b, "core" if b == "core" else "satellite", s, t, v) for b, s, t, v in buckets]


def test_deposit_allocation_tops_up_core_then_satellites_by_deficit_then_core():
    """Total after the deposit 10,000; budget 0.3: core to 7,000 (holds 6,000: gets 1,000); the
    other 1,500 to satellites by deficit: A 0.15 * 10,000 - 500 = 1,000, B 0.10 * 10,000 - 500
    = 500 (sum 1,500 exactly); C is paused and gets nothing."""
    parts = rules.allocate_deposit(2500.0, funding([("core", "active", 0.7, 6000.0), ("a", "active", 0.15, 500.0),
                                                    ("b", "accumulating", 0.10, 500.0),
                                                    ("c", "paused", 0.05, 500.0)]), 0.3)
    assert parts == pytest.approx({"core": 1000.0, "a": 1000.0, "b": 500.0})


def test_a_deposit_beyond_every_deficit_leaves_the_rest_in_core():
    parts = rules.allocate_deposit(1000.0, funding([("core", "active", 0.8, 5000.0), ("a", "active", 0.2, 0.0)]), 0.2)
    # total 6,000: core wants 4,800 (has more); A's deficit is 1,200 > 1,000: A gets all 1,000
    assert parts == pytest.approx({"core": 0.0, "a": 1000.0})
    parts = rules.allocate_deposit(5000.0, funding([("core", "active", 0.8, 0.0), ("a", "active", 0.1, 0.0)]), 0.2)
    assert parts == pytest.approx({"core": 4500.0, "a": 500.0})  # 4,000 + the 500 no deficit takes
    assert sum(parts.values()) == pytest.approx(5000.0)


def test_a_withdrawal_takes_from_core_first_then_the_satellites():
    assert rules.split_withdrawal(300.0, {"core": 500.0, "a": 100.0}) == pytest.approx({"core": -300.0})
    assert rules.split_withdrawal(700.0, {"core": 500.0, "a": 100.0, "b": 300.0}) == pytest.approx(
        {"core": -500.0, "a": -50.0, "b": -150.0})
    assert rules.split_withdrawal(1000.0, {"core": 500.0, "a": 100.0}) == pytest.approx({"core": -900.0, "a": -100.0})


def test_transfers_follow_the_rules_and_are_idempotent(tmp_path):
    engine, _, db = portfolio_engine(tmp_path)
    book = engine.buckets
    try:
        book.update_settings({"satellite_budget": 0.3}, START)
        book.create("a", "A", "accumulating", None, None, "reinvest_same", START)
        engine.record_deposit(10_000.0, "EUR", "d1", START)  # all to core: no satellite has a target
        source, target, applied = book.transfer("core", "a", 2000.0, "EUR", "t1", START)
        assert applied and source.balances == {"EUR": 8000.0} and target.balances == {"EUR": 2000.0}
        assert book.transfer("core", "a", 2000.0, "EUR", "t1", START)[2] is False  # the same reference: once
        with pytest.raises(AlreadyExists):
            book.transfer("core", "a", 1000.0, "EUR", "t1", START)
        with pytest.raises(FailedPrecondition, match="^core_minimum_share"):
            book.transfer("core", "a", 1500.0, "EUR", "t2", START)  # core would hold 65% < 70%
        with pytest.raises(FailedPrecondition, match="^insufficient_bucket_funds"):
            book.transfer("a", "core", 2500.0, "EUR", "t3", START)
        assert book.view("a", START).balances == {"EUR": 2000.0}
        kinds = [(t.bucket, t.kind, t.amount) for t in book.transactions("", 10)]
        assert ("core", "transfer_out", -2000.0) in kinds and ("a", "transfer_in", 2000.0) in kinds
    finally:
        db.close()


# --- risk controls ---

def test_five_losses_in_a_row_pause_a_satellite_and_a_win_resets_the_streak():
    b = bucket("active")
    for day in range(4):
        b = rules.after_sell(b, -10.0, 100.0, START + timedelta(days=day))
    assert (b.status, b.consecutive_losses) == ("active", 4)
    reset = rules.after_sell(b, 5.0, 100.0, START)
    assert (reset.status, reset.consecutive_losses) == ("active", 0)
    paused = rules.after_sell(b, -1.0, 100.0, START + timedelta(days=5))
    assert (paused.status, paused.consecutive_losses, paused.loss_streak_paused_at) == (
        "paused", 5, START + timedelta(days=5))
    core = rules.Bucket("core", "core", "active", 1.0, 0.0, 1.0, consecutive_losses=4)
    assert rules.after_sell(core, -1.0, 100.0, START).status == "active"


def test_a_big_win_starts_the_cooldown_and_reawakening_steps_up_per_win():
    b = rules.after_sell(bucket("active"), 25.0, 100.0, START)
    assert b.win_cooldown_until == START + timedelta(days=30)
    waking = rules.Bucket("sat", "satellite", "active", 0.05, 0.02, 0.15, reawakening=0.25)
    steps = []
    for pnl in (1.0, 1.0, -1.0, 1.0, 1.0, 1.0):
        waking = rules.after_sell(waking, pnl, 100.0, START)
        steps.append(waking.reawakening)
    assert steps == [0.5, 0.75, 0.25, 0.5, 0.75, 1.0]


def test_drawdown_hibernates_warns_and_reawakens():
    b = rules.Bucket("sat", "satellite", "active", 0.05, 0.02, 0.15)
    b, note, dd = rules.maintain(b, 1.0, START)
    assert (note, dd, b.high_water_mark) == ("new_high", 0.0, 1.0)
    assert rules.maintain(b, 0.74, START)[1:] == ("warning", pytest.approx(0.26))
    hibernated, note, _ = rules.maintain(b, 0.65, START)
    assert (hibernated.status, note) == ("hibernating", "hibernated")
    still, note, _ = rules.maintain(hibernated, 0.69, START)
    assert (still.status, note) == ("hibernating", "warning")  # 31% drawdown: not yet
    awake, note, _ = rules.maintain(hibernated, 0.71, START)
    assert (awake.status, awake.reawakening, note) == ("active", 0.25, "reawakened")
    core = rules.Bucket("core", "core", "active", 1.0, 0.0, 1.0, high_water_mark=1.0)
    assert rules.maintain(core, 0.5, START)[0].status == "active"  # core never hibernates


def test_aggression_is_the_smaller_factor_times_cooldown_and_reawakening():
    b = rules.Bucket("sat", "satellite", "active", 0.10, 0.02, 0.15)
    # target value 0.10 * 10,000 = 1,000; value 850 -> 0.8; drawdown 10% -> 1
    assert rules.aggression(b, 850.0, 10_000.0, 0.10, START) == pytest.approx(0.8)
    assert rules.aggression(b, 1000.0, 10_000.0, 0.20, START) == pytest.approx(0.7)
    assert rules.aggression(b, 1000.0, 10_000.0, 0.30, START) == pytest.approx(0.3)
    assert rules.aggression(b, 1000.0, 10_000.0, 0.36, START) == 0.0
    assert rules.aggression(b, 300.0, 10_000.0, 0.0, START) == 0.0
    cooling = rules.Bucket("sat", "satellite", "active", 0.10, 0.02, 0.15, reawakening=0.5,
                           win_cooldown_until=START + timedelta(days=1))
    assert rules.aggression(cooling, 1000.0, 10_000.0, 0.0, START) == pytest.approx(0.75 * 0.5)
    assert rules.aggression(bucket("paused"), 1000.0, 10_000.0, 0.0, START) == 0.0


def test_the_meta_allocator_by_hand():
    """Scores 2.0, 1.0 and none (0): shifted 2.01, 1.01, 0.01 (sum 3.03); budget 0.3 -> 0.199,
    0.1, 0.001, clamped to [0.02, 0.15] -> 0.15, 0.1, 0.02; half-way from 0.1 each -> 0.125,
    0.1, 0.06 (sum 0.285), rescaled to 0.3 -> 0.131579, 0.105263, 0.063158."""
    settings = rules.BucketSettings(satellite_budget=0.3)
    targets = rules.meta_allocate({"a": 2.0, "b": 1.0, "c": None}, {"a": 0.1, "b": 0.1, "c": 0.1}, settings)
    assert targets == pytest.approx({"a": 0.125 * 0.3 / 0.285, "b": 0.1 * 0.3 / 0.285, "c": 0.06 * 0.3 / 0.285})
    assert rules.change_kind(0.1, 0.104) == "none" and rules.change_kind(0.1, 0.115) == "minor"
    assert rules.change_kind(0.1, 0.125) == "major"


# --- the daily reconciliation ---

def apply_cash(engine, cash: dict[str, float], now: datetime = START):
    engine.apply_broker_state(BrokerState([], cash, now, [], [], None), now)


def test_reconciliation_opens_corrects_small_differences_into_core_and_alerts_on_large_ones(tmp_path):
    peers = FakePeers()
    engine, _, db = portfolio_engine(tmp_path, peers)
    book = engine.buckets
    try:
        apply_cash(engine, {"EUR": 1000.0, "USD": 50.0})
        checks, alerted = book.reconcile(START)
        assert [(c.currency, c.action) for c in checks] == [("EUR", "opening_balance"), ("USD", "opening_balance")]
        assert book.view("core", START).balances == {"EUR": 1000.0, "USD": 50.0}
        apply_cash(engine, {"EUR": 1003.0, "USD": 50.0})
        checks, alerted = book.reconcile(START)
        assert [(c.currency, c.action) for c in checks] == [("EUR", "corrected"), ("USD", "ok")] and not alerted
        assert book.view("core", START).balances["EUR"] == pytest.approx(1003.0)
        assert peers.cleared == ["bucket_reconciliation"]  # cleared once: none was shown since
        apply_cash(engine, {"EUR": 1100.0, "USD": 50.0})
        checks, alerted = book.reconcile(START)
        assert [(c.currency, c.action) for c in checks] == [("EUR", "alert"), ("USD", "ok")] and alerted
        assert peers.alerts == [("bucket_reconciliation", "BUCKETS OFF: EUR -97.00")]
        assert book.view("core", START).balances["EUR"] == pytest.approx(1003.0)  # an alert changes nothing
    finally:
        db.close()


def test_reconciliation_needs_a_broker_state(tmp_path):
    engine, _, db = portfolio_engine(tmp_path)
    try:
        with pytest.raises(FailedPrecondition, match="^not_synced"):
            engine.buckets.reconcile(START)
    finally:
        db.close()


def test_maintenance_and_meta_allocation_through_the_engine(tmp_path):
    """2,200 USD (2,000 EUR) deposited with a budget of 0.3: the satellite's deficit 0.1 * 2,000
    EUR gets 220 USD; it buys 2 KO.US at 100. KO.US falls to 60: the satellite holds 20 USD + 120
    USD = 140 of its 220, its growth index 0.636 (36% below its high): maintenance hibernates it.
    The meta-allocator then has no satellite that may trade."""
    peers = FakePeers(prices={"KO.US": 100.0}, buckets={"KO.US": "value"})
    engine, _, db = portfolio_engine(tmp_path, peers)
    book = engine.buckets
    try:
        book.update_settings({"satellite_budget": 0.3}, START)
        book.create("value", "Value", "accumulating", None, None, "reinvest_same", START)
        book.create("idle", "Idle", "research", None, None, "reinvest_same", START)
        book.update("value", {"target_share": 0.1}, START)
        engine.record_deposit(2200.0, "USD", "d1", START)
        assert book.view("value", START).balances == {"USD": pytest.approx(220.0)}
        notes = []
        for day, price in enumerate([100.0, 100.0, 60.0]):
            now = START + timedelta(days=day)
            peers.prices["KO.US"] = price
            fills = [FillRecord("T-1", "KO.US", "BUY", 2, 100.0, "USD", 0.0, now, "value", "cid-1")] if day == 0 else []
            engine.apply_broker_state(BrokerState([Holding("KO.US", 2, 100.0, "USD")], {"USD": 2000.0}, now, fills,
                                                  [], None), now)
            engine.take_snapshot(now)
            notes.append({m.bucket: m for m in book.maintain(now)}["value"])
        assert [n.note for n in notes] == ["new_high", "", "hibernated"]
        assert notes[-1].drawdown == pytest.approx(1 - 140 / 220)
        view = book.view("value", START + timedelta(days=2))
        assert view.bucket.status == "hibernating" and view.aggression == 0.0
        assert book.view("core", START).bucket.status == "active"
        changes, budget, applied = book.meta_allocate(START + timedelta(days=3), dry_run=True)
        assert changes == [] and budget == 0.3 and not applied
    finally:
        db.close()


def test_meta_allocation_applies_new_targets_adding_up_to_the_budget(tmp_path):
    """Two ACTIVE satellites without scored trades (both count 0): equal shares of a 0.2 budget,
    half-way from 0 (0.05 each), rescaled to the budget: 0.1 each. A dry run changes nothing."""
    engine, _, db = portfolio_engine(tmp_path)
    book = engine.buckets
    try:
        book.update_settings({"satellite_budget": 0.2}, START)
        for name in ("a", "b"):
            book.create(name, name.upper(), "research", None, None, "reinvest_same", START)
            book.transition(name, "activate", "", START)
        preview, _, applied = book.meta_allocate(START, dry_run=True)
        assert not applied and book.view("a", START).bucket.target_share == 0.0
        changes, budget, applied = book.meta_allocate(START, dry_run=False)
        assert applied and [(c.bucket, c.score, c.new, c.change) for c in changes] == [
            ("a", None, pytest.approx(0.1), "major"), ("b", None, pytest.approx(0.1), "major")]
        assert [c.new for c in preview] == [c.new for c in changes]
        assert book.view("a", START).bucket.target_share == pytest.approx(0.1)
    finally:
        db.close()
