"""Issue 9's examples over gRPC: no INTERNAL for what a caller or a peer did."""

from __future__ import annotations

import contextlib

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.display.v1 import display_pb2_grpc
from trader.planner.v1 import planner_pb2, planner_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common import clock
from tests.helpers import TOKEN

pytestmark = pytest.mark.e2e
AUTH = ("authorization", f"Bearer {TOKEN}")
AS_OF = ("x-trader-as-of", "2018-01-02T22:00:00+00:00")


@pytest.fixture(scope="module")
def stubs(running_suite):
    return {
        "data": data_pb2_grpc.MarketDataStub(running_suite.channel("data")),
        "portfolio": portfolio_pb2_grpc.PortfolioStub(running_suite.channel("portfolio")),
        "planner": planner_pb2_grpc.PlannerStub(running_suite.channel("planner")),
        "trading": trading_pb2_grpc.TradingStub(running_suite.channel("trading")),
        "display": display_pb2_grpc.DisplayStub(running_suite.channel("display")),
    }


def refusal(call, request, metadata=(AUTH, AS_OF)) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=list(metadata), timeout=60)
    return caught.value


@pytest.mark.parametrize("as_of", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999-23:59",
                                   "0001-01-01T00:00:00Z"])
@pytest.mark.parametrize(("service", "method", "request_"), [
    ("trading", "GetTradingStatus", trading_pb2.GetTradingStatusRequest()),
    ("data", "GetPriceHistory", data_pb2.GetPriceHistoryRequest(symbol="AAPL.US")),
    ("data", "GetQuotes", data_pb2.GetQuotesRequest()),
    ("data", "GetMetrics", data_pb2.GetMetricsRequest()),
    ("data", "SyncPrices", data_pb2.SyncPricesRequest()),
    ("data", "GetMarketRegime", data_pb2.GetMarketRegimeRequest()),
    ("planner", "GetRecommendations", planner_pb2.GetRecommendationsRequest()),
])
def test_an_out_of_range_as_of_is_invalid_argument_with_the_range(stubs, service, method, request_, as_of):
    error = refusal(getattr(stubs[service], method), request_, [AUTH, ("x-trader-as-of", as_of)])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith("x-trader-as-of: ") and clock.SUPPORTED_RANGE in error.details()


@pytest.mark.parametrize("field", ["as_of"])
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_an_out_of_range_instant_in_a_request_names_its_field(stubs, field, value):
    error = refusal(stubs["data"].GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange="XNYS", as_of=value))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(f"{field}: ")


@pytest.mark.parametrize(("stamp", "detail"), [
    (Timestamp(seconds=1514930400, nanos=-1), "nanos"),
    (Timestamp(seconds=253402300800), "seconds"),        # 10000-01-01
    (Timestamp(seconds=-62135596800), "outside the supported range"),  # 0001-01-01
])
def test_an_invalid_timestamp_names_the_field_and_changes_nothing(stubs, stamp, detail):
    before = stubs["portfolio"].GetPortfolio(portfolio_pb2.GetPortfolioRequest(), metadata=[AUTH, AS_OF])
    error = refusal(stubs["portfolio"].ApplyBrokerState, portfolio_pb2.ApplyBrokerStateRequest(synced_at=stamp))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("synced_at: ") and detail in error.details()
    assert stubs["portfolio"].GetPortfolio(portfolio_pb2.GetPortfolioRequest(), metadata=[AUTH, AS_OF]) == before


@contextlib.contextmanager
def broker_state(stubs, request: portfolio_pb2.ApplyBrokerStateRequest):
    """The portfolio holds `request`'s state for the block, then the broker's again."""
    stubs["portfolio"].ApplyBrokerState(request, metadata=[AUTH, AS_OF])
    try:
        yield
    finally:
        broker = stubs["trading"].SyncBroker(trading_pb2.SyncBrokerRequest(), metadata=[AUTH, AS_OF])
        stubs["portfolio"].ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(
            positions=[portfolio_pb2.BrokerPosition(symbol=p.symbol, quantity=p.quantity, average_cost=p.average_cost,
                                                    currency=p.currency) for p in broker.positions],
            cash=[portfolio_pb2.BrokerCash(currency=c.currency, amount=c.amount) for c in broker.cash],
            synced_at=broker.synced_at), metadata=[AUTH, AS_OF])


def test_a_peers_refusal_for_money_without_a_rate_is_passed_on(stubs):
    chf = portfolio_pb2.ApplyBrokerStateRequest(cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=1000),
                                                      portfolio_pb2.BrokerCash(currency="CHF", amount=1)])
    with broker_state(stubs, chf):  # (the display is a leaf: it is handed the valuation, it asks no peer)
        for call, request in ((stubs["planner"].GetRecommendations, planner_pb2.GetRecommendationsRequest()),
                              (stubs["portfolio"].GetPortfolio, portfolio_pb2.GetPortfolioRequest())):
            error = refusal(call, request)
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
            assert error.details().startswith("fx_rate_missing: ") and "CHF" in error.details()


def test_a_position_in_an_unknown_symbol_is_not_found_through_the_peer(stubs):
    unknown = portfolio_pb2.ApplyBrokerStateRequest(positions=[portfolio_pb2.BrokerPosition(
        symbol="NOPE.US", quantity=1, average_cost=1, currency="USD")])
    with broker_state(stubs, unknown):
        error = refusal(stubs["portfolio"].GetPortfolio, portfolio_pb2.GetPortfolioRequest())
        assert error.code() == grpc.StatusCode.NOT_FOUND and "NOPE.US" in error.details()


@pytest.mark.parametrize("symbol", ["\N{GRINNING FACE}" * 2500, "A" * 100_000])
def test_a_long_echoed_argument_keeps_its_status(stubs, symbol):
    error = refusal(stubs["data"].GetSecurity, data_pb2.GetSecurityRequest(symbol=symbol))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details().startswith("unknown security '" + symbol[:10]) and "more characters cut" in error.details()
    # and through a peer: trading asks the data service for the security
    error = refusal(stubs["trading"].CheckOrder, trading_pb2.SubmitOrderRequest(
        client_order_id="long", symbol=symbol, side=trading_pb2.BUY, quantity=1))
    assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), error.details()


@pytest.mark.parametrize(("request_", "field"), [
    (portfolio_pb2.ApplyBrokerStateRequest(cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=1e308)]),
     "cash[0].amount"),
    (portfolio_pb2.ApplyBrokerStateRequest(positions=[portfolio_pb2.BrokerPosition(
        symbol="AAPL.US", quantity=2**63 - 1, average_cost=1, currency="USD")]), "positions[0].quantity"),
    (portfolio_pb2.ApplyBrokerStateRequest(positions=[portfolio_pb2.BrokerPosition(
        symbol="AAPL.US", quantity=1, average_cost=1e308, currency="USD")]), "positions[0].average_cost"),
])
def test_broker_state_beyond_any_account_is_refused(stubs, request_, field):
    """Found by fuzzing: 1e308 EUR of cash was accepted and the planner failed with INTERNAL."""
    error = refusal(stubs["portfolio"].ApplyBrokerState, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(f"{field}: ")
