"""Benchmark: the planner's optimiser at 20 / 50 / 200 securities, one core.

For each size: the whole blend (expected returns, Ledoit-Wolf, bounds, the mean-variance
fallback chain, HRP, the blend, post-processing and fit; services/planner/optimizer) beside a
plain PyPortfolioOpt `EfficientFrontier(mu, S).min_volatility()` on the same Ledoit-Wolf
covariance, and the blend with every mean-variance solve through PyPortfolioOpt (no compiled
program; optimizer/mean_variance.py), measured in the same run. The closes are synthetic (seeded, one market factor plus
noise, 365 days); only their count and shape matter here. Prints figures; asserts nothing.

    .venv/bin/python bench/optimizer.py [--sizes 20 50 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pypfopt import EfficientFrontier  # noqa: E402

from services.planner import defaults  # noqa: E402
from services.planner.optimizer import (  # noqa: E402
    OptimizerInput,
    SecurityInput,
    mean_variance,  # the module: its compiled programs are switched off for a baseline
    optimize,
)
from services.planner.optimizer.risk import aligned, daily_returns, ledoit_wolf  # noqa: E402
from services.planner.optimizer.sectors import GroupTargets  # noqa: E402

COUNTRIES = ("US", "DE", "FR", "GB")
INDUSTRIES = ("Tech", "Energy", "Health", "Finance", "Consumer")


def synthetic(securities: int, days: int = defaults.LOOKBACK_BARS, seed: int = 11) -> list[SecurityInput]:
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0003, 0.009, days)
    dates = [d.date().isoformat() for d in pd.bdate_range("2021-01-04", periods=days)]
    inputs = []
    for i in range(securities):
        beta = rng.uniform(0.5, 1.5)
        closes = 100 * np.exp(np.cumsum(beta * market + rng.normal(0.0001, 0.012, days)))
        inputs.append(SecurityInput(f"S{i:03d}.US", list(zip(dates, closes.tolist(), strict=True)),
                                    cagr=float(rng.uniform(-0.05, 0.2)), total_score=float(rng.uniform(0.2, 0.9)),
                                    country=COUNTRIES[i % len(COUNTRIES)], industry=INDUSTRIES[i % len(INDUSTRIES)]))
    return inputs


def timed(repeat: int, fn) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def measure(size: int, repeat: int, groups: GroupTargets) -> str:
    securities = synthetic(size)
    plain = OptimizerInput(securities, 100_000.0, 3_000.0)
    grouped = OptimizerInput(securities, 100_000.0, 3_000.0, groups=groups)
    prices = aligned({s.symbol: s.closes for s in securities})
    mu = pd.Series({s.symbol: s.cagr for s in securities})[prices.symbols]

    def min_volatility():
        EfficientFrontier(mu, ledoit_wolf(daily_returns(prices)), weight_bounds=(0, defaults.MAX_WEIGHT),
                          solver="CLARABEL").min_volatility()

    blend_min, blend_p50 = timed(repeat, lambda: optimize(plain))
    _, grouped_p50 = timed(repeat, lambda: optimize(grouped))
    _, plain_p50 = timed(repeat, min_volatility)
    compilable = mean_variance._compilable  # noqa: SLF001 - switched off for the same-run baseline
    mean_variance._compilable = lambda *_: False  # noqa: SLF001
    try:
        _, library_p50 = timed(repeat, lambda: optimize(plain))
    finally:
        mean_variance._compilable = compilable  # noqa: SLF001
    result = optimize(grouped)
    fallback = f"{result.fallback.level}/{result.fallback.objective}" if result.fallback else "-"
    return (f"{size:>10} {blend_p50 * 1000:>8.1f}ms {blend_min * 1000:>8.1f}ms {library_p50 * 1000:>10.1f}ms "
            f"{library_p50 / blend_p50:>6.1f}x {grouped_p50 * 1000:>10.1f}ms "
            f"{plain_p50 * 1000:>10.1f}ms {blend_p50 / plain_p50:>6.1f}x  {result.method} / {fallback}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 200])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    groups = GroupTargets({"US": 0.4, "DE": 0.25, "FR": 0.2, "GB": 0.15}, dict.fromkeys(INDUSTRIES, 0.2),
                          {c: c for c in COUNTRIES}, {i: i for i in INDUSTRIES})
    optimize(OptimizerInput(synthetic(20), 100_000.0, 3_000.0))  # warm-up: imports, solver set-up
    print(f"{'securities':>10} {'blend p50':>10} {'blend min':>10} {'library p50':>12} {'gain':>7} "
          f"{'+groups p50':>12} {'min_vol p50':>12} {'ratio':>7}  method / fallback (with groups)")
    for size in args.sizes:
        print(measure(size, args.repeat, groups))


if __name__ == "__main__":
    main()
