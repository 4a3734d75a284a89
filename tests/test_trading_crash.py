"""Kill the trading process between the broker's execution and our record of it: after a
restart the order is resolved by lookup, the fill is recorded once, and nothing is resent."""

import grpc
import pytest
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from tests.helpers import TOKEN
from tests.suite import Suite

pytestmark = pytest.mark.e2e
AUTH = [("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", "2018-01-03T17:00:00+00:00")]


def test_crash_between_intent_and_reply_never_duplicates(tmp_path):
    suite = Suite(tmp_path, {"TRADER_PAPER_FAULTS": "crash_after_accept"}).start()
    try:
        trading = trading_pb2_grpc.TradingStub(suite.channel("trading"))
        trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(amount=5000, reference="crash"), metadata=AUTH)
        order = trading_pb2.SubmitOrderRequest(client_order_id="crash-1", symbol="KO.US", side=trading_pb2.BUY,
                                               quantity=10)
        with pytest.raises(grpc.RpcError) as caught:
            trading.SubmitOrder(order, metadata=AUTH, timeout=20)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert suite.processes["trading"].wait(timeout=10) == 17  # died right after the broker executed

        suite.start_one("trading", TRADER_PAPER_FAULTS=None)
        trading = trading_pb2_grpc.TradingStub(suite.channel("trading"))
        found = trading.GetOrder(trading_pb2.GetOrderRequest(client_order_id="crash-1"), metadata=AUTH)
        assert found.state == trading_pb2.FILLED and found.filled_quantity == 10
        assert [e.state for e in found.events] == [trading_pb2.NEW, trading_pb2.SUBMITTED, trading_pb2.FILLED]
        trades = trading.ListTrades(trading_pb2.ListTradesRequest(), metadata=AUTH).trades
        assert [t.client_order_id for t in trades] == ["crash-1"]
        with pytest.raises(grpc.RpcError) as again:
            trading.SubmitOrder(order, metadata=AUTH)
        assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS
        status = trading.GetTradingStatus(trading_pb2.GetTradingStatusRequest(), metadata=AUTH)
        assert status.reconciled and status.trades_today == 1 and status.open_orders == 0
        synced = trading.SyncBroker(trading_pb2.SyncBrokerRequest(), metadata=AUTH)
        assert synced.trades_imported == 0 and [(p.symbol, p.quantity) for p in synced.positions] == [("KO.US", 10)]
    finally:
        suite.terminate()
