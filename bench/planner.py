"""Benchmark: the holistic planner's evaluation and its batches (issue 14).

1. Sequences evaluated per second on one core: 50 securities, depth 5, 200,000 sequences (two
   sells of held securities then three buys, or five buys), vectorised
   (services/planner/evaluation.py `evaluate`), beside the plain per-sequence reference loop
   (`evaluate_reference`, the same formula) on a sample of them, in the same run. Goal:
   >= 200,000 sequences/s/core and >= 100x the loop.
2. Peak memory: numpy's allocations during that evaluation (tracemalloc) and this process's
   peak resident size; then the planner service's own peak (VmHWM) after planning below.
3. From a new portfolio hash to a complete best result: the six services as processes on the
   bundled history (20 securities); each round is a new day with a deposit (a new hash once the
   cycle has synced it) and one sync cycle, whose `plan` step generates the state's sequences,
   evaluates every one and stores the best (the step's duration; GetPlannerStatus confirms the
   batch is complete).

    .venv/bin/python bench/planner.py [--sequences 200000] [--reference 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.planner.evaluation import (  # noqa: E402
    BUY_SIDE,
    SELL_SIDE,
    EncodedSequences,
    EvaluationBook,
    evaluate,
    evaluate_reference,
)
from services.planner.scoring.end_state import Outlook  # noqa: E402

SECURITIES, DEPTH = 50, 5
GROUPS = ("US", "EU", "ASIA")


def book(rng: np.random.Generator) -> EvaluationBook:
    symbols = [f"S{i:02d}" for i in range(SECURITIES)]
    held = np.where(np.arange(SECURITIES) % 2 == 0, rng.integers(20, 400, SECURITIES), 0)
    outlooks = {s: Outlook(*rng.uniform(0.2, 0.95, 3), float(rng.uniform(0, 0.05)), float(rng.uniform(0.3, 0.9)),
                           GROUPS[i % 3]) for i, s in enumerate(symbols)}
    return EvaluationBook.build(symbols, rng.uniform(10, 400, SECURITIES), held,
                                ["EUR" if i % 3 else "USD" for i in range(SECURITIES)],
                                {"EUR": 60_000.0, "USD": 5_000.0}, "EUR", 2_000.0, True, 0.05, outlooks,
                                {"US": 0.5, "EU": 0.3, "ASIA": 0.2}, rng.uniform(0.1, 0.5, SECURITIES))


def sequences(rng: np.random.Generator, evaluation_book: EvaluationBook, count: int) -> EncodedSequences:
    """Half: two sells of held securities (up to half the holding) then three buys; half: five
    buys. Buys of 250..5,000 in the base currency, in whole shares."""
    held = np.flatnonzero(evaluation_book.quantities > 0)
    index = rng.integers(0, SECURITIES, (count, DEPTH))
    side = np.full((count, DEPTH), BUY_SIDE, dtype=np.int8)
    selling = rng.random(count) < 0.5
    index[selling, :2] = rng.choice(held, (int(selling.sum()), 2))
    side[selling, :2] = SELL_SIDE
    prices = evaluation_book.prices_base[index]
    quantity = np.maximum(1, np.floor(rng.uniform(250, 5_000, (count, DEPTH)) / prices))
    sell_limit = np.maximum(1, np.floor(evaluation_book.quantities[index] / 2))
    quantity = np.where(side == SELL_SIDE, np.minimum(quantity, sell_limit), quantity)
    return EncodedSequences(index, side, quantity)


def throughput(count: int, sample: int) -> None:
    rng = np.random.default_rng(2026)
    evaluation_book = book(rng)
    encoded = sequences(rng, evaluation_book, count)
    evaluate(evaluation_book, encoded.rows(slice(0, 1_000)))  # warm up
    best = min(_timed(lambda: evaluate(evaluation_book, encoded)) for _ in range(3))
    rows = [list(zip(encoded.index[r], encoded.side[r], encoded.quantity[r], strict=True)) for r in range(sample)]
    loop = _timed(lambda: [evaluate_reference(evaluation_book, steps) for steps in rows])
    vectorised_rate, loop_rate = count / best, sample / loop
    scores = evaluate(evaluation_book, encoded.rows(slice(0, sample))).scores
    reference = np.array([evaluate_reference(evaluation_book, steps) for steps in rows[:500]])
    print(f"evaluation: {SECURITIES} securities, depth {DEPTH}, {count:,} sequences on one core")
    print(f"  vectorised        {best * 1000:9.1f} ms   {vectorised_rate:12,.0f} sequences/s/core")
    print(f"  reference loop    {loop * 1000:9.1f} ms   {loop_rate:12,.0f} sequences/s ({sample:,} sequences)")
    print(f"  ratio             {vectorised_rate / loop_rate:9.0f}x   (goal >= 200,000/s/core and >= 100x)")
    print(f"  largest difference from the reference: {np.abs(scores[:500] - reference).max():.1e}")
    tracemalloc.start()
    evaluate(evaluation_book, encoded)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  peak numpy memory of one evaluation of {count:,}: {peak / 2**20:.1f} MiB; "
          f"this process's peak resident size {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def new_hash_to_best(rounds: int) -> None:
    from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
    from trader.planner.v1 import planner_pb2, planner_pb2_grpc
    from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
    from trader.trading.v1 import trading_pb2, trading_pb2_grpc

    from tests.helpers import TOKEN
    from tests.suite import Suite

    suite = Suite(Path(tempfile.mkdtemp(prefix="bench-planner-"))).start()
    try:
        auth = ("authorization", f"Bearer {TOKEN}")
        trading = trading_pb2_grpc.TradingStub(suite.channel("trading"))
        portfolio = portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio"))
        planner = planner_pb2_grpc.PlannerStub(suite.channel("planner"))
        gateway = gateway_pb2_grpc.GatewayStub(suite.channel("gateway"))
        day = date(2018, 3, 1)
        times, generated = [], []
        for n in range(rounds + 1):
            while (day + timedelta(days=n)).weekday() >= 5:
                day += timedelta(days=1)
            moment = [auth, ("x-trader-as-of", datetime.combine(day + timedelta(days=n), day_time(22), UTC)
                             .isoformat())]
            trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(amount=10_000, reference=f"b{n}"),
                                     metadata=moment)
            portfolio.RecordDeposit(portfolio_pb2.RecordDepositRequest(amount=10_000, reference=f"b{n}"),
                                    metadata=moment)
            cycle = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=moment, timeout=120)
            plan_step = next(s for s in cycle.steps if s.name == "plan")
            status = planner.GetPlannerStatus(planner_pb2.GetPlannerStatusRequest(), metadata=[auth])
            assert plan_step.status == gateway_pb2.OK and status.complete, (plan_step.detail, status)
            if n:  # the first plan also scores every security from nothing
                times.append(plan_step.duration_ms / 1000)
                generated.append(status.generated)
        pid = suite.processes["planner"].pid
        peak = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM")).split()[1]
        print(f"new portfolio hash -> complete best result (six services, {len(generated)} rounds, bundled "
              f"20 securities, {statistics.median(generated):.0f} sequences per state):")
        print(f"  p50 {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
              f"(the cycle's plan step: reads, scores, optimiser, generation, evaluation, storage)")
        print(f"  the planner process's peak resident size: {int(peak) / 1024:.0f} MiB")
    finally:
        suite.terminate()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=200_000)
    parser.add_argument("--reference", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    throughput(max(100_000, args.sequences), args.reference)
    new_hash_to_best(args.rounds)


if __name__ == "__main__":
    main()
