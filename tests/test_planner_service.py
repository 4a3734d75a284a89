"""GetRecommendations over gRPC with the real data and portfolio services (issue 8 items 2-4):
flagged bars never reach the plan, steps are priced from the quote trading checks, what trading
would refuse is excluded with its reason, and weight limits are hard bounds keyed into the hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from trader.data.v1 import data_pb2

from services.data.history import Bar
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
