"""Benchmark: the portfolio service through gRPC, each figure beside a bare round trip (a health
check on the same server) measured in the same run.

- GetPortfolio: valuation of 500 positions in 5 currencies (with their history, the hash and
  the three market-data reads it makes: universe, quotes, FX);
- TakeSnapshot: the same valuation, stored with its positions and buckets;
- GetPerformance: 10 years of daily snapshots (2,520, 20 positions each) with deposits, all figures.

The market-data service is a scripted one in the same process (500 securities, 5 currencies),
so the figures are the portfolio's own work plus its real gRPC reads.

    .venv/bin/python bench/portfolio.py [--calls 30]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2 as pb
from trader.portfolio.v1 import portfolio_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common.client import Clients  # noqa: E402
from services.common.config import load_common  # noqa: E402
from services.common.server import start_server  # noqa: E402
from services.common.timestamps import to_timestamp  # noqa: E402
from services.portfolio import store  # noqa: E402
from services.portfolio.server import PortfolioServicer  # noqa: E402
from tests.helpers import free_port  # noqa: E402

CURRENCIES = {"EUR": 1.0, "USD": 1.10, "GBP": 0.85, "CHF": 0.95, "JPY": 160.0}
POSITIONS = 500
NOW = datetime(2024, 6, 3, 22, tzinfo=UTC)
METADATA = [("x-trader-as-of", NOW.isoformat())]


class ScriptedMarketData(data_pb2_grpc.MarketDataServicer):
    def __init__(self):
        currencies = sorted(CURRENCIES)
        self.securities = [data_pb2.Security(
            symbol=f"S{i:03d}.X", currency=currencies[i % 5], country=f"Country {i % 12}", sector=f"Sector {i % 9}",
            industry=f"Industry {i % 30}", lot_size=1, active=True, allow_buy=True, allow_sell=True,
            kind=data_pb2.EQUITY, bucket="core") for i in range(POSITIONS)]
        self.prices = {s.symbol: 10.0 + i % 50 for i, s in enumerate(self.securities)}

    def ListSecurities(self, request, context):
        return data_pb2.ListSecuritiesResponse(securities=self.securities)

    def GetQuotes(self, request, context):
        currency = {s.symbol: s.currency for s in self.securities}
        return data_pb2.GetQuotesResponse(quotes=[data_pb2.Quote(symbol=s, price=self.prices[s], currency=currency[s],
                                                                 date="2024-06-03") for s in request.symbols])

    def GetFxRates(self, request, context):
        return data_pb2.GetFxRatesResponse(base_currency="EUR", rates=[
            data_pb2.FxRate(currency=c, rate=r) for c, r in CURRENCIES.items() if c != "EUR"])


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def timed(fn, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def seed_positions(stub, data: ScriptedMarketData) -> None:
    """500 positions with a BUY fill each, and cash in every currency."""
    executed = to_timestamp(NOW - timedelta(days=30))
    fills, positions = [], []
    for i, security in enumerate(data.securities):
        price = data.prices[security.symbol]
        positions.append(pb.BrokerPosition(symbol=security.symbol, quantity=10 + i, average_cost=price,
                                           currency=security.currency))
        fills.append(pb.BrokerFill(ledger_id=i + 1, broker_trade_id=f"B-{i}", client_order_id=f"c{i}",
                                   symbol=security.symbol, side=pb.BUY, quantity=10 + i, price=price,
                                   currency=security.currency, commission=0.0, executed_at=executed))
    stub.ApplyBrokerState(pb.ApplyBrokerStateRequest(
        positions=positions, cash=[pb.BrokerCash(currency=c, amount=1000.0) for c in CURRENCIES], fills=fills,
        ledger_cursor=pb.LedgerCursor(trade_id=POSITIONS)), metadata=METADATA, timeout=120)


def seed_history(db, years: int = 10, held: int = 20) -> None:
    """Daily snapshots over `years` (252 a year) with `held` positions each and a monthly deposit."""
    start = date(2014, 6, 2)
    days = [start + timedelta(days=d) for d in range(int(years * 365.25)) if (start + timedelta(days=d)).weekday() < 5]
    days = days[: years * 252]
    value, deposits, held_rows = 10_000.0, [], []
    with db.transaction() as session:
        for n, day in enumerate(days):
            flow = 1000.0 if n and day.month != days[n - 1].month else 0.0
            value = value * (1 + 0.0003 + 0.01 * ((n * 7919) % 13 - 6) / 6) + flow
            taken = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=22)
            if flow:
                deposits.append(store.CashFlowRow(kind="deposit", amount=flow, currency="EUR", reference=f"m{n}",
                                                  occurred_at=taken - timedelta(hours=1), source="manual",
                                                  amount_base=flow))
            session.add(store.SnapshotRow(date=day, positions_value_base=value * 0.95, cash_base=value * 0.05,
                                          total_value_base=value, base_currency="EUR", taken_at=taken))
            held_rows += [store.SnapshotPositionRow(
                date=day, symbol=f"H{k:02d}", quantity=100, value_base=value * 0.95 / held * (1 + 0.001 * k),
                country=f"Country {k % 5}", industry=f"Industry {k % 7}", bucket="core") for k in range(held)]
        session.flush()  # the snapshots first: their positions refer to them
        session.add_all(held_rows)
        session.add_all(deposits)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the seeded books differ from the seeded cash on purpose: not news
    with tempfile.TemporaryDirectory() as tmp:
        env = {"TRADER_AUTH_DISABLED": "1", "TRADER_VAR_DIR": tmp,
               **{f"TRADER_{n.upper()}_ADDR": f"127.0.0.1:{free_port()}" for n in ("data", "portfolio", "display")}}
        configs = {n: load_common(n, env) for n in ("data", "portfolio")}
        data = ScriptedMarketData()
        clients = Clients(configs["portfolio"])
        db = store.open_database(f"sqlite:///{Path(tmp) / 'portfolio.db'}")
        history_db = store.open_database(f"sqlite:///{Path(tmp) / 'history.db'}")
        servicer = PortfolioServicer(configs["portfolio"], db, clients)
        history = PortfolioServicer(configs["portfolio"], history_db, clients)
        history_address = f"127.0.0.1:{free_port()}"
        servers = [
            start_server(configs["data"], lambda s: data_pb2_grpc.add_MarketDataServicer_to_server(data, s)),
            start_server(configs["portfolio"], lambda s: portfolio_pb2_grpc.add_PortfolioServicer_to_server(
                servicer, s)),
            start_server(load_common("portfolio", {**env, "TRADER_PORTFOLIO_ADDR": history_address}),
                         lambda s: portfolio_pb2_grpc.add_PortfolioServicer_to_server(history, s)),
        ]
        channel = grpc.insecure_channel(configs["portfolio"].listen_address)
        history_channel = grpc.insecure_channel(history_address)
        try:
            stub = portfolio_pb2_grpc.PortfolioStub(channel)
            seed_positions(stub, data)
            seed_history(history_db)
            health = health_pb2_grpc.HealthStub(channel)
            timed(lambda: stub.GetPortfolio(pb.GetPortfolioRequest(), metadata=METADATA), 3)
            bare = timed(lambda: health.Check(health_pb2.HealthCheckRequest()), args.calls * 10)
            valuation = timed(lambda: stub.GetPortfolio(pb.GetPortfolioRequest(), metadata=METADATA), args.calls)
            snapshot = timed(lambda: stub.TakeSnapshot(pb.TakeSnapshotRequest(), metadata=METADATA), args.calls)
            performance_stub = portfolio_pb2_grpc.PortfolioStub(history_channel)
            reply = performance_stub.GetPerformance(pb.GetPerformanceRequest(), metadata=METADATA, timeout=120)
            performance = timed(lambda: performance_stub.GetPerformance(pb.GetPerformanceRequest(), metadata=METADATA,
                                                                        timeout=120), max(3, args.calls // 5))
        finally:
            channel.close()
            history_channel.close()
            clients.close()
            for server in servers:
                server.stop(0)
            db.close()
            history_db.close()
    bare_p50, bare_p99 = summary(bare)
    print("through gRPC on loopback, SQLite, a scripted market-data service in the same process")
    print(f"bare round trip (health):           p50 {bare_p50:8.2f} ms   p99 {bare_p99:8.2f} ms")
    for name, samples in ((f"GetPortfolio ({POSITIONS} pos., 5 cur.)", valuation),
                          (f"TakeSnapshot ({POSITIONS} positions)", snapshot),
                          (f"GetPerformance ({reply.days + 1} days)", performance)):
        p50, p99 = summary(samples)
        print(f"{name:<35} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   {p50 / bare_p50:7.1f}x the bare round trip"
              f" (x{len(samples)})")
    print(f"performance: TWR {reply.time_weighted_return:.4f}, CAGR {reply.cagr:.4f}, Sharpe {reply.sharpe:.2f}, "
          f"{len(reply.country_attribution)} countries attributed")


if __name__ == "__main__":
    main()
