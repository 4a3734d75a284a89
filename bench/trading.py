"""Benchmark: CheckOrder and SubmitOrder latency through gRPC against the paper broker.

Starts the six services as processes (as tests/suite.py does), relaxes the frequency and
cooldown settings so orders are not refused by the caps, then times each call (p50/p99)
beside a bare gRPC round trip (a health check on the same server) measured in the same run.
Each order runs every check, including its reads from the market-data and portfolio services.

    .venv/bin/python bench/trading.py [--checks 300] [--orders 80]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import TOKEN  # noqa: E402
from tests.suite import Suite  # noqa: E402

METADATA = [("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", "2019-06-03T18:00:00+00:00")]


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def timed(fn, count: int, after=lambda i, reply: None) -> list[float]:
    """`fn(i)` timed `count` times; `after(i, its reply)` runs between them, untimed."""
    samples = []
    for i in range(count):
        started = time.perf_counter()
        reply = fn(i)
        samples.append(time.perf_counter() - started)
        after(i, reply)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--orders", type=int, default=80)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        suite = Suite(Path(tmp)).start()
        try:
            channel = suite.channel("trading")
            trading = trading_pb2_grpc.TradingStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            trading.UpdateSettings(trading_pb2.UpdateSettingsRequest(
                min_minutes_between_trades=0, max_trades_per_day=100, max_trades_per_week=500,
                buy_cooldown_days=0), metadata=METADATA)
            trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(amount=10_000_000, reference="bench"),
                                     metadata=METADATA)

            def order(i, prefix):
                return trading_pb2.SubmitOrderRequest(client_order_id=f"{prefix}-{i}", symbol="KO.US",
                                                      side=trading_pb2.BUY, quantity=1)

            timed(lambda i: trading.CheckOrder(order(i, "warm"), metadata=METADATA), 20)
            bare = timed(lambda i: health.Check(health_pb2.HealthCheckRequest()), args.checks)
            checks = timed(lambda i: trading.CheckOrder(order(i, "check"), metadata=METADATA), args.checks)
            # An order is held for the session's close; a second BUY of the symbol while it is open
            # is refused (pending_order), so each one is cancelled before the next (untimed).
            submits = timed(lambda i: trading.SubmitOrder(order(i, "submit"), metadata=METADATA), args.orders,
                            after=lambda i, placed: trading.CancelOrder(trading_pb2.GetOrderRequest(
                                client_order_id=placed.client_order_id), metadata=METADATA))
        finally:
            suite.terminate()
    bare_p50, bare_p99 = summary(bare)
    print("through gRPC on loopback, paper broker, real market-data and portfolio services")
    print(f"bare round trip (health):   p50 {bare_p50:7.2f} ms   p99 {bare_p99:7.2f} ms")
    for name, samples in (("CheckOrder", checks), ("SubmitOrder", submits)):
        p50, p99 = summary(samples)
        print(f"{name:<12} x{len(samples):<4}      p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
              f"{p50 / bare_p50:5.1f}x / {p99 / bare_p99:5.1f}x the bare round trip")


if __name__ == "__main__":
    main()
