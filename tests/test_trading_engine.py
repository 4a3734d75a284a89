"""The order engine with the paper broker: the order path, broker faults and their resolution,
realised P&L, reconciliation, and a state machine over random orders, fills and faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from trader.data.v1 import data_pb2

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.trading import orders, store
from services.trading.adapters.paper_broker import PaperBroker
from services.trading.adapters.services import MarketSession
from services.trading.engine import OrderEngine

START = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)
RATES = {"USD": 1.10}


@dataclass
class FakeReads:
    """The other services, scripted: quotes, market state, FX, the daily P&L."""

    prices: dict[str, float] = field(default_factory=lambda: {"AAPL.US": 100.0, "SAP.DE": 50.0, "KO.US": 60.0})
    market_open_value: bool | None = True
    pnl: tuple[bool, float | None] = (False, None)
    now: datetime = START
    per_share: list = field(default_factory=list)
    buckets: dict[str, str] = field(default_factory=dict)

    def security(self, symbol):
        if symbol not in self.prices:
            raise NotFound(f"unknown symbol {symbol!r}")
        currency, exchange = {".DE": ("EUR", "XETR"), ".SW": ("CHF", "XSWX")}.get(symbol[-3:], ("USD", "XNYS"))
        return data_pb2.Security(symbol=symbol, currency=currency, exchange=exchange, lot_size=1, allow_buy=True,
                                 allow_sell=True, kind=data_pb2.EQUITY, bucket=self.buckets.get(symbol, ""))

    def market_session(self, exchange, now):
        if self.market_open_value is None:
            return None
        close = datetime.combine(now.date(), datetime.min.time(), UTC) + timedelta(hours=21)
        return MarketSession(self.market_open_value, now.date(), close)

    def quote(self, symbol):
        return self.prices[symbol], self.now.date()

    def rates(self):
        return "EUR", dict(RATES)

    def daily_pnl(self, today: date):
        return self.pnl

    def dividends(self, symbols, start, end):
        return [d for d in self.per_share if d.symbol in symbols and start <= d.ex_date <= end]


def make_engine(tmp_path, faults=(), serving=None, seed=100_000.0, name="trading.db"):
    db = store.open_database(f"sqlite:///{tmp_path / name}")
    broker = PaperBroker(db, lambda value, currency: orders.commission(value, currency, "EUR", RATES),
                         faults=list(faults))
    reads = FakeReads()
    engine = OrderEngine("replay", db, broker, reads, set_serving=(serving.append if serving is not None
                                                                   else lambda _: None))
    engine.reconcile()
    if seed:
        broker.deposit(seed, "EUR", "seed", START)
    return engine, broker, reads, db


def intent(cid, symbol="AAPL.US", side="BUY", quantity=10):
    return orders.validate_intent(cid, symbol, side, quantity, "test")


def events(db, cid):
    with db.transaction() as session:
        return [e.state for e in store.order_events(session, store.find_order(session, cid).id)]


def test_buy_fills_with_every_state_recorded(tmp_path):
    engine, broker, _, db = make_engine(tmp_path)
    row = engine.submit(intent("a"), None, START)
    assert (row.state, row.filled_quantity, row.fill_price) == ("FILLED", 10, 100.0)
    assert row.limit_price == pytest.approx(105.0) and row.commission == pytest.approx(2.2 + 2.0)
    assert events(db, "a") == ["NEW", "SUBMITTED", "FILLED"]
    account = broker.account()
    assert [(p.symbol, p.quantity) for p in account.positions] == [("AAPL.US", 10)]
    # the USD needed at the limit price (with commission), plus 2%, was converted from EUR first
    needed_at_limit = 10 * 105.0 + orders.commission(1050.0, "USD", "EUR", RATES)
    assert account.cash["USD"] == pytest.approx(needed_at_limit * 1.02 - 1004.2, abs=0.02)
    with pytest.raises(AlreadyExists):
        engine.submit(intent("a"), None, START + timedelta(hours=2))


def test_refusal_is_stored_and_nothing_reaches_the_broker(tmp_path):
    engine, broker, reads, db = make_engine(tmp_path)
    reads.market_open_value = False
    with pytest.raises(FailedPrecondition, match="^market_closed"):
        engine.submit(intent("s", side="SELL"), None, START)
    with db.transaction() as session:
        order = store.find_order(session, "s")
        assert order.state == "REJECTED" and order.reason.startswith("market_closed")
    assert broker.executions() == []


def test_bad_input_stores_nothing(tmp_path):
    engine, _, _, db = make_engine(tmp_path)
    with pytest.raises(NotFound):
        engine.submit(intent("x", symbol="NOPE.US"), None, START)
    with db.transaction() as session:
        assert store.orders(session, 10) == []
    with pytest.raises(InvalidArgument):
        orders.validate_intent("y", "AAPL.US", "BUY", 0, "")


def test_rejection_by_the_broker(tmp_path):
    engine, broker, _, db = make_engine(tmp_path, faults=["reject"])
    with pytest.raises(FailedPrecondition, match="^broker_rejected"):
        engine.submit(intent("r"), None, START)
    assert events(db, "r") == ["NEW", "SUBMITTED", "REJECTED"] and broker.executions() == []


def test_lost_reply_after_accept_is_resolved_by_lookup_not_resent(tmp_path):
    serving = []
    engine, broker, _, db = make_engine(tmp_path, faults=["timeout_after_accept"], serving=serving)
    with pytest.raises(Unavailable, match="never resent"):
        engine.submit(intent("t"), None, START)
    assert events(db, "t")[-1] == "UNKNOWN_OUTCOME" and serving[-1] is False
    with pytest.raises(FailedPrecondition, match="^reconciliation"):
        engine.submit(intent("u", symbol="KO.US"), None, START + timedelta(hours=2))
    fills, movements = engine.sync(START)
    assert fills == 1 and movements == 3  # the seed deposit and the conversion's two legs
    assert events(db, "t")[-1] == "FILLED" and serving[-1] is True
    assert len(broker.executions()) == 1 and engine.sync(START) == (0, 0)  # each imported once


def test_disconnect_before_sending_resolves_to_rejected(tmp_path):
    engine, broker, _, db = make_engine(tmp_path, faults=["disconnect"])
    with pytest.raises(Unavailable):
        engine.submit(intent("d"), None, START)
    engine.sync(START)
    assert events(db, "d")[-2:] == ["UNKNOWN_OUTCOME", "REJECTED"] and engine.reconciliation.reconciled


def test_partial_fill_keeps_the_filled_part(tmp_path):
    engine, broker, _, db = make_engine(tmp_path, faults=["partial_fill"])
    row = engine.submit(intent("p"), None, START)
    assert (row.state, row.filled_quantity) == ("CANCELLED", 5)
    assert events(db, "p") == ["NEW", "SUBMITTED", "PARTIALLY_FILLED", "CANCELLED"]
    assert [p.quantity for p in broker.account().positions] == [5] and engine.reconcile().reconciled


# --- no order is orphaned: the check and the conversion round alike; every failure ends final ---

EXAMPLE_AS_OF = datetime(2022, 12, 29, 15, 0, tzinfo=UTC)


def example_engine(tmp_path, balance, faults=()):
    """Issue 8 item 5: a paper account holding only `balance` EUR, AAPL.US quoted 125.674 USD."""
    engine, broker, reads, db = make_engine(tmp_path, faults=faults, seed=0)
    broker.deposit(balance, "EUR", "example", EXAMPLE_AS_OF)
    reads.prices["AAPL.US"], reads.now = 125.674, EXAMPLE_AS_OF
    return engine, broker, reads, db


def test_a_conversion_one_cent_short_is_refused_by_the_check_and_stored_rejected(tmp_path):
    engine, broker, _, db = example_engine(tmp_path, 122.201470)
    with pytest.raises(FailedPrecondition, match="^cash: needs 122.21 EUR converted to USD, 122.20 EUR"):
        engine.check(intent("x1", quantity=1), None, EXAMPLE_AS_OF)
    with pytest.raises(FailedPrecondition, match="^cash"):
        engine.submit(intent("x1", quantity=1), None, EXAMPLE_AS_OF)
    assert events(db, "x1") == ["NEW", "REJECTED"]
    assert broker.executions() == [] and broker.account().cash == {"EUR": pytest.approx(122.201470)}
    engine.sync(EXAMPLE_AS_OF)
    broker.deposit(0.00853, "EUR", "the missing cent", EXAMPLE_AS_OF)  # 122.21 EUR now
    approval, _ = engine.check(intent("x2", quantity=1), None, EXAMPLE_AS_OF)
    assert approval.conversion == 122.21  # what the broker is asked to convert, to the cent
    row = engine.submit(intent("x2", quantity=1), None, EXAMPLE_AS_OF)  # not blocked by pending_order
    assert (row.state, row.filled_quantity) == ("FILLED", 1)
    assert broker.account().cash["EUR"] == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(price=st.floats(5.0, 500.0), quantity=st.integers(1, 30), usd=st.sampled_from([0.0, 0.004, 3.5, 99.99]),
       buffer=st.sampled_from([1.0, 1.02]), offset=st.floats(-0.02, 0.02))
def test_what_the_check_allows_the_broker_executes(tmp_path_factory, price, quantity, usd, buffer, offset):
    """The kind of item 5: balances within a cent or two of what a BUY needs converted (with or
    without the 2% buffer). One the check allows is converted and filled; one it refuses is
    REJECTED by the same rule; never a broker refusal, never an order left open."""
    value = quantity * price * 1.05
    needed_eur = (value + orders.commission(value, "USD", "EUR", RATES) - usd) * buffer / RATES["USD"]
    balance = round(max(0.0, needed_eur + offset), 6)
    engine, broker, reads, db = example_engine(tmp_path_factory.mktemp("kind"), balance)
    if usd:
        broker.deposit(usd, "USD", "usd", EXAMPLE_AS_OF)
    reads.prices["AAPL.US"] = price
    order = intent("k", quantity=quantity)
    try:
        engine.check(order, None, EXAMPLE_AS_OF)
        allowed = None
    except FailedPrecondition as refusal:
        allowed = refusal.rule
    try:
        row = engine.submit(order, None, EXAMPLE_AS_OF)
        assert allowed is None and (row.state, row.filled_quantity) == ("FILLED", quantity)
    except FailedPrecondition as refusal:
        assert refusal.rule == allowed == "cash" and events(db, "k") == ["NEW", "REJECTED"]
    assert all(amount >= -1e-9 for amount in broker.account().cash.values())
    db.close()


@pytest.mark.parametrize(("fault", "raised", "reason"), [
    ("reject_conversion", FailedPrecondition, "broker_rejected: the currency conversion was refused"),
    ("disconnect_conversion", Unavailable, "the currency conversion failed (ConnectionError"),
])
def test_a_failed_conversion_ends_the_order_before_it_is_sent(tmp_path, fault, raised, reason):
    engine, broker, _, db = make_engine(tmp_path, faults=[fault])
    with pytest.raises(raised):
        engine.submit(intent("c"), None, START)
    with db.transaction() as session:
        order = store.find_order(session, "c")
        assert (order.state, order.reason.startswith(reason)) == ("REJECTED", True), order.reason
    assert broker.executions() == [] and engine.submit(intent("c2"), None, START).state == "FILLED"


def test_a_currency_without_a_rate_is_refused_after_the_intent_is_stored(tmp_path):
    engine, broker, reads, db = make_engine(tmp_path)
    reads.prices["NESN.SW"] = 100.0  # CHF: no EURCHF rate
    with pytest.raises(FailedPrecondition, match="^fx_rate_missing"):
        engine.submit(intent("chf", "NESN.SW"), None, START)
    assert events(db, "chf") == ["NEW", "REJECTED"] and broker.executions() == []


def test_a_bug_before_sending_still_ends_the_order(tmp_path, monkeypatch):
    engine, broker, _, db = make_engine(tmp_path)

    def broken(*_):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("services.trading.risk.check", broken)
    with pytest.raises(ZeroDivisionError):  # our bug: INTERNAL, and still no open order left behind
        engine.submit(intent("bug"), None, START)
    with db.transaction() as session:
        order = store.find_order(session, "bug")
        assert (order.state, order.reason) == ("REJECTED", "not sent: internal error: ZeroDivisionError")


def orphan(db, cid, state, symbol="AAPL.US", side="BUY", quantity=10):
    """An order left as a killed process leaves it: stored, moved along legal edges to `state`."""
    path = {"NEW": [], "SUBMITTED": ["SUBMITTED"], "UNKNOWN_OUTCOME": ["SUBMITTED", "UNKNOWN_OUTCOME"]}[state]
    with db.transaction() as session:
        row = store.add_order(session, intent(cid, symbol, side, quantity), "USD", START)
        row.limit_price = 105.0
        for step in path:
            store.set_state(session, row.id, step, "", START)
        return row.id


@pytest.mark.parametrize(("state", "final", "reason"), [
    ("NEW", "REJECTED", "never sent"),
    ("SUBMITTED", "CANCELLED", "not open at the broker and never filled"),
    ("UNKNOWN_OUTCOME", "REJECTED", "the broker has no such order"),
])
def test_an_orphan_is_resolved_at_start_and_blocks_nothing(tmp_path, state, final, reason):
    engine, broker, _, db = make_engine(tmp_path)
    orphan(db, "orphan", state)
    with pytest.raises(FailedPrecondition, match="^pending_order"):  # (later than the caps' 60 minutes)
        engine.submit(intent("blocked"), None, START + timedelta(hours=2))
    restarted = OrderEngine("replay", db, broker, engine._reads)  # the start-up reconciliation is a sync
    restarted.sync(START + orders.ACTIVE_LIST_GRACE)
    with db.transaction() as session:
        order = store.find_order(session, "orphan")
        assert (order.state, order.reason.startswith(reason)) == (final, True), order.reason
    assert restarted.submit(intent("next"), None, START).state == "FILLED"


def test_a_submitted_order_the_broker_does_not_list_yet_stays_open_for_the_grace_period(tmp_path):
    """A broker's active-order list can lag an accepted order: closing it then would free the caps
    for a duplicate while the first is still live."""
    engine, broker, _, db = make_engine(tmp_path)
    orphan(db, "just-sent", "SUBMITTED")
    almost = START + orders.ACTIVE_LIST_GRACE - timedelta(seconds=1)
    engine.sync(almost)
    with db.transaction() as session:
        assert store.find_order(session, "just-sent").state == "SUBMITTED"
    # still live: the working order counts in the frequency caps (checked before pending_order)
    with pytest.raises(FailedPrecondition, match="^(min_time_between_trades|pending_order)"):
        engine.submit(intent("duplicate"), None, almost)
    engine.sync(START + orders.ACTIVE_LIST_GRACE)
    with db.transaction() as session:
        assert store.find_order(session, "just-sent").state == "CANCELLED"


def test_an_orphan_can_be_cancelled(tmp_path):
    engine, _, _, db = make_engine(tmp_path)
    order_id = orphan(db, "stuck", "NEW")
    with db.transaction() as session:
        row = session.get(store.OrderRow, order_id)
    cancelled = engine.cancel(row, START)  # not at the broker: resolved by lookup, not "in flight"
    assert (cancelled.state, cancelled.reason) == ("REJECTED", "never sent: the broker has it neither open nor "
                                                               "executed")
    with pytest.raises(FailedPrecondition, match="^order_final"):
        engine.cancel(cancelled, START)


def test_a_filled_order_cannot_be_cancelled(tmp_path):
    engine, broker, _, db = make_engine(tmp_path, faults=["timeout_after_accept"])
    with pytest.raises(Unavailable):
        engine.submit(intent("late"), None, START)
    with db.transaction() as session:
        row = store.find_order(session, "late")
    with pytest.raises(FailedPrecondition, match="^order_final: order late is FILLED"):
        engine.cancel(row, START)  # the lookup finds it executed
    assert events(db, "late")[-1] == "FILLED"


def test_realized_pnl_uses_average_cost(tmp_path):
    engine, _, reads, db = make_engine(tmp_path)
    engine.submit(intent("b1"), None, START)
    reads.prices["AAPL.US"] = 120.0
    reads.now = START + timedelta(days=40)
    engine.submit(intent("b2"), None, reads.now)
    reads.prices["AAPL.US"] = 130.0
    later = START + timedelta(days=140)
    reads.now = later
    sold = engine.submit(intent("s1", side="SELL", quantity=5), None, later)
    expected = (130.0 - 110.0) * 5 - orders.commission(5 * 130.0, "USD", "EUR", RATES)
    assert sold.realized_pnl == pytest.approx(expected)
    with db.transaction() as session:
        assert store.average_cost(session, "AAPL.US") == pytest.approx(110.0)


def test_books_that_disagree_stop_trading_until_accepted(tmp_path):
    serving = []
    engine, broker, _, db = make_engine(tmp_path, serving=serving)
    outside = orders.validate_intent("outside", "KO.US", "BUY", 3, "")
    from services.trading.adapters.broker import MarketOrder

    broker.deposit(1000, "USD", "usd-seed", START)
    broker.place_market_order(MarketOrder(outside.client_order_id, "KO.US", "BUY", 3, "USD", 60.0, 63.0), START)
    assert not engine.reconcile().reconciled  # a broker fill the ledger has not imported yet...
    engine.sync(START)  # ...is imported once, and the books agree again
    assert engine.reconciliation.reconciled
    with db.transaction() as session:
        session.execute(store.TradeRow.__table__.delete())  # ...until the ledger loses it
    assert not engine.reconcile().reconciled and serving[-1] is False
    assert engine.reconciliation.issues == ["KO.US: books 0, broker 3"]
    with pytest.raises(FailedPrecondition, match="^reconciliation"):
        engine.submit(intent("z"), None, START + timedelta(hours=1))
    assert engine.accept_broker_positions("bought by hand", START).reconciled and serving[-1] is True


def test_settings_round_trip(tmp_path):
    engine, *_ = make_engine(tmp_path)
    assert engine.settings().max_trades_per_day == 4
    assert engine.update_settings({"max_trades_per_day": 2}, START).max_trades_per_day == 2
    with pytest.raises(InvalidArgument):
        engine.update_settings({"price_band": 0.9}, START)
    assert engine.settings().max_trades_per_day == 2 and engine.settings().price_band == 0.05


# --- the state machine ---

SYMBOLS = ("AAPL.US", "SAP.DE", "KO.US")


ORDER_FAULTS = [None, None, None, "reject", "disconnect", "timeout_after_accept", "partial_fill",
                "reject_conversion", "disconnect_conversion"]


class TradingMachine(RuleBasedStateMachine):
    """Random orders, deposits, price moves, time steps, faults, kills (orders orphaned as a
    killed process leaves them), restarts and syncs against the invariants."""

    def __init__(self):
        super().__init__()
        import tempfile
        from pathlib import Path

        self.tmp = tempfile.TemporaryDirectory()
        self.engine, self.broker, self.reads, self.db = make_engine(Path(self.tmp.name), seed=5_000.0)
        self.engine.update_settings({"min_hold_days": 0, "sell_cooldown_days": 0, "buy_cooldown_days": 0}, START)
        self.now = START
        self.sent: list[str] = []

    def teardown(self):
        self.db.close()
        self.tmp.cleanup()

    def state_of(self, cid: str) -> str:
        with self.db.transaction() as session:
            return store.find_order(session, cid).state

    @rule(symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(["BUY", "SELL"]), quantity=st.integers(1, 400),
          fault=st.sampled_from(ORDER_FAULTS))
    def order(self, symbol, side, quantity, fault):
        cid = f"o{len(self.sent)}"
        self.sent.append(cid)
        order = intent(cid, symbol, side, quantity)
        try:
            self.engine.check(order, None, self.now)
            allowed = None
        except FailedPrecondition as refusal:
            allowed = refusal.rule
        if fault:
            self.broker.faults.append(fault)
        try:
            row = self.engine.submit(order, None, self.now)
            assert allowed is None, allowed
            partial = fault == "partial_fill" and row.quantity > 1  # half of one share is the share
            assert row.state == ("CANCELLED" if partial else "FILLED"), (fault, row.state)
        except FailedPrecondition as refusal:  # a rule, or the broker, refused: never INTERNAL
            assert refusal.rule == allowed or (allowed is None and refusal.rule == "broker_rejected" and fault in (
                "reject", "reject_conversion")), (allowed, refusal.message, fault)
            assert self.state_of(cid) == "REJECTED"
        except Unavailable:  # the broker could not be reached: the order ends or awaits its lookup
            assert fault in ("disconnect", "timeout_after_accept", "disconnect_conversion")
            assert self.state_of(cid) in ("REJECTED", "UNKNOWN_OUTCOME")
        self.broker.faults.clear()

    @rule(symbol=st.sampled_from(SYMBOLS), state=st.sampled_from(["NEW", "SUBMITTED"]))
    def killed_mid_order(self, symbol, state):
        """The process died between storing the intent (or marking it sent) and the broker."""
        cid = f"o{len(self.sent)}"
        self.sent.append(cid)
        orphan(self.db, cid, state, symbol=symbol)

    @rule()
    def restart(self):
        self.engine = OrderEngine("replay", self.db, self.broker, self.reads)
        self.engine.sync(self.now)  # the start-up reconciliation

    @rule(amount=st.floats(0.01, 3000.0).map(lambda x: round(x, 6)), currency=st.sampled_from(["EUR", "USD"]))
    def deposit(self, amount, currency):
        self.broker.deposit(amount, currency, f"d{len(self.sent)}-{amount}-{self.now.isoformat()}", self.now)

    @rule(minutes=st.sampled_from([1, 30, 61, 600, 1500, 4 * 1440]))
    def advance(self, minutes):
        self.now += timedelta(minutes=minutes)
        self.reads.now = self.now

    @rule(symbol=st.sampled_from(SYMBOLS), change=st.floats(0.7, 1.3))
    def move_price(self, symbol, change):
        self.reads.prices[symbol] = round(self.reads.prices[symbol] * change, 2)

    @rule()
    def sync(self):
        self.engine.sync(self.now)

    @invariant()
    def no_duplicate_executions(self):
        ids = [e.client_order_id for e in self.broker.executions()]
        assert len(ids) == len(set(ids))

    @invariant()
    def no_negative_positions_or_cash(self):
        account = self.broker.account()
        assert all(p.quantity >= 0 for p in account.positions)
        assert all(amount >= -1e-6 for amount in account.cash.values())

    @invariant()
    def frequency_caps_hold(self):
        times = sorted(e.executed_at for e in self.broker.executions())
        for earlier, later in zip(times, times[1:], strict=False):
            assert later - earlier >= timedelta(minutes=60)
        for t in times:
            assert sum(1 for u in times if u.date() == t.date()) <= 4
            assert sum(1 for u in times if timedelta(0) <= t - u < timedelta(days=7)) <= 10

    @precondition(lambda self: self.sent)
    @rule()
    def everything_final_after_sync(self):
        self.advance(int(orders.ACTIVE_LIST_GRACE.total_seconds() // 60))  # past the broker list's lag
        self.engine.sync(self.now)
        with self.db.transaction() as session:
            states = {o.client_order_id: o.state for o in store.orders(session, 10_000)}
        assert all(state in orders.FINAL_STATES for state in states.values()), states
        assert self.engine.reconciliation.reconciled


TradingMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
test_trading_state_machine = TradingMachine.TestCase


# --- the emergency path ---

def test_conversion_plan_keeps_reserves_and_covers_the_deficit():
    from services.trading.emergency import RESERVE, plan_conversions

    planned = plan_conversions({"EUR": 100.0, "USD": -55.0, "GBP": 3.0}, "EUR", RATES | {"GBP": 0.85})
    assert [(p.from_currency, p.to_currency) for p in planned] == [("EUR", "USD")]  # GBP is under its reserve
    assert planned[0].to_amount >= 55.0 + RESERVE - 0.01 and 100.0 - planned[0].from_amount >= RESERVE
    assert plan_conversions({"EUR": 4.0, "USD": -50.0}, "EUR", RATES) == []  # nothing above the reserve
    unpriced = plan_conversions({"EUR": 100.0, "USD": -55.0, "CHF": 500.0, "SEK": -3.0}, "EUR", RATES)
    assert [(p.from_currency, p.to_currency) for p in unpriced] == [("EUR", "USD")]  # no rate: left out


def test_sale_plan_takes_the_largest_first_with_a_buffer():
    from services.trading.emergency import plan_sales

    sales = plan_sales(1000.0, [("A.US", 5, 100.0), ("B.US", 100, 50.0), ("C.US", 1000, 1.0)], {"B.US": 10})
    assert sales == [("B.US", 30)]  # 5,000 held in B: 30 shares (whole lots of 10) cover 1,100
    assert plan_sales(10_000.0, [("A.US", 5, 100.0)], {}) == [("A.US", 5)]  # never above the holding


def _force_cash(db, currency, amount):
    from services.trading.adapters.paper_broker import PaperCash

    with db.transaction() as session:
        session.merge(PaperCash(currency=currency, amount=amount))


def test_emergency_converts_first_then_sells_waiving_only_holding_rules(tmp_path):
    engine, broker, reads, db = make_engine(tmp_path)
    engine.submit(intent("e1", "KO.US", "BUY", 100), None, START)
    engine.sync(START)
    _force_cash(db, "EUR", 50.0)           # little left to convert from
    _force_cash(db, "USD", -3000.0)        # e.g. fees charged by the broker
    later = START + timedelta(minutes=5)   # inside the 60-minute cap and the 90-day minimum hold
    conversions, placed, remaining = engine.resolve_negative_balances(later)
    assert [(c.from_currency, c.to_currency) for c in conversions] == [("EUR", "USD")]
    assert broker.account().cash["EUR"] == pytest.approx(5.0)  # the reserve stays
    assert [(o.symbol, o.side, o.state) for o in placed] == [("KO.US", "SELL", "FILLED")]
    assert remaining == {} and broker.account().cash["USD"] > 0
    assert placed[0].quantity == 55  # (3000 - 49.50 converted) x 1.1 / 60 = 54.1, rounded up to whole shares
    assert engine.resolve_negative_balances(later + timedelta(minutes=1)) == ([], [], {})


def test_emergency_still_needs_an_open_market(tmp_path):
    engine, broker, reads, db = make_engine(tmp_path)
    engine.submit(intent("e2", "KO.US", "BUY", 10), None, START)
    _force_cash(db, "EUR", 0.0)
    _force_cash(db, "USD", -100.0)
    reads.market_open_value = False
    _, placed, remaining = engine.resolve_negative_balances(START + timedelta(minutes=1))
    assert [(o.state, o.reason.split(":")[0]) for o in placed] == [("REJECTED", "market_closed")]
    assert remaining == {"USD": pytest.approx(-100.0)}


def test_two_emergencies_never_run_at_once(tmp_path):
    engine, *_ = make_engine(tmp_path)
    engine._emergency_lock.acquire()
    try:
        with pytest.raises(FailedPrecondition, match="^emergency_in_progress"):
            engine.resolve_negative_balances(START)
    finally:
        engine._emergency_lock.release()


def test_a_refused_emergency_conversion_is_covered_by_sales_never_internal(tmp_path):
    engine, broker, reads, db = make_engine(tmp_path)
    engine.submit(intent("e3", "KO.US", "BUY", 100), None, START)
    engine.sync(START)
    _force_cash(db, "USD", -300.0)
    broker.faults.append("reject_conversion")
    with db.transaction() as session:  # a holding the data service no longer knows: not sold, no NOT_FOUND
        from services.trading.adapters.paper_broker import PaperPosition

        session.add(PaperPosition(symbol="GONE.US", quantity=1000, average_cost=10.0, currency="USD"))
    conversions, placed, remaining = engine.resolve_negative_balances(START + timedelta(minutes=5))
    assert conversions == []  # refused by the broker, so the SELL covers it
    assert [(o.symbol, o.state) for o in placed] == [("KO.US", "FILLED")] and remaining == {}


def test_the_synced_account_includes_the_dividends_that_sync_paid(tmp_path):
    """SyncBroker answers with the account as its sync left it: a dividend paid by that sync is
    in the cash it reports (the account is read again once dividends were credited)."""
    from services.trading.adapters.broker import DividendPerShare

    engine, broker, reads, _ = make_engine(tmp_path)
    engine.submit(intent("div", symbol="KO.US", quantity=10), None, START)  # fills at once ("quote")
    _, _, before = engine.sync_account(START)
    reads.per_share = [DividendPerShare("KO.US", (START + timedelta(days=2)).date(), 0.5)]
    imported, moved, after = engine.sync_account(START + timedelta(days=3))
    assert (imported, moved) == (0, 1) and after.positions == before.positions
    assert after.cash["USD"] == pytest.approx(before.cash["USD"] + 5.0) == broker.account().cash["USD"]
    assert engine.sync_account(START + timedelta(days=4))[2] == after  # paid once


def test_the_kept_account_and_ledger_reads_change_with_every_write(tmp_path):
    """The paper broker's and the engine's reads kept per table revision answer what fresh
    reads of the database answer, after every kind of write: a deposit, an order held for the
    close, its fill at the close, a conversion, a dividend, a cancel, a settings change."""
    from services.trading.adapters.broker import DividendPerShare, MarketOrder

    day_close = {}
    db = store.open_database(f"sqlite:///{tmp_path / 'kept.db'}")

    def paper() -> PaperBroker:
        return PaperBroker(db, lambda value, currency: 1.0, fills="close",
                           closes=lambda symbols, start: {s: sorted(day_close.items()) for s in symbols})

    broker, reads = paper(), FakeReads()
    engine = OrderEngine("replay", db, broker, reads)

    def answers(of: PaperBroker, engine: OrderEngine):
        account = of.account()
        return (account.positions, account.cash, of.executions(), of.executions(START + timedelta(days=1)),
                of.cash_movements(), of.cash_movements(START + timedelta(days=1)), of.open_order_ids(),
                engine.ledger_end(), engine.settings(), engine.reconcile())

    def same() -> tuple:
        kept = answers(broker, engine)
        fresh = paper()
        assert kept == answers(fresh, OrderEngine("replay", db, fresh, reads))
        return kept

    same()
    broker.deposit(1000.0, "USD", "d1", START)
    assert same()[1] == {"USD": 1000.0}
    close_at = START + timedelta(hours=6)
    broker.place_market_order(MarketOrder("c1", "AAPL.US", "BUY", 2, "USD", 100.0, 105.0, START.date(), close_at),
                              START)
    assert same()[6] == {"c1"}
    assert broker.settle(close_at) == 0 and same()[6] == {"c1"}  # its close is not known yet
    day_close[START.date()] = 101.0
    assert broker.settle(close_at) == 1
    positions, cash, executions, *_ = same()
    assert positions[0].quantity == 2 and cash["USD"] == 1000.0 - 203.0 and len(executions) == 1
    engine.sync(close_at + timedelta(minutes=1), settle=False)  # imports the fill into the ledger
    assert same()[7][0] == 1
    broker.convert("USD", 100.0, "EUR", 90.0, "fx1", START + timedelta(days=2))
    assert len(same()[5]) == 2 and same()[1]["EUR"] == 90.0
    assert broker.pay_dividends([DividendPerShare("AAPL.US", START.date() + timedelta(days=3), 0.5)],
                                START + timedelta(days=4)) == 1
    assert same()[1]["USD"] == 1000.0 - 203.0 - 100.0 + 1.0
    broker.place_market_order(MarketOrder("c2", "AAPL.US", "SELL", 1, "USD", 100.0, 95.0, START.date(), close_at),
                              START + timedelta(days=5))
    assert same()[6] == {"c2"}
    assert broker.cancel("c2") and same()[6] == set()
    engine.update_settings({"price_band": 0.07}, START)
    assert same()[8].price_band == 0.07


def test_kept_rows_since_a_moment_are_read_again_for_an_earlier_one_or_after_a_write(tmp_path):
    """services/common/revisions.KeptSince: a later moment is served from what an earlier one
    read (no read), an earlier moment or a committed write reads again, and a read that raced a
    commit is not kept."""
    from services.common.revisions import KeptSince

    db = store.open_database(f"sqlite:///{tmp_path / 'since.db'}")
    broker = PaperBroker(db, lambda value, currency: 0.0)
    reads = []

    def read(session, since):
        reads.append(since)
        return [(m.at, m.broker_id) for m in broker.cash_movements(since)]

    kept = KeptSince(db.revisions, ("paper_transfers",))
    for day in range(3):
        broker.deposit(10.0, "EUR", f"d{day}", START + timedelta(days=day))
    ids = [m.broker_id for m in broker.cash_movements()]
    assert kept.values(db.transaction, START + timedelta(days=1), read) == ids[1:]
    assert kept.values(db.transaction, START + timedelta(days=2), read) == ids[2:]  # from what was read
    assert reads == [START + timedelta(days=1)]
    assert kept.values(db.transaction, START, read) == ids and reads[-1] == START  # earlier: read again
    broker.deposit(10.0, "EUR", "d3", START + timedelta(days=3))
    assert len(kept.values(db.transaction, START + timedelta(days=2), read)) == 2 and len(reads) == 3

    def racing(session, since):  # a write commits while this reads: its answer is served, not kept
        broker.deposit(1.0, "EUR", f"race{len(reads)}", START + timedelta(days=9))
        return read(session, since)

    before = START - timedelta(days=1)  # earlier than what is kept: read
    assert len(kept.values(db.transaction, before, racing)) == 5 and len(reads) == 4
    assert len(kept.values(db.transaction, before, read)) == 5 and len(reads) == 5  # not kept: read again
    assert len(kept.values(db.transaction, before, read)) == 5 and len(reads) == 5  # kept now


def test_an_open_buy_holds_back_its_cash_from_the_next_orders_check(tmp_path):
    """The cash an order's check sees is the broker's less what the open BUYs in that currency
    still hold (read with the ledger the check reads anyway)."""
    db = store.open_database(f"sqlite:///{tmp_path / 'held.db'}")
    broker = PaperBroker(db, lambda value, currency: 0.0, fills="close", closes=lambda symbols, start: {})
    engine = OrderEngine("replay", db, broker, FakeReads())
    engine.reconcile()
    broker.deposit(1_500.0, "USD", "seed", START)
    later = START + timedelta(hours=5)
    assert engine.check(intent("k1", "KO.US", quantity=9), None, later)[0].quantity == 9  # 9 x 60: cash enough
    held = engine.submit(intent("b1", quantity=10), None, START)  # held for the close: 10 x its limit
    assert held.state == orders.SUBMITTED
    with pytest.raises(FailedPrecondition, match="cash"):
        engine.check(intent("k2", "KO.US", quantity=9), None, later)
    assert engine.check(intent("k3", "KO.US", quantity=3), None, later)[0].quantity == 3
