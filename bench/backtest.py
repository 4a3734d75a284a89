"""Benchmark: `trader backtest` over the bundled history through all six services (issue 11), beside
a planner-only in-process loop over the same days, measured in the same run. Prints figures;
asserts nothing.

1. The full system: the same code as `trader backtest` (gateway/backtest.py), 2005-01-03 to
   2022-12-28 by default: total time, cycles per second, the time of each cycle step (from the
   gateway's record of every cycle) and the strategy's result.
2. RPCs per cycle: a short traced backtest (the first --traced sessions) exports every span to
   an OTLP collector in this process; each RPC is one server span in the cycle's trace.
3. The baseline: the planner's core in this process, no services, no storage: per session, the
   metrics of each security from its history up to the previous close (services.data.indicators)
   and the optimiser (services.planner.optimizer.optimize) on the last 365 closes, every day.

    .venv/bin/python bench/backtest.py [--start 2005-01-03] [--end 2022-12-28] [--traced 30]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent import futures
from datetime import date
from pathlib import Path

import grpc
import numpy as np
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.backtest import BacktestSettings, run_backtest  # noqa: E402
from services.common.shutdown import StopRequest  # noqa: E402
from services.data import indicators  # noqa: E402
from services.data.adapters.sample_history import load_sample_history  # noqa: E402
from services.planner import defaults  # noqa: E402
from services.planner.optimizer import OptimizerInput, SecurityInput, optimize  # noqa: E402
from services.planner.optimizer.bounds import BoundInput  # noqa: E402


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP/gRPC receiver: (service.name, trace id, span name) of every span."""

    def __init__(self):
        self.spans: list[tuple[str, str, str]] = []

    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope in resource_spans.scope_spans:
                self.spans.extend((service, span.trace_id.hex(), span.name) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def full_system(settings: BacktestSettings, env: dict[str, str], state: Path):
    stop = StopRequest()
    stop.install()
    done = {"n": 0}

    def progress(record, count, total):
        done["n"] = count
        if count % 250 == 0 or count == total:
            print(f"  {record.day}  {count}/{total} sessions", flush=True)

    started = time.monotonic()
    run = run_backtest(settings, stop, env, progress, say=lambda _: None, keep_state=state)
    return run, time.monotonic() - started


def step_times(gateway_db: Path) -> dict[str, list[float]]:
    steps: dict[str, list[float]] = {}
    with sqlite3.connect(gateway_db) as db:
        for (recorded,) in db.execute("SELECT steps FROM cycle_runs ORDER BY id"):
            for step in json.loads(recorded):
                steps.setdefault(step["name"], []).append(step["duration_ms"])
    return steps


def traced(settings: BacktestSettings, sessions: int) -> list[Counter]:
    """RPCs (server spans) per cycle of a short traced backtest."""
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
           "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    traces: list[str] = []
    stop = StopRequest()
    try:
        days = sorted(load_sample_history().bars["SP500.IDX"], key=lambda b: b.date)
        end = next(b.date for b in days if b.date >= settings.start)
        index = [b.date for b in days].index(end)
        short = BacktestSettings(settings.start, days[min(index + sessions - 1, len(days) - 1)].date,
                                 settings.initial_deposit, settings.monthly_deposit, settings.base_currency)
        run_backtest(short, stop, env, lambda record, *_: traces.append(record.trace_id), say=lambda _: None)
        time.sleep(1.0)
    finally:
        server.stop(0)
    return [Counter(name for service, trace, name in collector.spans
                    if trace == trace_id and name.startswith(f"/trader.{service.removeprefix('trader-')}.v1."))
            for trace_id in traces]


def planner_only(first: date, last: date, monthly: float, initial: float) -> tuple[int, float]:
    """The planner's core per session in this process: metrics and the optimiser, every day."""
    sample = load_sample_history()
    symbols = [s.symbol for s in sample.securities if s.kind == "EQUITY"]
    history = {}
    for symbol in symbols:
        bars = sample.bars[symbol]
        history[symbol] = ([b.date for b in bars], np.fromiter((b.close for b in bars), float, len(bars)),
                           np.fromiter((b.date.year * 12 + b.date.month for b in bars), np.int64, len(bars)))
    sessions = [b.date for b in sample.bars["SP500.IDX"] if first <= b.date <= last]
    value = initial
    started = time.monotonic()
    for count, day in enumerate(sessions):
        if count and sessions[count - 1].month != day.month:
            value += monthly
        securities = []
        for symbol in symbols:
            days, closes, months = history[symbol]
            seen = bisect.bisect_left(days, day)  # the bars up to the previous close
            metrics = indicators.compute(closes[:seen], None, None, months[:seen])
            window = [(d.isoformat(), float(c)) for d, c in zip(days[max(0, seen - defaults.LOOKBACK_BARS):seen],
                                                               closes[max(0, seen - defaults.LOOKBACK_BARS):seen],
                                                               strict=True)]
            securities.append(SecurityInput(symbol, window, metrics.get("CAGR_5Y", metrics.get("CAGR_10Y")),
                                            bounds=BoundInput(price_base=float(closes[seen - 1]) if seen else 1.0)))
        optimize(OptimizerInput(securities, value, max(500.0, 0.02 * value)))
    return len(sessions), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2005-01-03")
    parser.add_argument("--end", default="2022-12-28")
    parser.add_argument("--traced", type=int, default=30, help="sessions of the traced run counting RPCs")
    args = parser.parse_args()
    settings = BacktestSettings(date.fromisoformat(args.start), date.fromisoformat(args.end), 10_000.0, 1_000.0)

    print(f"RPCs per cycle: a traced backtest of the first {args.traced} sessions", flush=True)
    counts = traced(settings, args.traced)
    totals = [sum(c.values()) for c in counts]
    print(f"  {len(totals)} cycles: min {min(totals)}, median {statistics.median(totals):.0f}, max {max(totals)} "
          "RPCs (server spans, the cycle's RunSyncCycle included)")
    busiest = counts[totals.index(max(totals))]
    for method, times in sorted(busiest.items()):
        print(f"    {times} x {method}")

    print(f"full system: {settings.start} to {settings.end} through the six services", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as state:
        run, seconds = full_system(settings, dict(os.environ), Path(state))
        steps = step_times(Path(state) / "gateway.db")
    sessions = len(run.days)
    print(f"  {sessions} sessions in {seconds:,.1f} s: {sessions / seconds:.2f} cycles/s "
          f"({1000 * seconds / sessions:.0f} ms a cycle, start-up and close-out included; goal: under 300 s)")
    print(f"  the replay alone (first cycle to close-out): {run.seconds:,.1f} s, {sessions / run.seconds:.2f} cycles/s")
    for name, durations in steps.items():
        print(f"    {name:<22} median {statistics.median(durations):7.1f} ms  mean {statistics.mean(durations):7.1f} ms"
              f"  ({len(durations)} cycles)")
    print(f"  strategy: final value EUR {run.close_out.value_base:,.2f} for EUR {sum(a for _, a in run.deposits):,.0f} "
          f"deposited, {len(run.fills)} trades")

    print("baseline: the planner's core in this process (metrics + optimiser per session)", flush=True)
    days, baseline = planner_only(settings.start, settings.end, 1_000.0, 11_000.0)
    print(f"  {days} sessions in {baseline:,.1f} s: {days / baseline:.2f} sessions/s")
    print(f"  the full system takes {run.seconds / baseline:.1f}x the planner-only loop "
          f"({1000 * run.seconds / sessions:.0f} ms against {1000 * baseline / days:.0f} ms a session)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
