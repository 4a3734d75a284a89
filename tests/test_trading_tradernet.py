"""The Tradernet adapter against a local fake server that speaks its JSON and checks every
signature; and live mode's refusal to start without credentials and confirmation."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.common.config import ConfigError
from services.common.errors import FailedPrecondition, Unavailable
from services.trading import orders, store
from services.trading.adapters.broker import BrokerRejected, MarketOrder
from services.trading.adapters.tradernet import TradernetBroker, TradernetClient, TradernetError
from services.trading.engine import OrderEngine
from tests.test_trading_engine import START, FakeReads, intent

KEY, SECRET = "public-key-1", "secret-key-1"


class FakeTradernet:
    """Positions, cash, open orders and trades; scriptable errors; every request recorded."""

    def __init__(self):
        self.requests: list[tuple[str, dict, dict]] = []
        self.positions = [{"i": "AAPL.US", "q": 10, "bal_price_a": 150.0, "mkt_price": 160.0, "curr": "USD"}]
        self.cash = [{"curr": "USD", "s": 5000.0}, {"curr": "EUR", "s": -12.5}, {"curr": "GBP", "s": 0}]
        self.open_orders: list[dict] = []
        self.trades: list[dict] = []
        self.fail_next: dict | None = None   # the JSON answered to the next call
        self.http_status_next: int | None = None
        self.lose_reply_to_order = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                command = self.path.rsplit("/", 1)[-1]
                headers = {k: self.headers[k] for k in ("X-NtApi-PublicKey", "X-NtApi-Timestamp", "X-NtApi-Sig")}
                fake.requests.append((command, json.loads(body), headers))
                expected = hmac.new(SECRET.encode(), (body + headers["X-NtApi-Timestamp"]).encode(),
                                    hashlib.sha256).hexdigest()
                if headers["X-NtApi-PublicKey"] != KEY or headers["X-NtApi-Sig"] != expected:
                    return self._send(200, {"errMsg": "bad signature", "code": 7})
                if fake.http_status_next:
                    status, fake.http_status_next = fake.http_status_next, None
                    return self._send(status, {"error": "server trouble"})
                if fake.fail_next is not None:
                    answer, fake.fail_next = fake.fail_next, None
                    return self._send(200, answer)
                answer = fake.answer(command, json.loads(body))
                if command == "putTradeOrder" and fake.lose_reply_to_order:
                    self.close_connection = True
                    return  # accepted, but the reply never comes
                self._send(200, answer)

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, command: str, params: dict) -> dict:
        if command == "getPositionJson":
            return {"result": {"ps": {"pos": self.positions, "acc": self.cash}}}
        if command == "putTradeOrder":
            order = {"id": 9000 + len(self.open_orders), "instr_name": params["instr_name"],
                     "buy_sell": params["action_id"], "qty": params["qty"], "price": params["limit_price"],
                     "curr": "USD", "user_order_id": params["user_order_id"]}
            self.open_orders.append(order)
            return {"order_id": order["id"]}
        if command == "getNotifyOrderJson":
            # Tradernet answers a single order as a dict and several as a list
            orders_ = self.open_orders[0] if len(self.open_orders) == 1 else self.open_orders
            return {"result": {"orders": {"order": orders_}}}
        if command == "delTradeOrder":
            self.open_orders = [o for o in self.open_orders if o["id"] != params["order_id"]]
            return {"result": "ok"}
        if command == "getTradesHistory":
            return {"trades": {"trade": self.trades}}
        if command == "getClientCpsHistory":
            return {"cps": [{"id": 501, "type_doc_id": 337, "date": "2024-03-01 10:00:00", "currency": "EUR",
                             "totalMoneyOut": 250.0, "status_c": 3}]}
        if command == "getStockQuotesJson":
            return {"result": {"q": [{"c": t, "ltp": 101.5, "x_curr": "USD"} for t in params["tickers"].split(",")]}}
        return {"errMsg": f"unknown command {command}", "code": 2}

    def fill(self, order: dict, price: float, when: str = "2024-03-04 15:30:00", quantity: int | None = None):
        """Fill `quantity` (all that is left by default); the order stays open until all is."""
        left = order["qty"] - order.get("filled", 0)
        quantity = left if quantity is None else quantity
        order["filled"] = order.get("filled", 0) + quantity
        if quantity == left:
            self.open_orders.remove(order)
        self.trades.append({"id": 77 + len(self.trades), "instr_nm": order["instr_name"], "q": quantity,
                            "price": price, "date": when, "type": 1 if order["buy_sell"] == 1 else 2,
                            "commission": 2.5, "commission_currency": "USD", "order_id": order["id"],
                            "user_order_id": order["user_order_id"]})

    def cancel_rest(self, order: dict):
        """The broker cancels what is left (the day ended, say)."""
        self.open_orders.remove(order)

    def close(self):
        self.server.shutdown()


@pytest.fixture
def fake():
    server = FakeTradernet()
    yield server
    server.close()


def client_for(fake, **kwargs):
    return TradernetClient(fake.url, KEY, SECRET, min_interval_s=0, timeout_s=2, **kwargs)


def test_requests_are_signed_and_compact(fake):
    TradernetBroker(client_for(fake)).account()
    command, params, headers = fake.requests[0]
    assert command == "getPositionJson" and params == {}
    assert headers["X-NtApi-PublicKey"] == KEY and headers["X-NtApi-Timestamp"].isdigit()


def test_account_parsing_keeps_negative_and_zero_cash(fake):
    account = TradernetBroker(client_for(fake)).account()
    assert [(p.symbol, p.quantity, p.average_cost, p.currency) for p in account.positions] == \
        [("AAPL.US", 10, 150.0, "USD")]
    assert account.cash == {"USD": 5000.0, "EUR": -12.5, "GBP": 0.0}


def test_order_fields_and_lookup_by_client_id(fake):
    broker = TradernetBroker(client_for(fake))
    order = MarketOrder("cid-1", "AAPL.US", "BUY", 3, "USD", 100.0, 105.0)
    assert broker.place_market_order(order, START) is None  # accepted; fills later
    _, params, _ = fake.requests[-1]
    assert params == {"instr_name": "AAPL.US", "action_id": 1, "order_type_id": 2, "qty": 3, "limit_price": 105.0,
                      "expiration_id": 1, "user_order_id": int(orders.broker_reference("cid-1"))}
    assert broker.open_order_ids() == {orders.broker_reference("cid-1")}
    broker.place_market_order(MarketOrder("cid-2", "AAPL.US", "SELL", 1, "USD", 100.0, 95.0), START)
    assert fake.requests[-1][1]["action_id"] == 3
    assert len(broker.open_order_ids()) == 2  # the list form parses too
    assert broker.cancel("cid-2") and not broker.cancel("cid-2")
    fake.fill(fake.open_orders[0], 101.0)
    found = broker.find_execution("cid-1")
    assert (found.broker_trade_id, found.quantity, found.price, found.commission) == ("TN-77", 3, 101.0, 2.5)
    assert found.executed_at == datetime(2024, 3, 4, 15, 30, tzinfo=UTC)


def test_broker_refusal_and_errors_are_raised_never_empty(fake):
    broker = TradernetBroker(client_for(fake))
    fake.fail_next = {"errMsg": "Insufficient funds", "code": 12}
    with pytest.raises(BrokerRejected, match="Insufficient funds"):
        broker.place_market_order(MarketOrder("c", "AAPL.US", "BUY", 1, "USD", 1.0, 1.05), START)
    fake.fail_next = {"errMsg": "session expired", "code": 2}
    with pytest.raises(TradernetError, match="session expired"):
        broker.account()
    fake.http_status_next = 500
    with pytest.raises(TradernetError, match="HTTP 500"):
        broker.executions()
    fake.fail_next = {"result": {"ps": {"pos": [{"i": "X", "q": "lots", "bal_price_a": 1}], "acc": []}}}
    with pytest.raises(TradernetError, match="'q'"):
        broker.account()
    with pytest.raises(FailedPrecondition, match="^paper_only"):
        broker.deposit(1, "EUR", "r", START)
    dead = TradernetBroker(TradernetClient("http://127.0.0.1:9", KEY, SECRET, min_interval_s=0, timeout_s=1))
    with pytest.raises(Unavailable, match="connection failed"):  # UNAVAILABLE to callers, never INTERNAL
        dead.account()


def test_calls_are_spaced_by_the_rate_limit():
    clock = [100.0]
    slept = []

    class Recorder:
        def __init__(self):
            self.fake = FakeTradernet()

    recorder = Recorder()
    try:
        client = TradernetClient(recorder.fake.url, KEY, SECRET, min_interval_s=1.5, timeout_s=2,
                                 monotonic=lambda: clock[0], sleep=lambda s: (slept.append(s), clock.__setitem__(
                                     0, clock[0] + s)))
        client.call("getPositionJson", {})
        clock[0] += 0.4
        client.call("getPositionJson", {})
        assert slept == [pytest.approx(1.1)]
    finally:
        recorder.fake.close()


def test_engine_with_tradernet_fills_at_sync_and_resolves_a_lost_reply(fake, tmp_path):
    db = store.open_database(f"sqlite:///{tmp_path / 'live.db'}")
    broker = TradernetBroker(client_for(fake))
    fake.positions = []
    engine = OrderEngine("live", db, broker, FakeReads())
    engine.reconcile()
    row = engine.submit(intent("live-1", "AAPL.US", "BUY", 3), None, START)
    assert row.state == "SUBMITTED" and row.limit_price == pytest.approx(105.0)
    with pytest.raises(FailedPrecondition, match="^pending_order"):
        engine.submit(intent("live-2", "AAPL.US", "BUY", 1), None, START + timedelta(hours=2))
    fake.fill(fake.open_orders[0], 101.0)
    fake.positions = [{"i": "AAPL.US", "q": 3, "bal_price_a": 101.0, "curr": "USD"}]
    assert engine.sync(START) == (1, 1)  # the fill, and a withdrawal of 250 EUR
    assert engine.sync(START) == (0, 0)
    with db.transaction() as session:
        movement = session.scalars(store.select(store.CashMovementRow)).one()
        assert (movement.kind, movement.amount, movement.currency) == ("withdrawal", -250.0, "EUR")
        order = store.find_order(session, "live-1")
        assert (order.state, order.fill_price) == ("FILLED", 101.0)
    assert engine.reconciliation.reconciled

    fake.lose_reply_to_order = True
    later = START + timedelta(days=1)
    with pytest.raises(Unavailable):
        engine.submit(intent("live-3", "KO.US", "BUY", 2), None, later)
    assert not engine.reconciliation.reconciled
    engine.sync(later)  # found open at the broker: submitted, not resent
    with db.transaction() as session:
        assert store.find_order(session, "live-3").state == "SUBMITTED"
    assert sum(1 for c, *_ in fake.requests if c == "putTradeOrder") == 2 and engine.reconciliation.reconciled


def live_engine(fake, tmp_path, usd: float):
    db = store.open_database(f"sqlite:///{tmp_path / 'live.db'}")
    fake.positions, fake.cash = [], [{"curr": "USD", "s": usd}, {"curr": "EUR", "s": 0.0}]
    reads = FakeReads()
    engine = OrderEngine("live", db, TradernetBroker(client_for(fake)), reads)
    engine.reconcile()
    return engine, reads, db


def broker_fills(fake, symbol: str, quantity: int, usd: float):
    """The account as the broker reports it after fills."""
    fake.positions = [p for p in fake.positions if p["i"] != symbol] + (
        [{"i": symbol, "q": quantity, "bal_price_a": 101.0, "curr": "USD"}] if quantity else [])
    fake.cash[0]["s"] = usd


def order_of(db, cid):
    with db.transaction() as session:
        order = store.find_order(session, cid)
        session.expunge(order)
        return order


def test_a_partial_fill_stays_open_and_keeps_its_reservation_until_the_rest_fills(fake, tmp_path):
    """Issue 8 item 6: BUY 10, 4 fill and 6 stay working."""
    engine, reads, db = live_engine(fake, tmp_path, usd=1500.0)
    assert engine.submit(intent("p-1", "AAPL.US", "BUY", 10), None, START).state == "SUBMITTED"  # limit 105
    working = fake.open_orders[0]
    fake.fill(working, 101.0, quantity=4)
    broker_fills(fake, "AAPL.US", 4, 1500.0 - 404.0 - 2.5)
    assert engine.sync(START)[0] == 1
    order = order_of(db, "p-1")
    assert (order.state, order.filled_quantity, order.fill_price) == ("PARTIALLY_FILLED", 4, 101.0)
    assert engine.reconciliation.reconciled and engine.status(START)["open_orders"] == 1
    # 1,093.50 USD at the broker, 6 x 105 = 630 still reserved: 10 KO.US at 63 + fee fit only without it
    later = START + timedelta(hours=2)
    with pytest.raises(FailedPrecondition, match="^cash: needs 633.46 USD .* 463.50 available"):
        engine.submit(intent("p-2", "KO.US", "BUY", 10), None, later)
    assert engine.sync(later) == (0, 0)  # the fill is imported once
    fake.fill(working, 102.0, when="2024-03-04 16:10:00")
    broker_fills(fake, "AAPL.US", 10, 1500.0 - 404.0 - 612.0 - 5.0)
    engine.sync(later)
    order = order_of(db, "p-1")
    assert (order.state, order.filled_quantity, order.commission) == ("FILLED", 10, 5.0)
    assert order.fill_price == pytest.approx(101.6)  # volume-weighted over both fills
    with db.transaction() as session:
        assert [e.state for e in store.order_events(session, order.id)] == [
            "NEW", "SUBMITTED", "PARTIALLY_FILLED", "FILLED"]
        assert [t.quantity for t in store.trades(session, 10)] == [6, 4]
    assert engine.reconciliation.reconciled and engine.status(later)["open_orders"] == 0


def test_a_partial_fill_is_cancelled_only_when_the_broker_cancels_the_rest(fake, tmp_path):
    engine, reads, db = live_engine(fake, tmp_path, usd=1500.0)
    engine.submit(intent("c-1", "AAPL.US", "BUY", 10), None, START)
    working = fake.open_orders[0]
    fake.fill(working, 101.0, quantity=4)
    broker_fills(fake, "AAPL.US", 4, 1093.5)
    engine.sync(START)
    engine.sync(START)
    assert order_of(db, "c-1").state == "PARTIALLY_FILLED"  # still working: no sync closes it
    fake.cancel_rest(working)
    engine.sync(START)
    order = order_of(db, "c-1")
    assert (order.state, order.filled_quantity) == ("CANCELLED", 4)
    assert order.reason == "the broker closed it with 4 of 10 filled: the rest was cancelled"
    later = START + timedelta(hours=2)  # the reservation is released: the same BUY now fits
    assert engine.submit(intent("c-2", "KO.US", "BUY", 10), None, later).state == "SUBMITTED"


def test_cancelling_a_partly_filled_order_keeps_the_filled_part(fake, tmp_path):
    engine, reads, db = live_engine(fake, tmp_path, usd=1500.0)
    engine.submit(intent("x-1", "AAPL.US", "BUY", 10), None, START)
    fake.fill(fake.open_orders[0], 101.0, quantity=4)
    broker_fills(fake, "AAPL.US", 4, 1093.5)
    engine.sync(START)
    original = fake.answer

    def refuse_cancel(command, params):  # code 12: only a trader may cancel it
        if command == "delTradeOrder":
            return {"error": "This order may only be cancelled through traders", "code": 12}
        return original(command, params)

    fake.answer = refuse_cancel
    with pytest.raises(FailedPrecondition, match="^broker_rejected: the broker refused to cancel x-1"):
        engine.cancel(order_of(db, "x-1"), START)
    assert order_of(db, "x-1").state == "PARTIALLY_FILLED"  # still open, still resolvable
    fake.answer = original
    cancelled = engine.cancel(order_of(db, "x-1"), START)
    assert (cancelled.state, cancelled.filled_quantity, cancelled.reason) == (
        "CANCELLED", 4, "cancelled by request with 4 of 10 filled")
    assert fake.open_orders == []


def test_a_foreign_buy_is_refused_by_the_check_when_the_broker_cannot_convert(fake, tmp_path):
    engine, reads, db = live_engine(fake, tmp_path, usd=10.0)
    fake.cash[1]["s"] = 100_000.0  # plenty of EUR, but Tradernet conversions are not built
    with pytest.raises(FailedPrecondition, match="^cash"):
        engine.check(intent("fx-1", "AAPL.US", "BUY", 3), None, START)
    with pytest.raises(FailedPrecondition, match="^cash"):
        engine.submit(intent("fx-1", "AAPL.US", "BUY", 3), None, START)
    assert order_of(db, "fx-1").state == "REJECTED" and not any(c == "putTradeOrder" for c, *_ in fake.requests)


def test_live_mode_refuses_to_start_without_credentials_and_confirmation():
    from services.data.config import load as load_data
    from services.trading.config import LIVE_CONFIRMATION, load

    base = {"TRADER_API_TOKEN": "x" * 20, "TRADER_MODE": "live"}
    with pytest.raises(ConfigError) as caught:
        load(base)
    text = "\n".join(caught.value.problems)
    assert "TRADER_TRADERNET_API_KEY" in text and "TRADER_LIVE_CONFIRM" in text
    with pytest.raises(ConfigError, match="TRADER_LIVE_CONFIRM"):
        load({**base, "TRADER_TRADERNET_API_KEY": "k", "TRADER_TRADERNET_API_SECRET": "s",
              "TRADER_LIVE_CONFIRM": "yes"})
    config = load({**base, "TRADER_TRADERNET_API_KEY": "k", "TRADER_TRADERNET_API_SECRET": "s",
                   "TRADER_LIVE_CONFIRM": LIVE_CONFIRMATION})
    assert config.tradernet.public_key == "k" and config.tradernet.url == "https://freedom24.com"
    with pytest.raises(ConfigError, match="TRADER_DATA_PROVIDER=sample cannot serve"):
        load_data(base)


def test_unreachable_broker_marks_the_books_unreconciled(tmp_path):
    serving = []
    dead = TradernetBroker(TradernetClient("http://127.0.0.1:9", KEY, SECRET, min_interval_s=0, timeout_s=1))
    engine = OrderEngine("live", store.open_database(f"sqlite:///{tmp_path / 'dead.db'}"), dead, FakeReads(),
                         set_serving=serving.append)
    with pytest.raises(Unavailable):
        engine.sync(START)
    assert serving == [False] and engine.reconciliation.issues[0].startswith("the broker could not be reached")
