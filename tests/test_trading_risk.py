"""Every pre-trade rule: it passes, it refuses (naming itself), and it fails closed when the
fact it needs could not be read."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import FailedPrecondition, InvalidArgument
from services.trading.engine import next_trade_allowed
from services.trading.orders import round_cents_up
from services.trading.risk import OrderFacts, RiskSettings, check

NOW = datetime(2024, 6, 12, 15, 0, tzinfo=UTC)
SETTINGS = RiskSettings()

BUY = OrderFacts(
    symbol="AAPL.US", side="BUY", quantity=10, now=NOW, mode="replay", currency="USD", exchange="XNAS", lot_size=1,
    allow=True, market_open=False, quote_price=100.0, quote_date=date(2024, 6, 11), limit_price=None,
    held_quantity=0, average_cost=None, last_buy_at=None, last_sell_at=None, ledger_known=True, trade_times=[],
    daily_pnl=0.0, daily_pnl_armed=True, cash_available=5000.0, commission=4.1, pending_same_side=False,
    reconciled=True,
)
SELL = replace(BUY, side="SELL", market_open=True, held_quantity=20, average_cost=90.0,
               last_buy_at=NOW - timedelta(days=200), last_sell_at=None)


def refusal(facts, settings=SETTINGS) -> str:
    with pytest.raises(FailedPrecondition) as caught:
        check(facts, settings)
    return caught.value.rule


def test_the_baseline_orders_pass():
    buy = check(BUY, SETTINGS)
    assert (buy.quantity, buy.reference_price, buy.limit_price) == (10, 100.0, 105.0)
    assert buy.required_cash == pytest.approx(10 * 105.0 + 4.1)
    sell = check(SELL, SETTINGS)
    assert (sell.limit_price, sell.required_cash) == (95.0, 0.0)


@pytest.mark.parametrize(("facts", "settings", "rule"), [
    (replace(BUY, mode="research"), SETTINGS, "trading_mode"),
    (replace(BUY, mode="banana"), SETTINGS, "trading_mode"),
    (BUY, replace(SETTINGS, trading_enabled=False), "trading_disabled"),
    (replace(BUY, reconciled=False), SETTINGS, "reconciliation"),
    (replace(BUY, allow=False), SETTINGS, "allow_buy"),
    (replace(SELL, allow=False), SETTINGS, "allow_sell"),
    (replace(SELL, market_open=False), SETTINGS, "market_closed"),
    (replace(BUY, exchange="XHKG", market_open=False), SETTINGS, "market_closed"),
    (replace(BUY, quote_price=None), SETTINGS, "price_unavailable"),
    (replace(BUY, quote_price=0.0), SETTINGS, "price_unavailable"),
    (replace(BUY, quote_date=date(2024, 6, 1)), SETTINGS, "price_stale"),
    (replace(BUY, limit_price=106.0), SETTINGS, "price_band"),
    (replace(SELL, limit_price=94.0), SETTINGS, "price_band"),
    (replace(BUY, quantity=7, lot_size=10), SETTINGS, "lot_size"),
    (replace(SELL, quantity=21), SETTINGS, "holding"),
    (replace(BUY, last_buy_at=NOW - timedelta(days=29)), SETTINGS, "buy_cooldown"),
    (replace(SELL, last_buy_at=NOW - timedelta(days=89)), SETTINGS, "min_hold"),
    (replace(SELL, last_sell_at=NOW - timedelta(days=179)), SETTINGS, "sell_cooldown"),
    (replace(SELL, average_cost=126.0), SETTINGS, "max_sell_loss"),
    (replace(BUY, trade_times=[NOW - timedelta(minutes=59)]), SETTINGS, "min_time_between_trades"),
    (replace(BUY, trade_times=[NOW - timedelta(hours=h) for h in (2, 4, 6, 8)]), SETTINGS, "max_trades_per_day"),
    (replace(BUY, trade_times=[NOW - timedelta(days=d, hours=1) for d in range(1, 7) for _ in (0, 1)][:10]),
     SETTINGS, "max_trades_per_week"),
    (replace(BUY, daily_pnl=-0.05), SETTINGS, "daily_loss_halt"),
    (replace(SELL, daily_pnl=-0.02), SETTINGS, "daily_loss_sell_block"),
    (replace(BUY, pending_same_side=True), SETTINGS, "pending_order"),
    (replace(BUY, cash_available=1000.0), SETTINGS, "cash"),
    (replace(BUY, cash_available=-1.0), SETTINGS, "cash"),
])
def test_each_rule_refuses(facts, settings, rule):
    assert refusal(facts, settings) == rule


@pytest.mark.parametrize(("facts", "rule"), [
    (replace(SELL, market_open=None), "market_closed"),        # unknown market state counts as closed
    (replace(BUY, exchange="XASX", market_open=None), "market_closed"),
    (replace(BUY, quote_date=None), "price_unavailable"),
    (replace(SELL, held_quantity=None), "holding"),
    (replace(SELL, ledger_known=False), "holding_rules"),
    (replace(BUY, ledger_known=False), "holding_rules"),
    (replace(SELL, average_cost=None), "max_sell_loss"),
    (replace(BUY, trade_times=None), "frequency"),
    (replace(BUY, daily_pnl=None), "daily_pnl"),
    (replace(BUY, pending_same_side=None), "pending_order"),
    (replace(BUY, cash_available=None), "cash"),
])
def test_each_rule_fails_closed_when_its_fact_is_unknown(facts, rule):
    assert refusal(facts) == rule


@pytest.mark.parametrize("facts", [
    replace(BUY, market_open=None),                                  # a non-strict BUY needs no open market
    replace(BUY, last_buy_at=NOW - timedelta(days=31)),
    replace(SELL, last_buy_at=NOW - timedelta(days=91), last_sell_at=NOW - timedelta(days=181)),
    replace(SELL, average_cost=124.0),                                # -19.4%: above the floor
    replace(BUY, trade_times=[NOW - timedelta(minutes=61)]),
    replace(BUY, daily_pnl=-0.049),                                   # BUYs still allowed below -2%
    replace(BUY, daily_pnl=None, daily_pnl_armed=False),              # a new account: nothing to compare
    replace(BUY, quantity=25, lot_size=10),                           # rounded down to 20
    replace(BUY, limit_price=104.0),
    replace(BUY, quote_date=date(2024, 6, 8)),                        # 4 days: a weekend and a holiday
])
def test_boundaries_that_pass(facts):
    approval = check(facts, SETTINGS)
    assert approval.quantity % facts.lot_size == 0 and approval.quantity <= facts.quantity


def test_lots_round_down():
    assert check(replace(BUY, quantity=25, lot_size=10), SETTINGS).quantity == 20


def test_emergency_skips_only_holding_rules_and_caps():
    hurried = replace(SELL, last_buy_at=NOW - timedelta(days=1), average_cost=200.0,
                      trade_times=[NOW - timedelta(minutes=1)] * 20, emergency=True)
    assert check(hurried, SETTINGS).quantity == 10
    for broken, rule in ((replace(hurried, market_open=False), "market_closed"),
                         (replace(hurried, pending_same_side=True), "pending_order"),
                         (replace(hurried, quantity=50), "holding"),
                         (replace(hurried, daily_pnl=-0.06), "daily_loss_halt")):
        assert refusal(broken) == rule


FOREIGN = replace(BUY, cash_available=100.0, convertible_base_cash=2000.0, base_currency="EUR",
                  rates={"USD": 1.10})  # needs 1,054.10 USD, holds 100 USD and 2,000 EUR


def test_a_foreign_buy_converts_the_deficit_in_whole_cents():
    approval = check(FOREIGN, SETTINGS)
    assert approval.conversion == round_cents_up((10 * 105.0 + 4.1 - 100.0) * 1.02 / 1.10) == 884.72
    bare = round_cents_up((10 * 105.0 + 4.1 - 100.0) / 1.10)  # 867.37 (867.3636... rounded up)
    assert check(replace(FOREIGN, convertible_base_cash=bare), SETTINGS).conversion == bare
    assert check(replace(FOREIGN, cash_available=2000.0), SETTINGS).conversion == 0.0
    assert check(replace(FOREIGN, cash_available=-50.0), SETTINGS).conversion == round_cents_up(
        (1054.1 + 50.0) * 1.02 / 1.10)  # a negative balance is covered too, never left short


@pytest.mark.parametrize(("facts", "rule"), [
    (replace(FOREIGN, convertible_base_cash=867.364), "cash"),  # the bare deficit, but not to the cent
    (replace(FOREIGN, convertible_base_cash=None), "cash"),      # no conversion possible
    (replace(FOREIGN, rates={}), "fx_rate_missing"),
    (replace(BUY, commission=None), "fx_rate_missing"),
])
def test_a_conversion_the_broker_would_refuse_is_refused_by_the_check(facts, rule):
    assert refusal(facts) == rule


@pytest.mark.parametrize(("changes", "field"), [
    ({"price_band": 0.5}, "settings.price_band"),
    ({"max_trades_per_day": 0}, "settings.max_trades_per_day"),
    ({"max_sell_loss": 0.1}, "settings.max_sell_loss"),
    ({"daily_loss_halt": -0.01}, "settings.daily_loss_halt"),
    ({"max_trades_per_day": 20, "max_trades_per_week": 10}, "settings.max_trades_per_day"),
    ({"min_hold_days": float("nan")}, "settings.min_hold_days"),
])
def test_settings_are_validated(changes, field):
    with pytest.raises(InvalidArgument) as caught:
        replace(SETTINGS, **changes).validated()
    assert caught.value.field == field


@given(st.lists(st.integers(0, 10 * 24 * 60), max_size=30))
def test_next_allowed_time_satisfies_every_cap(minutes_ago):
    times = [NOW - timedelta(minutes=m) for m in minutes_ago]
    allowed = next_trade_allowed(times, NOW, SETTINGS)
    assert allowed >= NOW
    facts = replace(BUY, now=allowed, trade_times=[t for t in times if allowed - t < timedelta(days=8)],
                    quote_date=allowed.date())
    check(facts, SETTINGS)  # at that moment no cap refuses
