"""Trading's side of the one book of money (issue 12 item 1): SyncBroker hands over the trades
and cash movements after the caller's cursor, page by page, from the beginning again when the
cursor is beyond the ledger; orders and trades carry their bucket; the daily P&L is one
GetDailyPnl, read fail-closed."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from trader.portfolio.v1 import portfolio_pb2
from trader.trading.v1 import trading_pb2

from services.common import clock
from services.common.errors import InvalidArgument
from services.trading import store
from services.trading.adapters.services import ServiceReads
from services.trading.server import TradingServicer
from tests.helpers import make_config
from tests.test_trading_engine import START, intent, make_engine


def sync(servicer, after=None):
    request = trading_pb2.SyncBrokerRequest()
    if after is not None:
        request.after.CopyFrom(trading_pb2.LedgerCursor(trade_id=after[0], cash_movement_id=after[1]))
    with clock.use_as_of(START + timedelta(hours=1)):
        return servicer.SyncBroker(request, None)


@pytest.fixture
def ledger(tmp_path):
    engine, broker, reads, db = make_engine(tmp_path)  # a 100,000 EUR seed deposit
    reads.buckets["AAPL.US"] = "growth"
    engine.submit(intent("a"), None, START)  # converts EUR to USD, then buys: 2 movements, 1 trade
    engine.submit(intent("b", symbol="SAP.DE"), None, START + timedelta(hours=2))
    engine.sync(START + timedelta(hours=3))
    return TradingServicer(make_config("trading", token=None), db, engine), db


def test_the_entries_after_the_cursor_come_back_oldest_first(ledger):
    servicer, _ = ledger
    everything = sync(servicer, (0, 0))
    assert [t.client_order_id for t in everything.trades] == ["a", "b"]
    assert [m.kind for m in everything.cash_movements] == ["deposit", "conversion_out", "conversion_in"]
    assert everything.cash_movements[0].reference == "seed"
    assert everything.cash_movements[1].reference == everything.cash_movements[2].reference == "fx:a"
    cursor = (everything.cursor.trade_id, everything.cursor.cash_movement_id)
    assert not everything.more_entries and cursor == (everything.trades[-1].id, everything.cash_movements[-1].id)
    later = sync(servicer, (everything.trades[0].id, everything.cash_movements[0].id))
    assert [t.client_order_id for t in later.trades] == ["b"] and len(later.cash_movements) == 2
    nothing = sync(servicer, cursor)
    assert not nothing.trades and not nothing.cash_movements and nothing.cursor == everything.cursor
    assert not sync(servicer).trades  # no cursor: positions and cash only


def test_pages_and_a_cursor_beyond_the_ledger(ledger, monkeypatch):
    servicer, _ = ledger
    monkeypatch.setattr(store, "LEDGER_PAGE", 1)
    first = sync(servicer, (0, 0))
    assert (len(first.trades), len(first.cash_movements), first.more_entries) == (1, 1, True)
    second = sync(servicer, (first.cursor.trade_id, first.cursor.cash_movement_id))
    assert [t.client_order_id for t in second.trades] == ["b"] and second.cash_movements[0].kind == "conversion_out"
    monkeypatch.setattr(store, "LEDGER_PAGE", 1000)
    restarted = sync(servicer, (99, 99))  # a newer trading database than the portfolio's cursor
    assert [t.client_order_id for t in restarted.trades] == ["a", "b"] and len(restarted.cash_movements) == 3


def test_a_negative_cursor_is_invalid(ledger):
    servicer, _ = ledger
    with pytest.raises(InvalidArgument, match="^after"):
        sync(servicer, (-1, 0))


def test_orders_and_trades_carry_their_bucket(ledger):
    servicer, db = ledger
    with db.transaction() as session:
        orders = {o.client_order_id: o.bucket for o in store.orders(session, 10)}
        trades = {t.client_order_id: t.bucket for t in store.trades(session, 10)}
    assert orders == trades == {"a": "growth", "b": "core"}
    assert {t.client_order_id: t.bucket for t in sync(servicer, (0, 0)).trades} == {"a": "growth", "b": "core"}


class Replying:
    def __init__(self, outcome):
        self.outcome = outcome
        self.requests = []

    def GetDailyPnl(self, request):
        self.requests.append(request)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class Down(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(("reply", "expected"), [
    (portfolio_pb2.DailyPnl(armed=False), (False, None)),
    (portfolio_pb2.DailyPnl(armed=True, daily_pnl=-0.03), (True, -0.03)),
    (portfolio_pb2.DailyPnl(armed=True), (True, None)),  # armed but not computable: the breaker refuses
    (Down(), (True, None)),                               # unreadable: armed and unknown, fail closed
])
def test_the_daily_pnl_is_one_read_and_fails_closed(reply, expected):
    reads = ServiceReads.__new__(ServiceReads)
    reads._portfolio = Replying(reply)
    assert reads.daily_pnl(START.date()) == expected
    assert [r.as_of for r in reads._portfolio.requests] == [START.date().isoformat()]


def test_a_cursor_at_the_ledger_end_gets_what_is_booked_after_it(ledger):
    """SyncBroker answers a cursor at the ledger's end without reading the ledger, as long as
    nothing was booked since (the kept end moves with each trade and cash movement)."""
    servicer, db = ledger
    end = sync(servicer, (0, 0)).cursor
    at_end = (end.trade_id, end.cash_movement_id)
    assert not sync(servicer, at_end).trades and sync(servicer, at_end).cursor == end
    servicer._engine.fund_paper_account(50.0, "EUR", "later", START + timedelta(minutes=90))
    after_deposit = sync(servicer, at_end)
    assert [m.reference for m in after_deposit.cash_movements] == ["later"] and not after_deposit.trades
    at_end = (after_deposit.cursor.trade_id, after_deposit.cursor.cash_movement_id)
    servicer._engine.submit(intent("c", symbol="KO.US"), None, START + timedelta(minutes=95))
    after_trade = sync(servicer, at_end)
    assert [t.client_order_id for t in after_trade.trades] == ["c"]


def test_the_trades_since_a_date_change_with_each_trade_and_an_earlier_date(ledger):
    """ListTrades with `since` (the cycle's question, kept until a trade is recorded) answers as
    the ledger does: a later date from what was read for an earlier one, an earlier date and a
    new trade read again; the limit counts the newest."""
    from services.common.timestamps import to_timestamp

    servicer, db = ledger

    def listed(since, limit=0):
        request = trading_pb2.ListTradesRequest(limit=limit, since=to_timestamp(since))
        return [t.client_order_id for t in servicer.ListTrades(request, None).trades]

    def expected(since, limit=100):
        with db.transaction() as session:
            return [t.client_order_id for t in store.trades(session, limit, 0, since)]

    first, second = START, START + timedelta(hours=2)  # the fills of "a" and "b"
    assert listed(second) == expected(second) == ["b"]
    assert listed(second + timedelta(hours=1)) == [] and listed(first) == ["b", "a"] == expected(first)
    assert listed(first, limit=1) == ["b"]
    servicer._engine.submit(intent("c", symbol="KO.US"), None, START + timedelta(hours=4))
    assert listed(second) == ["c", "b"] == expected(second)
