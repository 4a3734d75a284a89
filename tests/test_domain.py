"""Domain modules: money, price history, valuation and hash, plans, order rules, display pools."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.money import convert, from_base, to_base
from services.common.validate import parse_day
from services.data.history import Bar, last_final_date, monthly_bars, resolve_range
from services.display import pools
from services.display.text import next_actions_text
from services.planner import defaults
from services.planner.plan import Candidate, Cash, buy_cost_base, buy_steps
from services.portfolio.hashing import UniverseEntry, portfolio_hash
from services.portfolio.valuation import Holding, Quote, value_portfolio
from services.trading import orders

RATES = {"USD": 1.10, "GBP": 0.85}

# --- money (decisions.md rule 1) ---


def test_rate_is_quote_units_per_base_unit():
    assert from_base(100, "USD", "EUR", RATES) == pytest.approx(110)
    assert to_base(110, "USD", "EUR", RATES) == pytest.approx(100)
    assert convert(110, "USD", "GBP", "EUR", RATES) == pytest.approx(85)
    assert convert(5, "EUR", "EUR", "EUR", RATES) == 5


def test_missing_rate_is_refused_not_guessed():
    with pytest.raises(FailedPrecondition) as caught:
        to_base(1, "JPY", "EUR", RATES)
    assert caught.value.rule == "fx_rate_missing"


@given(st.floats(min_value=-1e9, max_value=1e9), st.sampled_from(["EUR", "USD", "GBP"]),
       st.sampled_from(["EUR", "USD", "GBP"]))
def test_conversion_round_trips(amount, a, b):
    assert convert(convert(amount, a, b, "EUR", RATES), b, a, "EUR", RATES) == pytest.approx(amount, abs=1e-6)

# --- price history ---


def test_bars_become_visible_only_after_the_close():
    before_close = datetime(2020, 3, 16, 19, 59, tzinfo=UTC)  # 15:59 New York (EDT)
    after_close = datetime(2020, 3, 16, 20, 0, tzinfo=UTC)
    assert last_final_date(before_close, "XNYS") == date(2020, 3, 15)
    assert last_final_date(after_close, "XNYS") == date(2020, 3, 16)
    assert last_final_date(datetime(2020, 3, 16, 12, tzinfo=UTC), "UNKNOWN") == date(2020, 3, 15)


def test_range_validation_and_clamping():
    assert parse_day("start", "") is None
    with pytest.raises(InvalidArgument) as caught:
        parse_day("end", "2020-02-30")
    assert caught.value.field == "end"
    with pytest.raises(InvalidArgument) as caught:
        resolve_range(date(2020, 2, 1), date(2020, 1, 1), date(2021, 1, 1))
    assert caught.value.field == "start"
    assert resolve_range(None, date(2030, 1, 1), date(2021, 1, 1)) == (None, date(2021, 1, 1))


daily_bars = st.lists(
    st.tuples(st.dates(min_value=date(2000, 1, 1), max_value=date(2003, 12, 31)),
              st.floats(min_value=0.01, max_value=1e5)),
    min_size=1, max_size=200, unique_by=lambda t: t[0],
).map(lambda rows: [Bar(d, c) for d, c in sorted(rows)])


@given(daily_bars)
def test_monthly_aggregation_properties(bars):
    months = monthly_bars(bars)
    assert len(months) == len({(b.date.year, b.date.month) for b in bars})
    assert [m.date for m in months] == sorted(m.date for m in months)
    for month in months:
        inside = [b.close for b in bars if (b.date.year, b.date.month) == (month.date.year, month.date.month)]
        assert month.date == max(b.date for b in bars if (b.date.year, b.date.month) == (month.date.year,
                                                                                        month.date.month))
        assert min(inside) - 1e-9 <= month.close <= max(inside) + 1e-9
        assert month.close == pytest.approx(sum(inside) / len(inside))
        assert month.high is None and month.volume is None  # closes only: missing stays missing

# --- valuation and hash ---


def test_valuation_is_cash_plus_positions():
    holdings = [Holding("AAPL.US", 10, 100.0, "USD"), Holding("SAP.DE", 2, 90.0, "EUR")]
    quotes = {"AAPL.US": Quote(110.0, "USD", "2020-01-02"), "SAP.DE": Quote(100.0, "EUR", "2020-01-02")}
    valuation = value_portfolio(holdings, {"EUR": 50.0, "USD": 11.0}, quotes, "EUR", RATES)
    assert valuation.positions_value_base == pytest.approx(1000 + 200)
    assert valuation.cash_base == pytest.approx(60)
    assert valuation.total_value_base == pytest.approx(1260)


def test_valuation_refuses_a_holding_without_price():
    with pytest.raises(FailedPrecondition) as caught:
        value_portfolio([Holding("AAPL.US", 1, 1.0, "USD")], {}, {}, "EUR", RATES)
    assert caught.value.rule == "quote_unavailable"


def test_portfolio_hash_is_stable_and_sensitive():
    universe = [UniverseEntry("AAPL.US", True, True, "US", "Tech"), UniverseEntry("KO.US", True, False, "US", "Bev")]
    holdings = [Holding("AAPL.US", 3, 1.0, "USD")]
    h = portfolio_hash(holdings, {"EUR": 100.0}, universe)
    assert len(h) == 8 and h == portfolio_hash(holdings, {"EUR": 100.0}, list(reversed(universe)))
    assert h != portfolio_hash([Holding("AAPL.US", 4, 1.0, "USD")], {"EUR": 100.0}, universe)
    assert h != portfolio_hash(holdings, {"EUR": 100.01}, universe)
    assert h == portfolio_hash(holdings, {"EUR": 100.0, "USD": -5.0}, universe)  # only positive cash counts
    assert h != portfolio_hash(holdings, {"EUR": 100.0}, [UniverseEntry("AAPL.US", False, True, "US", "Tech"),
                                                          universe[1]])

# --- plan ---


def candidates(price_base=50.0, lot=1):
    return {s: Candidate(s, price_base * 1.1, "USD", price_base, lot) for s in ("A.US", "B.US", "C.US")}


def test_buy_steps_follow_the_largest_gaps_within_cash():
    steps = buy_steps({"A.US": 0.5, "B.US": 0.3, "C.US": 0.2}, {}, 10_000, Cash("EUR", {"EUR": 10_000}),
                      candidates())
    assert [s.symbol for s in steps] == ["A.US", "B.US", "C.US"]
    assert steps[0].quantity == 100 and steps[0].estimated_value_base == pytest.approx(5000)
    assert sum(buy_cost_base(s.estimated_value_base) for s in steps) <= 10_000 - defaults.MIN_CASH_RESERVE_BASE


def test_no_step_below_the_minimum_trade():
    assert buy_steps({"A.US": 1.0}, {}, 700, Cash("EUR", {"EUR": 700}), candidates()) == []  # 200 spendable
    assert len(buy_steps({"A.US": 1.0}, {}, 800, Cash("EUR", {"EUR": 800}), candidates())) == 1  # 300: 5 shares
    assert buy_steps({"A.US": 0.02}, {}, 10_000, Cash("EUR", {"EUR": 10_000}), candidates()) == []  # gap 200


@given(st.floats(min_value=0, max_value=1e6), st.floats(min_value=0.01, max_value=5000), st.integers(1, 100),
       st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=3, max_size=3))
def test_plan_never_overspends(cash, price, lot, raw_weights):
    total = sum(raw_weights) or 1.0
    targets = dict(zip(("A.US", "B.US", "C.US"), (w / total for w in raw_weights), strict=True))
    steps = buy_steps(targets, {}, cash, Cash("EUR", {"EUR": cash}), candidates(price, lot))
    spent = sum(buy_cost_base(s.estimated_value_base) for s in steps)
    assert spent <= max(0.0, cash - defaults.MIN_CASH_RESERVE_BASE) + 1e-6
    for step in steps:
        assert step.quantity % lot == 0 and step.quantity > 0
        assert step.estimated_value_base >= defaults.MIN_TRADE_BASE
        assert step.estimated_value_base <= targets[step.symbol] * cash + 1e-6

# --- order rules ---


@pytest.mark.parametrize(("args", "field"), [
    (("", "A.US", "BUY", 1, ""), "client_order_id"),
    (("x" * 65, "A.US", "BUY", 1, ""), "client_order_id"),
    (("id", " ", "BUY", 1, ""), "symbol"),
    (("id", "A.US", "HOLD", 1, ""), "side"),
    (("id", "A.US", "SELL", 0, ""), "quantity"),
    (("id", "A.US", "SELL", -3, ""), "quantity"),
])
def test_bad_order_input_names_the_field(args, field):
    with pytest.raises(InvalidArgument) as caught:
        orders.validate_intent(*args)
    assert caught.value.field == field


def test_commission_is_two_euros_plus_point_two_percent():
    assert orders.commission(1000, "EUR", "EUR", RATES) == pytest.approx(4.0)
    assert orders.commission(1000, "USD", "EUR", RATES) == pytest.approx(2.2 + 2.0)


def test_lot_rule():
    orders.check_lot(20, 10)
    with pytest.raises(InvalidArgument):
        orders.check_lot(15, 10)


def test_conversion_covers_deficit_plus_buffer_or_bare_deficit():
    assert orders.conversion_for(110, 0, "USD", 1000, "EUR", RATES) == pytest.approx(102)
    assert orders.conversion_for(110, 0, "USD", 101, "EUR", RATES) == pytest.approx(100)
    assert orders.conversion_for(110, 120, "USD", 0, "EUR", RATES) == 0
    with pytest.raises(FailedPrecondition, match="^cash"):
        orders.conversion_for(110, 0, "USD", 99, "EUR", RATES)


def test_plan_order_ids_are_deterministic():
    a = orders.plan_client_order_id("plan1", 1, "A.US", "BUY")
    assert a == orders.plan_client_order_id("plan1", 1, "A.US", "BUY")
    assert a != orders.plan_client_order_id("plan1", 1, "A.US", "SELL")
    assert a != orders.plan_client_order_id("plan2", 1, "A.US", "BUY")

# --- display pools and text ---


NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_error_beats_processing_beats_next_actions():
    messages = [pools.new_message(pools.NEXT_ACTIONS, "EUR 1", 0, NOW),
                pools.new_message(pools.PROCESSING, "SYNCING...", 60, NOW)]
    assert pools.shown(messages, NOW).pool == pools.PROCESSING
    messages.append(pools.new_message(pools.ERROR, "ORDER FAILED", 60, NOW))
    assert pools.shown(messages, NOW).text == "ORDER FAILED"


def test_messages_expire():
    messages = [pools.new_message(pools.NEXT_ACTIONS, "EUR 1", 0, NOW),
                pools.new_message(pools.ERROR, "BAD", 30, NOW)]
    assert pools.shown(messages, NOW + timedelta(seconds=29)).pool == pools.ERROR
    assert pools.shown(messages, NOW + timedelta(seconds=30)).pool == pools.NEXT_ACTIONS
    assert pools.shown([], NOW) is None


@pytest.mark.parametrize(("pool", "text", "ttl", "field"), [
    ("LOUD", "x", 0, "pool"), ("ERROR", "   ", 0, "text"), ("ERROR", "x" * 201, 0, "text"),
    ("ERROR", "x", -1, "ttl_seconds"), ("ERROR", "x", 10**9, "ttl_seconds"),
])
def test_bad_messages_name_the_field(pool, text, ttl, field):
    with pytest.raises(InvalidArgument) as caught:
        pools.new_message(pool, text, ttl, NOW)
    assert caught.value.field == field


def test_next_actions_text():
    assert next_actions_text("EUR", 12345.4, 675.2, ("BUY", "AAPL.US", 855.0)) == \
        "EUR 12,345 | CASH EUR 675 | BUY AAPL EUR 855"
    assert next_actions_text("EUR", 10, 10, None) == "EUR 10 | CASH EUR 10"
