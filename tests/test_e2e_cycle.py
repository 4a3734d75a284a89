"""End to end: the six services as separate processes, several replay cycles, one trace; on SQLite
and on PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from sqlalchemy import create_engine, text
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.display.v1 import display_pb2, display_pb2_grpc
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common.config import SERVICES, db_url_variable
from services.common.migrations import load_schema, scripts
from tests.helpers import TOKEN
from tests.suite import Suite

pytestmark = pytest.mark.e2e
AUTH = ("authorization", f"Bearer {TOKEN}")
FIRST_DAY = date(2018, 1, 2)
CLOSE_OUT = datetime(2018, 1, 8, 14, 30, tzinfo=UTC)  # the next session's open after the last cycle


def as_of(day: date) -> tuple[str, str]:
    """The replay's instant: 15:30 in New York (January: 20:30 UTC), inside the session."""
    return ("x-trader-as-of", datetime(day.year, day.month, day.day, 20, 30, tzinfo=UTC).isoformat())


AFTER = [AUTH, ("x-trader-as-of", CLOSE_OUT.isoformat())]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def suite(request, tmp_path_factory):
    """The six services on SQLite files, or each on its own new PostgreSQL database."""
    env = {}
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres")
        env = {db_url_variable(name): server.create_database(f"e2e_{name}") for name in SERVICES}
    suite = Suite(tmp_path_factory.mktemp("e2e"), env).start()
    yield suite
    suite.terminate()


@pytest.fixture(scope="module")
def cycles(suite):
    """Deposit 10,000 EUR, then run one cycle per trading day for the first days of 2018."""
    trading = trading_pb2_grpc.TradingStub(suite.channel("trading"))
    portfolio = portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio"))
    gateway = gateway_pb2_grpc.GatewayStub(suite.channel("gateway"))
    metadata = [AUTH, as_of(FIRST_DAY)]
    trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(amount=10_000, reference="e2e-1"),
                             metadata=metadata)
    portfolio.RecordDeposit(portfolio_pb2.RecordDepositRequest(amount=10_000, reference="e2e-1"), metadata=metadata)
    replies = []
    for offset in range(6):
        day = FIRST_DAY + timedelta(days=offset)
        if day.weekday() < 5:
            replies.append(gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=[AUTH, as_of(day)],
                                                timeout=60))
    return replies


@pytest.fixture(scope="module")
def settled(cycles, suite):
    """The replay's close-out after the last cycle: the last session's market-on-close order is
    filled and the account valued at that close."""
    gateway = gateway_pb2_grpc.GatewayStub(suite.channel("gateway"))
    reply = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(settle_only=True), metadata=AFTER, timeout=60)
    assert reply.ok and [s.name for s in reply.steps] == ["sync_broker", "valuation"]
    return reply


def test_health_is_serving_everywhere(suite):
    for name, (service_name, _) in SERVICES.items():
        stub = health_pb2_grpc.HealthStub(suite.channel(name))
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


def test_reflection_lists_each_service(suite):
    for name, (service_name, _) in SERVICES.items():
        services = ProtoReflectionDescriptorDatabase(suite.channel(name)).get_services()
        assert service_name in services and "grpc.health.v1.Health" in services


@pytest.mark.parametrize("metadata", [[], [("authorization", "Bearer not-the-token-at-all")]])
def test_unauthenticated_calls_are_refused(suite, metadata):
    for name in ("gateway", "trading"):
        stub = (gateway_pb2_grpc.GatewayStub(suite.channel("gateway")).GetSystemStatus if name == "gateway" else
                trading_pb2_grpc.TradingStub(suite.channel("trading")).ListTrades)
        request = gateway_pb2.GetSystemStatusRequest() if name == "gateway" else trading_pb2.ListTradesRequest()
        with pytest.raises(grpc.RpcError) as caught:
            stub(request, metadata=metadata, timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_cycles_succeed_and_trade(cycles, settled, suite):
    assert len(cycles) == 4
    for reply in cycles:
        assert reply.ok, [(s.name, s.detail) for s in reply.steps if s.status != gateway_pb2.OK]
        names = [s.name for s in reply.steps]
        assert names[:3] == ["display_processing", "sync_broker", "sync_prices"] and names[-1] == "display"
        assert all(s.duration_ms >= 0 for s in reply.steps)
    executed = [r.last_trade for r in cycles if r.last_trade]
    assert executed, "no cycle executed a trade"
    trades = trading_pb2_grpc.TradingStub(suite.channel("trading")).ListTrades(
        trading_pb2.ListTradesRequest(), metadata=[AUTH]).trades
    assert len(trades) == len(executed)
    newest = trades[0]
    assert cycles[-1].last_trade == "" or newest.symbol in cycles[-1].last_trade
    assert all(t.quantity > 0 and t.price > 0 and t.client_order_id and t.broker_trade_id for t in trades)


def test_portfolio_value_is_cash_plus_positions(settled, suite):
    metadata = AFTER
    portfolio = portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio")).GetPortfolio(
        portfolio_pb2.GetPortfolioRequest(), metadata=metadata)
    data = data_pb2_grpc.MarketDataStub(suite.channel("data"))
    fx = {r.currency: r for r in data.GetFxRates(data_pb2.GetFxRatesRequest(), metadata=metadata).rates}
    # the ECB's reference rate of the last fixing (Friday 2018-01-05), not the configured 1.10
    assert (fx["USD"].rate, fx["USD"].date, fx["USD"].source) == (1.2045, "2018-01-05", "ECB")
    rates = {currency: rate.rate for currency, rate in fx.items()}
    quotes = {q.symbol: q for q in data.GetQuotes(
        data_pb2.GetQuotesRequest(symbols=[p.symbol for p in portfolio.positions]), metadata=metadata).quotes}
    assert portfolio.positions
    positions_value = sum(p.quantity * quotes[p.symbol].price / rates[quotes[p.symbol].currency]
                          for p in portfolio.positions)
    cash_value = sum(c.amount if c.currency == "EUR" else c.amount / rates[c.currency] for c in portfolio.cash)
    assert portfolio.total_value_base == pytest.approx(cash_value + positions_value, rel=1e-9)
    assert portfolio.total_value_base == pytest.approx(settled.total_value_base, rel=1e-9)
    # The money went somewhere: value is the deposit minus fees, moved only by prices.
    assert 9_000 < portfolio.total_value_base < 11_000


def test_display_shows_the_portfolio_value(cycles, suite):
    state = display_pb2_grpc.DisplayStub(suite.channel("display")).GetDisplayState(
        display_pb2.GetDisplayStateRequest(), metadata=[AUTH])
    assert state.pool == display_pb2.NEXT_ACTIONS
    assert state.text.startswith(f"EUR {cycles[-1].total_value_base:,.0f} | CASH EUR ")
    assert state.text == cycles[-1].display_text


def test_one_trace_covers_all_six_services(cycles, suite):
    trace_id = cycles[-1].trace_id
    assert len(trace_id) == 32 and int(trace_id, 16) != 0
    expected = {f"trader-{name}" for name in SERVICES}
    deadline = time.monotonic() + 20
    while suite.collector.services_in_trace(trace_id) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert suite.collector.services_in_trace(trace_id) == expected
    assert len({trace for _, trace, _ in suite.collector.spans if trace != trace_id}) >= len(cycles) - 1


def test_each_service_keeps_its_books_in_its_configured_database(cycles, settled, suite):
    for name in SERVICES:
        url = suite.env.get(db_url_variable(name)) or f"sqlite:///{suite.workdir / name}.db"
        schema = load_schema(name)
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                assert connection.execute(text(f"SELECT version_num FROM {schema.version_table}")).scalar_one() \
                    == scripts(schema).get_current_head()
                if name == "trading":
                    trades = connection.execute(text("SELECT COUNT(*) FROM trades")).scalar_one()
                    assert trades == len([r for r in cycles if r.last_trade])
        finally:
            engine.dispose()


def test_system_status(cycles, settled, suite):
    status = gateway_pb2_grpc.GatewayStub(suite.channel("gateway")).GetSystemStatus(
        gateway_pb2.GetSystemStatusRequest(), metadata=[AUTH])
    assert status.mode == "replay" and status.cycles_run == len(cycles) + 1 and status.last_cycle_ok
    assert {s.service: s.health for s in status.services} == {n: "SERVING" for n, _ in SERVICES.values()}


def test_the_books_explain_every_change_of_cash(cycles, settled, suite):
    """After the replay cycles: the cash flows of each currency add up to the broker's balance
    (the deposit entered by hand and reported by the broker is one flow), the books agree with
    the broker, positions carry their history, and the performance leaves the deposit out."""
    portfolio = portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio"))
    last = AFTER
    state = portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest(), metadata=last)
    assert not state.cash_differences and not state.position_differences
    flows = portfolio.ListCashFlows(portfolio_pb2.ListCashFlowsRequest(limit=1000), metadata=last)
    by_currency: dict[str, float] = {}
    for total in flows.totals:
        by_currency[total.currency] = by_currency.get(total.currency, 0.0) + total.amount
    assert by_currency == pytest.approx({c.currency: c.amount for c in state.cash}, abs=1e-6)
    deposits = [f for f in flows.cash_flows if f.kind == "deposit"]
    assert [(d.reference, d.source) for d in deposits] == [("e2e-1", "manual+broker")]
    assert {f.kind for f in flows.cash_flows} >= {"deposit", "trade_buy", "trading_fee", "fx_conversion"}
    assert all(p.HasField("first_bought_at") and p.book_quantity == p.quantity for p in state.positions)
    performance = portfolio.GetPerformance(portfolio_pb2.GetPerformanceRequest(), metadata=last)
    assert performance.days == len(cycles) and performance.HasField("time_weighted_return")  # + the close-out
    assert performance.start_value_base == pytest.approx(10_000, rel=0.01)  # the deposit is the start, not a gain
    assert abs(performance.time_weighted_return) < 0.05


def test_sigterm_stops_everything_quickly(cycles, suite):
    results = suite.terminate()
    for name, (code, seconds) in results.items():
        assert code == 0, f"{name} exited with {code}:\n{suite.log(name)[-2000:]}"
        assert seconds < 10, f"{name} took {seconds:.1f} s"
    assert '"msg": "stopped"' in suite.log("trading")

