"""Benchmark: indicators and metrics for 500 securities x 10 years of daily bars, one core.

Targets (issue 3): under 2 s in total, and within 3x of calling TA-Lib directly (RSI, EMA 50/200,
SMA 50/200, Bollinger 20/2) on the same arrays, measured in the same run. The bars are
synthetic (a seeded random walk); only their count matters here. Prints figures; asserts nothing.

    .venv/bin/python bench/indicators.py [--securities 500] [--years 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import talib  # noqa: E402

from services.data.indicators import compute  # noqa: E402


def synthetic(securities: int, bars: int, seed: int = 7) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0003, 0.015, size=(securities, bars))
    closes = [100 * np.exp(np.cumsum(row)) for row in returns]
    days = np.arange(bars)
    month_ordinals = 2010 * 12 + days // 21  # about 21 trading days a month
    return closes, month_ordinals


def talib_only(closes: list[np.ndarray]) -> None:
    for c in closes:
        talib.RSI(c, timeperiod=14)
        talib.EMA(c, timeperiod=50)
        talib.EMA(c, timeperiod=200)
        talib.SMA(c, timeperiod=50)
        talib.SMA(c, timeperiod=200)
        talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)


def ours(closes: list[np.ndarray], month_ordinals: np.ndarray) -> None:
    for c in closes:
        compute(c, None, None, month_ordinals)


def best_of(repeat: int, fn, *args) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--securities", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    closes, months = synthetic(args.securities, args.years * 252)
    baseline_best, baseline_median = best_of(args.repeat, talib_only, closes)
    full_best, full_median = best_of(args.repeat, ours, closes, months)
    print(f"{args.securities} securities x {args.years * 252} daily bars, best/median of {args.repeat} runs")
    print(f"TA-Lib direct (RSI, EMA x2, SMA x2, BBANDS): {baseline_best * 1000:8.1f} / "
          f"{baseline_median * 1000:8.1f} ms")
    print(f"all indicators and metrics (compute):       {full_best * 1000:8.1f} / {full_median * 1000:8.1f} ms"
          f"   target < 2000 ms")
    print(f"ratio to TA-Lib direct (best):              {full_best / baseline_best:8.2f} x      target <= 3 x")


if __name__ == "__main__":
    main()
