"""End to end: a plan's SELL step goes through the gateway's cycle and every trading check and
is executed when the cycle runs inside the trading session (issue 14 item 8), and is not
planned after the close. The six services as processes, on the bundled history."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.planner.v1 import planner_pb2, planner_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from tests.helpers import TOKEN
from tests.suite import Suite

pytestmark = pytest.mark.e2e
AUTH = ("authorization", f"Bearer {TOKEN}")
BUYING_DAYS = [date(2018, 1, 2), date(2018, 1, 3), date(2018, 1, 4)]
CLOSE_OF_DAY = date(2018, 8, 1)     # more than 180 days after the last BUY
SELLING_DAY = date(2018, 8, 2)


def at(day: date, hour: int = 22) -> list[tuple[str, str]]:
    """22:00 UTC is after New York's close; 15:00 UTC is 11:00 there, inside the session."""
    return [AUTH, ("x-trader-as-of", datetime.combine(day, time(hour), UTC).isoformat())]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    suite = Suite(tmp_path_factory.mktemp("sell")).start()
    yield suite
    suite.terminate()


def test_a_sell_step_is_executed_inside_the_session(suite):
    trading = trading_pb2_grpc.TradingStub(suite.channel("trading"))
    portfolio = portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio"))
    gateway = gateway_pb2_grpc.GatewayStub(suite.channel("gateway"))
    data = data_pb2_grpc.MarketDataStub(suite.channel("data"))
    planner = planner_pb2_grpc.PlannerStub(suite.channel("planner"))
    trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(amount=20_000, reference="sell-1"),
                             metadata=at(BUYING_DAYS[0]))
    portfolio.RecordDeposit(portfolio_pb2.RecordDepositRequest(amount=20_000, reference="sell-1"),
                            metadata=at(BUYING_DAYS[0]))
    for day in BUYING_DAYS:
        reply = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=at(day), timeout=120)
        assert reply.ok, [(s.name, s.detail) for s in reply.steps if s.status != gateway_pb2.OK]
    held = portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest(), metadata=at(CLOSE_OF_DAY)).positions
    largest = max(held, key=lambda p: p.market_value_base)
    security = data.GetSecurity(data_pb2.GetSecurityRequest(symbol=largest.symbol), metadata=at(CLOSE_OF_DAY))
    security.max_portfolio_target = 1.0  # far below its weight: it must be sold down
    data.UpsertSecurity(data_pb2.UpsertSecurityRequest(security=security), metadata=at(CLOSE_OF_DAY))
    after_close = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=at(CLOSE_OF_DAY), timeout=120)
    assert after_close.ok and "SELL" not in after_close.last_trade  # the market is closed: no SELL is planned
    plan = planner.GetRecommendations(planner_pb2.GetRecommendationsRequest(), metadata=at(SELLING_DAY, 15))
    first = plan.steps[0]
    assert (planner_pb2.Side.Name(first.side), first.symbol, first.category) == ("SELL", largest.symbol, "over_cap")
    reply = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=at(SELLING_DAY, 15), timeout=120)
    assert reply.ok, [(s.name, s.detail) for s in reply.steps if s.status != gateway_pb2.OK]
    assert reply.last_trade.startswith(f"SELL {first.quantity} {largest.symbol}")
    # market-on-close: the order works until the close and is booked by the first sync after it
    settled = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(settle_only=True), metadata=at(SELLING_DAY),
                                   timeout=120)
    assert settled.ok, [(s.name, s.detail) for s in settled.steps if s.status != gateway_pb2.OK]
    trades = trading.ListTrades(trading_pb2.ListTradesRequest(), metadata=[AUTH]).trades
    sells = [t for t in trades if t.side == trading_pb2.SELL]
    assert len(sells) == 1 and sells[0].symbol == largest.symbol and sells[0].quantity == first.quantity
    assert sells[0].executed_at.ToDatetime().isoformat() == f"{SELLING_DAY}T20:00:00"  # New York's close, UTC
    after = {p.symbol: p for p in portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest(),
                                                         metadata=at(SELLING_DAY)).positions}
    assert after[largest.symbol].quantity == largest.quantity - first.quantity
    assert after[largest.symbol].HasField("last_sold_at")
