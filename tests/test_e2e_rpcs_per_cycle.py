"""The number of RPCs a cycle makes does not grow with the number of securities (issue 11 item 7):
the same three replay days with 20 securities and with 3 make the same calls, counted from the
cycle's trace (one server span per RPC, in every service). The one exception is bounded by the
exchanges, not the securities: the planner asks GetMarketStatus once per exchange whose state
decides its plan (those of the holdings: a SELL needs its market open), trading once more."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import pytest
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from tests.helpers import TOKEN
from tests.suite import Suite

pytestmark = pytest.mark.e2e
AUTH = ("authorization", f"Bearer {TOKEN}")
DAYS = [date(2018, 1, 2), date(2018, 1, 3), date(2018, 1, 4)]
FEW = ("JNJ.US", "KO.US", "PEP.US")
EXCHANGES = 2  # XNYS and XNAS, in both universes
PER_EXCHANGE = "/trader.data.v1.MarketData/GetMarketStatus"


def at(day: date) -> list[tuple[str, str]]:
    return [AUTH, ("x-trader-as-of", datetime(day.year, day.month, day.day, 20, 30, tzinfo=UTC).isoformat())]


def server_calls(suite: Suite, trace_id: str) -> Counter:
    """method -> how often a service answered it in the trace (its server spans)."""
    return Counter(name for service, trace, name in suite.collector.spans
                   if trace == trace_id and name.startswith(f"/trader.{service.removeprefix('trader-')}.v1."))


def replay(suite: Suite, keep: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """Narrow the universe to `keep`, deposit, run the days; (trace id, last trade) per cycle."""
    data = data_pb2_grpc.MarketDataStub(suite.channel("data"))
    if keep:
        for security in data.ListSecurities(data_pb2.ListSecuritiesRequest(), metadata=[AUTH]).securities:
            if security.symbol not in keep:
                data.DeactivateSecurity(data_pb2.DeactivateSecurityRequest(symbol=security.symbol), metadata=[AUTH])
    trading_pb2_grpc.TradingStub(suite.channel("trading")).FundPaperAccount(
        trading_pb2.FundPaperAccountRequest(amount=10_000, reference="rpcs"), metadata=at(DAYS[0]))
    portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio")).RecordDeposit(
        portfolio_pb2.RecordDepositRequest(amount=10_000, reference="rpcs"), metadata=at(DAYS[0]))
    gateway = gateway_pb2_grpc.GatewayStub(suite.channel("gateway"))
    cycles = []
    for day in DAYS:
        reply = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=at(day), timeout=120)
        assert reply.ok, [(s.name, s.detail) for s in reply.steps if s.status != gateway_pb2.OK]
        cycles.append((reply.trace_id, reply.last_trade))
    return cycles


@pytest.fixture(scope="module")
def suites(tmp_path_factory):
    started = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for suite in pool.map(lambda name: Suite(tmp_path_factory.mktemp(name)).start(), ("all", "few")):
            started.append(suite)
    yield started
    for suite in started:
        suite.terminate()


def test_rpcs_per_cycle_do_not_grow_with_the_universe(suites):
    every, few = suites
    with ThreadPoolExecutor(max_workers=2) as pool:
        wide, narrow = pool.map(replay, (every, few), (None, FEW))
    assert all(trade.startswith("BUY ") for _, trade in wide + narrow)  # the same kind of cycle each day
    time.sleep(1.0)  # the last spans reach the collector (batched every 100 ms)
    counts = []
    for (wide_trace, _), (narrow_trace, _) in zip(wide, narrow, strict=True):
        calls = server_calls(every, wide_trace), server_calls(few, narrow_trace)
        assert all(1 <= c.pop(PER_EXCHANGE, 0) <= EXCHANGES + 1 for c in calls), calls
        assert calls[0] == calls[1], (calls[0] - calls[1], calls[1] - calls[0])
        # the planner plans on the valuation the cycle handed forward (it matched its hash)
        assert "/trader.portfolio.v1.Portfolio/GetPortfolio" not in calls[0], calls[0]
        counts.append(sum(calls[0].values()))
    assert all(0 < count < 60 for count in counts), counts
