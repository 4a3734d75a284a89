"""Benchmark: loading the ECB reference rates (issue 11 item 3) at the data service's start.

Measures, each in a fresh temporary SQLite database: the default load (the currencies the
service prices: base EUR, configured USD), the same with every currency in the file (the
alternative not taken), a second start with everything loaded (what every later start costs),
and a GetFxRates-style lookup of the rates on one day, beside opening an empty database
measured in the same run (the baseline). Prints figures and the size of each database.

    .venv/bin/python bench/fx_reference_load.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.data import engine, store  # noqa: E402
from services.data.adapters import ecb_rates  # noqa: E402
from services.data.fx import reference_in_base, reference_window  # noqa: E402


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def fresh(workdir: Path, name: str):
    return store.open_database(f"sqlite:///{workdir / name}.db")


def rates_of_one_day(db) -> None:
    oldest, latest = reference_window(date(2020, 3, 16), datetime(2020, 3, 17, 12, tzinfo=UTC))
    with db.transaction() as session:
        reference_in_base(store.reference_fixing(session, latest, oldest), "EUR")


def one_run(workdir: Path, run: int, every: set[str]) -> dict[str, float]:
    figures = {"open empty db": timed(lambda: fresh(workdir, f"empty{run}").close())}
    needed = fresh(workdir, f"needed{run}")
    figures["needed (USD)"] = timed(engine.load_reference_rates, needed, {"EUR", "USD"})
    figures["second start"] = timed(engine.load_reference_rates, needed, {"EUR", "USD"})
    figures["rates of one day"] = timed(rates_of_one_day, needed)
    needed.close()
    everything = fresh(workdir, f"all{run}")
    figures["every currency"] = timed(engine.load_reference_rates, everything, every)
    everything.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    _, every = ecb_rates.latest_fixing()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        runs = [one_run(workdir, run, set(every)) for run in range(args.repeat)]
        sizes = {name: sum(p.stat().st_size for p in workdir.glob(f"{name}.db*")) for name in ("empty0", "needed0",
                                                                                               "all0")}
    baseline = statistics.median(run["open empty db"] for run in runs)
    for name in runs[0]:
        median = statistics.median(run[name] for run in runs)
        print(f"{name:18s} {median * 1000:8.1f} ms   {median / baseline:6.2f} x opening an empty database")
    for name, size in sizes.items():
        print(f"database {name:8s} {size / 1e6:6.2f} MB")


if __name__ == "__main__":
    main()
