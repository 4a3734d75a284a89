"""End to end (six processes): the replay's clock puts cycles inside the New York session, so a
SELL passes trading's market-hours rule there and is refused when the market is closed; the
strategy sees the previous close only; the paper broker fills at the session's close
(market-on-close), booked by the next sync, and a limit beyond the close does not fill."""

from __future__ import annotations

from datetime import UTC, date, datetime

import grpc
import pytest
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from gateway.config import ReplayConfig
from gateway.replay import schedule
from tests.helpers import TOKEN
from tests.suite import Suite

pytestmark = pytest.mark.e2e
AUTH = ("authorization", f"Bearer {TOKEN}")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    suite = Suite(tmp_path_factory.mktemp("session")).start()
    yield suite
    suite.terminate()


def at(moment: datetime) -> list[tuple[str, str]]:
    return [AUTH, ("x-trader-as-of", moment.isoformat())]


def cycle_instants(suite, start: date, end: date) -> dict[date, datetime]:
    """The replay's own cycle instants (gateway.replay.schedule over the data service)."""
    config = ReplayConfig(autostart=False, start=start, end=end, cycles_per_second=0, initial_deposit=0,
                          monthly_deposit=0, max_cycles=0)

    class Data:  # schedule() calls services.data.ListSessions with the token
        def __init__(self, stub):
            self._stub = stub

        def ListSessions(self, request):
            return self._stub.ListSessions(request, metadata=[AUTH])

    class Services:
        data = Data(data_pb2_grpc.MarketDataStub(suite.channel("data")))

    return {d.day: d.at for d in schedule(Services(), config, start).days}


def close_of(suite, symbol: str, day: date) -> float:
    data = data_pb2_grpc.MarketDataStub(suite.channel("data"))
    bars = data.GetPriceHistory(data_pb2.GetPriceHistoryRequest(symbol=symbol, start=day.isoformat(),
                                                                end=day.isoformat()), metadata=[AUTH]).bars
    return bars[0].close


def test_sell_in_the_session_fill_at_the_close_limits_respected(suite):
    trading = trading_pb2_grpc.TradingStub(suite.channel("trading"))
    data = data_pb2_grpc.MarketDataStub(suite.channel("data"))
    instants = cycle_instants(suite, date(2018, 1, 2), date(2018, 5, 2))
    buy_day, next_day, sell_day = date(2018, 1, 2), date(2018, 1, 3), date(2018, 5, 1)
    assert instants[buy_day] == datetime(2018, 1, 2, 20, 30, tzinfo=UTC)       # 15:30 in New York (EST)
    assert instants[sell_day] == datetime(2018, 5, 1, 19, 30, tzinfo=UTC)      # 15:30 in New York (EDT)

    # At the cycle's instant the strategy sees the previous close only.
    quote = data.GetQuotes(data_pb2.GetQuotesRequest(symbols=["KO.US"]), metadata=at(instants[buy_day])).quotes[0]
    assert quote.date == "2017-12-29"

    trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(amount=5000, currency="USD", reference="s-1"),
                             metadata=at(instants[buy_day]))
    buy = trading.SubmitOrder(trading_pb2.SubmitOrderRequest(client_order_id="s-buy", symbol="KO.US",
                                                             side=trading_pb2.BUY, quantity=10),
                              metadata=at(instants[buy_day]))
    assert buy.state == trading_pb2.SUBMITTED and buy.fill_price == 0  # working until the close
    # The next cycle's sync books the fill: at the session's close, dated at the close.
    synced = trading.SyncBroker(trading_pb2.SyncBrokerRequest(), metadata=at(instants[next_day]))
    assert synced.trades_imported == 1 and [(p.symbol, p.quantity) for p in synced.positions] == [("KO.US", 10)]
    filled = trading.GetOrder(trading_pb2.GetOrderRequest(client_order_id="s-buy"), metadata=at(instants[next_day]))
    assert filled.state == trading_pb2.FILLED and filled.fill_price == close_of(suite, "KO.US", buy_day)
    [trade] = trading.ListTrades(trading_pb2.ListTradesRequest(), metadata=at(instants[next_day])).trades
    assert trade.executed_at.ToDatetime(tzinfo=UTC) == datetime(2018, 1, 2, 21, 0, tzinfo=UTC)

    # A limit below that session's close (within the price band of the quote) does not fill.
    pep_close, pep_quote = close_of(suite, "PEP.US", next_day), close_of(suite, "PEP.US", buy_day)
    low_limit = round(pep_quote * 0.96, 2)
    assert low_limit < pep_close  # the day's data makes this a limit beyond the close
    limited = trading.SubmitOrder(trading_pb2.SubmitOrderRequest(
        client_order_id="s-limit", symbol="PEP.US", side=trading_pb2.BUY, quantity=5, limit_price=low_limit),
        metadata=at(instants[next_day]))
    assert limited.state == trading_pb2.SUBMITTED
    trading.SyncBroker(trading_pb2.SyncBrokerRequest(), metadata=at(instants[date(2018, 1, 4)]))
    expired = trading.GetOrder(trading_pb2.GetOrderRequest(client_order_id="s-limit"),
                               metadata=at(instants[date(2018, 1, 4)]))
    assert expired.state == trading_pb2.CANCELLED and expired.filled_quantity == 0
    assert expired.reason.endswith(f"expired: the close {pep_close:g} is beyond the limit {low_limit:g}")

    # A SELL when New York is closed is refused by the market-hours rule...
    sell = trading_pb2.SubmitOrderRequest(client_order_id="s-sell-closed", symbol="KO.US", side=trading_pb2.SELL,
                                          quantity=4)
    with pytest.raises(grpc.RpcError) as closed:
        trading.SubmitOrder(sell, metadata=at(datetime(2018, 5, 1, 21, 30, tzinfo=UTC)))  # after the close
    assert closed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert closed.value.details().startswith("market_closed")
    # ... and passes at the replay's cycle instant (past the 90-day minimum hold), filling at the close.
    sell.client_order_id = "s-sell"
    placed = trading.SubmitOrder(sell, metadata=at(instants[sell_day]))
    assert placed.state == trading_pb2.SUBMITTED
    synced = trading.SyncBroker(trading_pb2.SyncBrokerRequest(), metadata=at(instants[date(2018, 5, 2)]))
    assert [(p.symbol, p.quantity) for p in synced.positions] == [("KO.US", 6)]
    sold = trading.GetOrder(trading_pb2.GetOrderRequest(client_order_id="s-sell"),
                            metadata=at(instants[date(2018, 5, 2)]))
    assert sold.state == trading_pb2.FILLED and sold.fill_price == close_of(suite, "KO.US", sell_day)
