"""Benchmark: scoring 500 securities x 10 years (issue 13), beside computing the same inputs'
metrics alone in the same run; and the vectorised end-state score beside its plain
per-portfolio reference (the evaluation issue 14 builds on). Prints figures; asserts nothing.

Metrics are the data service's `indicators.compute` on every daily close; scoring is what the
planner does with them: `Metrics.from_values`, the eight groups (with fundamentals for half the
securities and a portfolio holding a tenth of them), the total and the quality. Synthetic,
seeded random walks: only their count matters here. One core.

    .venv/bin/python bench/scoring.py [--securities 500] [--years 10] [--repeat 3] [--sequences 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from services.data.indicators import compute  # noqa: E402
from services.planner.scoring.end_state import (  # noqa: E402
    Outlook,
    Universe,
    end_state_score_reference,
    end_state_scores,
)
from services.planner.scoring.inputs import Fundamentals, Holding, Metrics, PortfolioContext  # noqa: E402
from services.planner.scoring.security import SecurityInput, score_security  # noqa: E402


def synthetic(securities: int, bars: int, seed: int = 7) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0003, 0.015, size=(securities, bars))
    closes = [100 * np.exp(np.cumsum(row)) for row in returns]
    month_ordinals = 2010 * 12 + np.arange(bars) // 21  # about 21 trading days a month
    return closes, month_ordinals


def inputs(count: int, seed: int = 11) -> tuple[list[Fundamentals], PortfolioContext]:
    rng = np.random.default_rng(seed)
    facts = [Fundamentals(trailing_pe=float(rng.uniform(5, 40)), forward_pe=float(rng.uniform(5, 40)),
                          profit_margin=float(rng.uniform(-0.1, 0.4)), debt_to_equity=float(rng.uniform(0, 3)),
                          current_ratio=float(rng.uniform(0.5, 3)), dividend_yield=float(rng.uniform(0, 0.07)),
                          payout_ratio=float(rng.uniform(0, 1)), five_year_avg_dividend_yield=0.02,
                          recommendation_key="buy", target_mean_price=110.0) if i % 2 else Fundamentals()
             for i in range(count)]
    holdings = {f"S{i}": Holding(f"S{i}", 10, 100.0, 95.0, 950.0) for i in range(0, count, 10)}
    context = PortfolioContext(100_000.0, holdings, {f"S{i}": "United States" for i in range(count)},
                               {f"S{i}": "Software" for i in range(count)}, {"United States": "US"},
                               {"Software": "TECH"}, {"US": 0.6}, {"TECH": 0.2})
    return facts, context


def metrics_alone(closes, months):
    return [compute(c, None, None, months) for c in closes]


def scoring_alone(values, facts, context, bars, month_count):
    return [score_security(SecurityInput(f"S{i}", Metrics.from_values(v, bars, month_count), facts[i],
                                         "United States", "Software"), context) for i, v in enumerate(values)]


def metrics_and_scoring(closes, months, facts, context, bars, month_count):
    return scoring_alone(metrics_alone(closes, months), facts, context, bars, month_count)


def timed(repeat: int, fn, *args) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def end_state_figures(sequences: int, securities: int = 50, reference_rows: int = 2000) -> None:
    rng = np.random.default_rng(3)
    symbols = [f"S{i}" for i in range(securities)]
    outlooks = {s: Outlook(*rng.uniform(0, 1, 3), float(rng.uniform(0, 0.05)), float(rng.uniform(0, 1)),
                           ["US", "EU", "ASIA"][i % 3]) for i, s in enumerate(symbols)}
    targets = {"US": 0.5, "EU": 0.3, "ASIA": 0.2}
    universe = Universe.build(symbols, outlooks, targets)
    values = rng.uniform(0, 5000, (sequences, securities)) * (rng.uniform(0, 1, (sequences, securities)) < 0.3)
    cash = rng.uniform(0, 20_000, sequences)
    started = time.perf_counter()
    vectorised = end_state_scores(values, cash, universe)
    vector_s = time.perf_counter() - started
    started = time.perf_counter()
    loop = [end_state_score_reference(dict(zip(symbols, row, strict=True)), c, outlooks, targets)
            for row, c in zip(values[:reference_rows], cash[:reference_rows], strict=True)]
    loop_s = (time.perf_counter() - started) / reference_rows * sequences
    assert np.allclose(vectorised[:reference_rows], loop, atol=1e-9)
    print(f"end-state score, {sequences:,} portfolios x {securities} securities:")
    print(f"  vectorised (numpy):         {vector_s * 1000:9.1f} ms   {sequences / vector_s:12,.0f} portfolios/s")
    print(f"  plain reference loop:       {loop_s * 1000:9.1f} ms   {sequences / loop_s:12,.0f} portfolios/s "
          f"(timed on {reference_rows:,})")
    print(f"  speed-up:                   {loop_s / vector_s:9.0f} x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--securities", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sequences", type=int, default=100_000)
    args = parser.parse_args()
    bars = args.years * 252
    closes, months = synthetic(args.securities, bars)
    month_count = len(np.unique(months))
    facts, context = inputs(args.securities)
    values = metrics_alone(closes, months)
    metrics_best, metrics_median = timed(args.repeat, metrics_alone, closes, months)
    scoring_best, scoring_median = timed(args.repeat, scoring_alone, values, facts, context, bars, month_count)
    both_best, both_median = timed(args.repeat, metrics_and_scoring, closes, months, facts, context, bars,
                                   month_count)
    per = 1e6 / args.securities
    print(f"{args.securities} securities x {bars} daily bars, best/median of {args.repeat} runs, per security")
    print(f"metrics alone (indicators.compute):  {metrics_best * per:8.1f} / {metrics_median * per:8.1f} us")
    print(f"scoring alone (from the metrics):    {scoring_best * per:8.1f} / {scoring_median * per:8.1f} us")
    print(f"metrics and scoring:                 {both_best * per:8.1f} / {both_median * per:8.1f} us   "
          f"total {both_best:.2f} s")
    print(f"ratio scoring / metrics (best):      {scoring_best / metrics_best:8.3f} x")
    print(f"ratio (metrics + scoring) / metrics: {both_best / metrics_best:8.3f} x")
    end_state_figures(args.sequences)


if __name__ == "__main__":
    main()
