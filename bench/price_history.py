"""Benchmark: GetPriceHistory for 10 years of daily bars of one symbol.

Target (issue 3): under 20 ms server time. Measures the servicer call itself (server time)
and the same call through gRPC on loopback, beside a bare gRPC round trip (health check)
measured in the same run. Synthetic bars in a temporary SQLite database. Prints figures.

    .venv/bin/python bench/price_history.py [--calls 200]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trader.data.v1 import data_pb2, data_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common import clock  # noqa: E402
from services.common.server import start_server  # noqa: E402
from tests.data_fixtures import FakeProvider, make_servicer, random_walk, security  # noqa: E402


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:6.2f} ms   p99 {p99 * 1000:6.2f} ms"


def timed(fn, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bars = random_walk(2520, start=datetime(2013, 1, 2).date())
        servicer, _, _ = make_servicer(Path(tmp), FakeProvider(bars={"TEST.US": bars}), [security()])
        request = data_pb2.GetPriceHistoryRequest(symbol="TEST.US")

        def direct():
            with clock.use_as_of(datetime(2030, 1, 1, tzinfo=UTC)):
                return servicer.GetPriceHistory(request, None)

        assert len(direct().bars) == 2520
        gc.freeze()  # as services/common/server.py does once a service has started
        server_time = timed(direct, args.calls)
        running = start_server(servicer._config.common,
                               lambda server: data_pb2_grpc.add_MarketDataServicer_to_server(servicer, server))
        with grpc.insecure_channel(servicer._config.common.listen_address) as channel:
            stub = data_pb2_grpc.MarketDataStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            metadata = [("x-trader-as-of", "2030-01-01T00:00:00+00:00")]
            timed(lambda: stub.GetPriceHistory(request, metadata=metadata), 20)  # warm up
            over_grpc = timed(lambda: stub.GetPriceHistory(request, metadata=metadata), args.calls)
            bare = timed(lambda: health.Check(health_pb2.HealthCheckRequest()), args.calls)
        running.stop(0)
    print(f"GetPriceHistory, 2520 daily bars (10 years) of one symbol, {args.calls} calls each")
    print(f"server time (servicer call):   {percentiles(server_time)}   target p50 < 20 ms")
    print(f"through gRPC on loopback:      {percentiles(over_grpc)}")
    print(f"bare gRPC round trip (health): {percentiles(bare)}")
    print(f"gRPC call / bare round trip (p50): {statistics.median(over_grpc) / statistics.median(bare):.1f} x")


if __name__ == "__main__":
    main()
