"""GetRecommendations over gRPC with the real data and portfolio services (issue 8 items 2-4):
flagged bars never reach the plan, steps are priced from the quote trading checks, what trading
would refuse is excluded with its reason, and weight limits are hard bounds keyed into the hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import select
from trader.data.v1 import data_pb2
from trader.portfolio.v1 import portfolio_pb2

from services.common.timestamps import to_timestamp
from services.data.history import Bar
from services.planner import store
from services.planner.adapters.peers import Peers
from tests.data_fixtures import random_walk, security
from tests.planner_fixtures import PlannerHarness, as_of

SYMBOLS = [f"S{i}.US" for i in range(7)]
COUNT = 420


def history(extra: dict[str, list[Bar]] | None = None) -> dict[str, list[Bar]]:
    bars = {s: random_walk(COUNT, seed=i + 1) for i, s in enumerate(SYMBOLS)}
    return {**bars, **(extra or {})}


LAST_DAY = random_walk(COUNT)[-1].date


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(bars, securities=None, name="h", **kw):
        folder = tmp_path / f"{name}{len(made)}"
        folder.mkdir()
        made.append(PlannerHarness(folder, securities or [security(s) for s in bars], bars, **kw))
        return made[-1]

    yield make
    for h in made:
        h.close()


def test_a_flagged_crash_changes_nothing(harness):
    clean = history()
    crash_index = COUNT - 120  # inside the last 365 closes
    crashed = list(clean["S3.US"])
    crashed[crash_index] = crashed[crash_index]._replace(close=crashed[crash_index].close * 0.3)
    without = [b for i, b in enumerate(clean["S3.US"]) if i != crash_index]
    with_crash = harness({**clean, "S3.US": crashed}, name="crash")
    bars = with_crash.data_stub.GetPriceHistory(data_pb2.GetPriceHistoryRequest(symbol="S3.US"),
                                                metadata=[as_of(LAST_DAY)]).bars
    assert bars[crash_index].flag.startswith("spike")  # the data service flagged it
    plan = with_crash.plan(LAST_DAY)
    reference = harness({**clean, "S3.US": without}, name="without").plan(LAST_DAY)
    assert dict(plan.target_weights) == dict(reference.target_weights) and plan.method == reference.method
    assert [(s.symbol, s.quantity) for s in plan.steps] == [(s.symbol, s.quantity) for s in reference.steps]
    assert plan.steps


def test_steps_are_priced_from_the_quote_not_a_flagged_last_bar(harness):
    bars = history()
    for series in bars.values():  # every last bar inconsistent (high below low), close 5x
        last = series[-1]
        series[-1] = last._replace(close=last.close * 5, open=last.close, high=last.close * 0.9, low=last.close * 1.1)
    h = harness(bars)
    plan = h.plan(LAST_DAY)
    quotes = {q.symbol: q for q in h.data_stub.GetQuotes(data_pb2.GetQuotesRequest(symbols=SYMBOLS),
                                                          metadata=[as_of(LAST_DAY)]).quotes}
    assert plan.steps
    for step in plan.steps:
        assert step.estimated_price == quotes[step.symbol].price == bars[step.symbol][-2].close
        assert quotes[step.symbol].date == bars[step.symbol][-2].date.isoformat()


def test_what_trading_would_refuse_is_excluded_with_its_reason(harness):
    stale = random_walk(COUNT - 10, seed=50)           # last valid close 10 business days ago
    yen = random_walk(COUNT, seed=51, price=15_000.0)  # a currency without a rate
    big_lot = random_walk(COUNT, seed=52)
    bars = history({"STALE.US": stale, "YEN.T": yen, "LOT.US": big_lot, "HK.HK": random_walk(COUNT, seed=54)})
    securities = ([security(s) for s in SYMBOLS] + [security("STALE.US", min_target=10.0),
                                                     security("YEN.T", currency="JPY"),
                   security("LOT.US", lot_size=100_000), security("NOBUY.US", allow_buy=False),
                   security("HK.HK", exchange="XHKG", country="Hong Kong")])
    bars["NOBUY.US"] = random_walk(COUNT, seed=53)
    h = harness(bars, securities)
    now = datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, 22, tzinfo=UTC)
    h.trading.buys = [("S0.US", now - timedelta(days=3))]
    plan = h.plan(LAST_DAY)
    reasons = {e.symbol: e.reason for e in plan.excluded}
    assert reasons == {"STALE.US": "price_stale", "YEN.T": "fx_rate_missing", "LOT.US": "cash",
                       "NOBUY.US": "allow_buy", "S0.US": "buy_cooldown",
                       "HK.HK": "market_closed"}  # 22:00 UTC: Hong Kong is closed
    assert "limit 4" in next(e.detail for e in plan.excluded if e.symbol == "STALE.US")
    assert "STALE.US: minimum target 10% not planned (price_stale)" in plan.notes
    assert plan.steps and not set(reasons) & {s.symbol for s in plan.steps}
    assert not set(reasons) & set(plan.target_weights)
    # Trading's own price-age setting decides: allowed 30 days, the stale security is planned again.
    h.trading.settings = h.trading.settings.__class__(max_price_age_days=30)
    again = h.plan(LAST_DAY)
    assert not again.cached and "STALE.US" not in {e.symbol for e in again.excluded}


def test_max_target_is_a_hard_bound_and_changes_the_hash(harness):
    h = harness(history())
    first = h.plan(LAST_DAY)
    assert h.plan(LAST_DAY).cached
    favourite = max(first.target_weights, key=first.target_weights.get)
    assert first.target_weights[favourite] > 0.05
    h.data_stub.UpsertSecurity(data_pb2.UpsertSecurityRequest(security=data_pb2.Security(
        symbol=favourite, name="capped", currency="USD", exchange="XNYS", country="United States",
        industry="Software", allow_buy=True, allow_sell=True, active=True, max_portfolio_target=5)),
        metadata=[as_of(LAST_DAY)])
    capped = h.plan(LAST_DAY)
    assert capped.portfolio_hash != first.portfolio_hash and not capped.cached
    assert capped.target_weights[favourite] <= 0.05
    step = next((s for s in capped.steps if s.symbol == favourite), None)
    assert step is None or step.estimated_value_base <= 0.05 * 100_000
    assert all(w <= 0.2 for w in capped.target_weights.values())


def test_three_securities_keep_the_20_percent_cap_and_say_so(harness):
    h = harness({s: random_walk(COUNT, seed=i + 1) for i, s in enumerate(SYMBOLS[:3])})
    plan = h.plan(LAST_DAY)
    assert dict(plan.target_weights) == {s: 0.2 for s in SYMBOLS[:3]} and plan.method == "at_caps"
    assert plan.unallocated_weight == pytest.approx(0.4)
    assert any("stays cash" in note for note in plan.notes)
    assert sum(s.estimated_value_base for s in plan.steps) <= 0.6 * 100_000


def test_nothing_buyable_gives_an_empty_plan_with_reasons(harness):
    h = harness(history(), [security(s, allow_buy=False) for s in SYMBOLS])
    plan = h.plan(LAST_DAY)
    assert not plan.steps and not plan.target_weights and plan.unallocated_weight == 1.0
    assert {e.reason for e in plan.excluded} == {"allow_buy"} and plan.notes


# --- GetRecommendationsRequest.portfolio: the cycle's snapshot handed forward ---

def held_harness(harness, name):
    """A harness whose portfolio holds 12 S1.US (bought 200 days before LAST_DAY) and cash."""
    h = harness(history(), name=name)
    bought = datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, 15, tzinfo=UTC) - timedelta(days=200)
    h.portfolio_stub.ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(
        positions=[portfolio_pb2.BrokerPosition(symbol="S1.US", quantity=12, average_cost=90.0, currency="USD")],
        cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=95_000.0)],
        fills=[portfolio_pb2.BrokerFill(ledger_id=1, broker_trade_id="T1", client_order_id="old", symbol="S1.US",
                                        side=portfolio_pb2.BUY, quantity=12, price=90.0, currency="USD",
                                        executed_at=to_timestamp(bought))]), metadata=[as_of(LAST_DAY)])
    return h


def snapshot(h) -> portfolio_pb2.GetPortfolioResponse:
    return h.portfolio_stub.TakeSnapshot(portfolio_pb2.TakeSnapshotRequest(), metadata=[as_of(LAST_DAY)]).portfolio


def test_the_snapshot_handed_forward_gives_the_plan_without_reading_the_portfolio(harness, monkeypatch):
    read = held_harness(harness, "read").plan(LAST_DAY)
    h = held_harness(harness, "given")
    given = snapshot(h)
    assert [p.symbol for p in given.positions] == ["S1.US"]
    monkeypatch.setattr(Peers, "portfolio", lambda self: pytest.fail("the portfolio was read"))
    plan = h.plan(LAST_DAY, portfolio=given)
    assert plan.portfolio_hash == read.portfolio_hash == given.portfolio_hash
    assert plan.steps and [(s.symbol, s.side, s.quantity) for s in plan.steps] == \
        [(s.symbol, s.side, s.quantity) for s in read.steps]
    assert dict(plan.target_weights) == dict(read.target_weights)


@pytest.mark.parametrize("tamper", ["quantity", "cash", "position", "hash"])
def test_a_snapshot_not_matching_its_hash_is_not_used(harness, tamper):
    """A stale or altered portfolio (its quantities or cash are not those its hash was made of)
    is replaced by the portfolio read now: the plan is the honest one."""
    honest = held_harness(harness, "honest").plan(LAST_DAY)
    h = held_harness(harness, "tampered")
    given = snapshot(h)
    if tamper == "quantity":
        given.positions[0].quantity = 500
    elif tamper == "cash":
        given.cash[0].amount, given.cash[0].amount_base = 5_000_000.0, 5_000_000.0
        given.total_value_base += 5_000_000.0
    elif tamper == "position":
        given.positions.add(symbol="S2.US", quantity=100, price=100.0, market_value_base=9_000.0)
    else:
        given.portfolio_hash = "0badc0de"
    plan = h.plan(LAST_DAY, portfolio=given)
    assert plan.portfolio_hash == honest.portfolio_hash
    assert [(s.symbol, s.side, s.quantity) for s in plan.steps] == [(s.symbol, s.side, s.quantity)
                                                                   for s in honest.steps]


@pytest.mark.parametrize("field,change", [
    ("portfolio.base_currency", lambda p: setattr(p, "base_currency", " ")),
    ("portfolio.portfolio_hash", lambda p: setattr(p, "portfolio_hash", "")),
    ("portfolio.total_value_base", lambda p: setattr(p, "total_value_base", float("nan"))),
    ("portfolio.positions[0].symbol", lambda p: setattr(p.positions[0], "symbol", "")),
    ("portfolio.positions[1].symbol", lambda p: p.positions.add(symbol="S1.US", quantity=1)),
    ("portfolio.positions[0].quantity", lambda p: setattr(p.positions[0], "quantity", -3)),
    ("portfolio.positions[0].market_value_base", lambda p: setattr(p.positions[0], "market_value_base",
                                                                     float("inf"))),
    ("portfolio.positions[0].first_bought_at", lambda p: setattr(p.positions[0].first_bought_at, "nanos", -1)),
    ("portfolio.cash[1].currency", lambda p: p.cash.add(currency="EUR", amount=1.0)),
    ("portfolio.cash[0].amount", lambda p: setattr(p.cash[0], "amount", float("-inf"))),
])
def test_a_malformed_snapshot_is_invalid_argument_naming_the_field(harness, field, change):
    h = held_harness(harness, "bad")
    given = snapshot(h)
    change(given)
    with pytest.raises(grpc.RpcError) as caught:
        h.plan(LAST_DAY, portfolio=given)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in caught.value.details()
    with h.planner_db.transaction() as session:  # nothing was planned, nothing stored
        assert session.scalars(select(store.PlanRow)).first() is None
