"""The paper broker's market-on-close fills (issue 11 item 2): an order waits for its session's
close, fills at that close when it is within the limit and otherwise expires; the fill is dated
at the close; an order whose close is not known yet stays open. And the replay's clock: each
cycle runs inside the primary exchange's session, 30 minutes before its close."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.config import ReplayConfig
from gateway.replay import cycle_instant
from services.data.market_hours import sessions
from services.trading import orders, store
from services.trading.adapters.broker import MarketOrder
from services.trading.adapters.paper_broker import PaperBroker

SESSION = date(2018, 1, 3)
CLOSE = datetime(2018, 1, 3, 21, 0, tzinfo=UTC)
PLACED = CLOSE - timedelta(minutes=30)


class Closes:
    """The market data as the broker reads it: symbol -> [(date, close)] visible now."""

    def __init__(self, bars: dict[str, list[tuple[date, float]]] | None):
        self.bars = bars
        self.calls = []

    def __call__(self, symbols, start):
        self.calls.append((list(symbols), start))
        if self.bars is None:
            return None
        return {s: [(d, c) for d, c in self.bars.get(s, []) if d >= start] for s in symbols}


def broker(tmp_path, closes: Closes, faults=()) -> PaperBroker:
    db = store.open_database(f"sqlite:///{tmp_path / 'trading.db'}")
    paper = PaperBroker(db, lambda value, currency: 2.0 + 0.002 * value, faults=list(faults), fills="close",
                        closes=closes)
    paper.deposit(10_000, "USD", "seed", PLACED)
    return paper


def order(cid="o1", side="BUY", quantity=10, limit=105.0, session=SESSION, close=CLOSE) -> MarketOrder:
    return MarketOrder(cid, "KO.US", side, quantity, "USD", 100.0, limit, session, close)


def test_an_order_waits_for_its_close_and_fills_at_it(tmp_path):
    closes = Closes({"KO.US": [(date(2018, 1, 2), 99.0), (SESSION, 101.5)]})
    paper = broker(tmp_path, closes)
    assert paper.place_market_order(order(), PLACED) is None
    assert paper.open_order_ids() == {"o1"} and paper.executions() == []
    assert paper.settle(CLOSE - timedelta(minutes=1)) == 0 and closes.calls == []  # not due before the close
    assert paper.settle(CLOSE + timedelta(hours=20)) == 1
    [fill] = paper.executions()
    assert (fill.price, fill.quantity, fill.executed_at) == (101.5, 10, CLOSE)  # the session's close, at the close
    assert fill.commission == pytest.approx(2.0 + 0.002 * 1015)
    assert paper.account().cash["USD"] == pytest.approx(10_000 - 1015 - fill.commission)
    assert paper.open_order_ids() == set() and paper.settle(CLOSE + timedelta(days=2)) == 0  # once


@pytest.mark.parametrize(("side", "limit", "close"), [("BUY", 100.0, 100.01), ("SELL", 100.0, 99.99)])
def test_a_close_beyond_the_limit_does_not_fill(tmp_path, side, limit, close):
    paper = broker(tmp_path, Closes({"KO.US": [(SESSION, close)]}))
    if side == "SELL":
        paper.place_market_order(order("b", "BUY", limit=1e9), PLACED - timedelta(days=1))
        paper.settle(CLOSE)
    paper.place_market_order(order("o", side, limit=limit), PLACED)
    assert paper.settle(CLOSE + timedelta(hours=1)) == 0
    assert "o" not in paper.open_order_ids() and "o" not in {e.client_order_id for e in paper.executions()}


def test_a_close_at_the_limit_fills(tmp_path):
    paper = broker(tmp_path, Closes({"KO.US": [(SESSION, 105.0)]}))
    paper.place_market_order(order(limit=105.0), PLACED)
    assert paper.settle(CLOSE) == 1 and paper.executions()[0].price == 105.0


def test_an_unknown_close_keeps_it_open_a_missing_one_expires_it(tmp_path):
    closes = Closes({"KO.US": [(date(2018, 1, 2), 99.0)]})  # the session's bar has not arrived
    paper = broker(tmp_path, closes)
    paper.place_market_order(order(), PLACED)
    assert paper.settle(CLOSE + timedelta(hours=1)) == 0 and paper.open_order_ids() == {"o1"}
    closes.bars = None  # the market data cannot be read: still open, tried again later
    assert paper.settle(CLOSE + timedelta(hours=2)) == 0 and paper.open_order_ids() == {"o1"}
    closes.bars = {"KO.US": [(date(2018, 1, 4), 98.0)]}  # a later bar, but none for its session
    assert paper.settle(CLOSE + timedelta(days=1)) == 0 and paper.open_order_ids() == set()
    assert paper.executions() == []


def test_an_order_whose_close_never_arrives_expires_after_a_week(tmp_path):
    paper = broker(tmp_path, Closes({}))
    paper.place_market_order(order(), PLACED)
    assert paper.settle(CLOSE + timedelta(days=6)) == 0 and paper.open_order_ids() == {"o1"}
    assert paper.settle(CLOSE + timedelta(days=8)) == 0 and paper.open_order_ids() == set()


def test_the_account_is_checked_at_the_close(tmp_path):
    paper = broker(tmp_path, Closes({"KO.US": [(SESSION, 100.0)]}))
    paper.place_market_order(order("rich", quantity=200, limit=1e9), PLACED)  # 20,000 USD: more than held
    paper.place_market_order(order("sell", side="SELL", quantity=1, limit=1.0), PLACED)  # nothing held
    assert paper.settle(CLOSE) == 0 and paper.open_order_ids() == set() and paper.executions() == []


def test_a_working_order_can_be_cancelled(tmp_path):
    paper = broker(tmp_path, Closes({"KO.US": [(SESSION, 100.0)]}))
    paper.place_market_order(order(), PLACED)
    assert paper.cancel("o1") and not paper.cancel("o1")
    assert paper.settle(CLOSE) == 0 and paper.executions() == []


def test_without_a_session_the_order_is_refused(tmp_path):
    paper = broker(tmp_path, Closes({}))
    with pytest.raises(Exception, match="session of KO.US's exchange is unknown"):
        paper.place_market_order(order(session=None, close=None), PLACED)


def test_faults_apply_to_market_on_close_orders(tmp_path):
    paper = broker(tmp_path, Closes({"KO.US": [(SESSION, 100.0)]}), faults=["timeout_after_accept", "partial_fill"])
    with pytest.raises(TimeoutError):
        paper.place_market_order(order("lost"), PLACED)
    assert paper.open_order_ids() == {"lost"}  # accepted although the reply was lost: found by lookup
    paper.place_market_order(order("half"), PLACED)
    assert paper.settle(CLOSE) == 2
    assert {e.client_order_id: e.quantity for e in paper.executions()} == {"lost": 10, "half": 5}


def test_the_commission_is_the_brokers(tmp_path):
    paper = broker(tmp_path, Closes({"KO.US": [(SESSION, 100.0)]}))
    paper.place_market_order(order(quantity=3), PLACED)
    paper.settle(CLOSE)
    assert paper.executions()[0].commission == pytest.approx(2.0 + 0.002 * 300)
    assert orders.commission(300.0, "EUR", "EUR", {}) == pytest.approx(2.6)


# --- the replay's clock ---

@pytest.mark.parametrize(("day", "close_utc", "cycle_utc"), [
    (date(2019, 1, 15), "21:00", "20:30"),   # winter: New York on EST
    (date(2019, 7, 15), "20:00", "19:30"),   # summer: EDT, an hour earlier in UTC
    (date(2019, 11, 29), "18:00", "17:30"),  # the day after Thanksgiving closes at 13:00
    (date(1995, 3, 10), "21:00", "20:30"),   # the 1990s answer whatever today's date
])
def test_the_cycle_runs_inside_the_session_before_its_close(day, close_utc, cycle_utc):
    [session] = sessions("XNYS", day, day)
    assert f"{session.close:%H:%M}" == close_utc
    at = cycle_instant(session.open, session.close, ReplayConfig.minutes_before_close)
    assert f"{at:%H:%M}" == cycle_utc and session.open <= at < session.close


def test_a_short_session_cycles_at_its_open():
    opens = datetime(2020, 1, 2, 14, 30, tzinfo=UTC)
    assert cycle_instant(opens, opens + timedelta(minutes=20), 30) == opens
