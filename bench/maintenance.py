"""Benchmark: database maintenance (issue 15 item 3) against a service's own calls.

A data-service database with N securities x D daily bars (synthetic prices, real schema) is
read and written by a "service" thread through the service's own engine the whole time: one
year of one security's bars (GetPriceHistory's query), then one cached-indicator upsert in its
own transaction. Each maintenance part runs in turn; the figures are the part's duration and
the service's call latencies (p50 / p99 / max) while it runs, beside the same calls with no
maintenance (the baseline, measured in the same run). The backup is measured twice: as
RunMaintenance makes it (under WAL, the backup API in one step, then the copy checked) and the
copy alone in steps of 1024 pages (what rollback-journal databases get), to show why not under
WAL: every write by the service restarts a stepped copy.

    .venv/bin/python bench/maintenance.py [--securities 500] [--days 2520] [--seconds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common import maintenance  # noqa: E402
from services.common.maintenance import Maintenance, MaintenanceRequest, load_settings  # noqa: E402
from services.data import store  # noqa: E402

NOW = datetime(2026, 1, 2, 22, tzinfo=UTC)


def build(path: Path, securities: int, days: int) -> None:
    """The schema by the service's migrations, then the rows in bulk (raw SQL: this is set-up)."""
    store.open_database(f"sqlite:///{path}").close()
    start = date(2016, 1, 4)
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.executemany(
            "INSERT INTO securities (id, symbol, name, currency, exchange, country, sector, industry, lot_size, "
            "active, allow_buy, allow_sell, kind, isin, bucket, yahoo_symbol, validated_with) "
            "VALUES (?, ?, ?, 'USD', 'XNYS', 'US', '', '', 1, 1, 1, 1, 'equity', '', 'core', '', 0)",
            [(i, f"S{i:04d}.US", f"Security {i}") for i in range(1, securities + 1)])
        for security in range(1, securities + 1):
            price = 100.0
            rows = []
            for day in range(days):
                price *= 1 + ((day * 7919 + security * 104729) % 2001 - 1000) / 100_000
                rows.append((security, (start + timedelta(days=day)).isoformat(), price, price * 1.01, price * 0.99,
                             price, 1e6, price))
            connection.executemany("INSERT INTO daily_bars (security_id, date, open, high, low, close, volume, "
                                   "adj_close) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        connection.commit()
        # what months of deletes leave behind: free pages for VACUUM to reclaim
        connection.execute("DELETE FROM daily_bars WHERE security_id % 5 = 0")
        connection.commit()


class Load(threading.Thread):
    """The service's calls, one after another, timed (milliseconds) into the current bucket."""

    def __init__(self, db, securities: int):
        super().__init__(daemon=True)
        self._db, self._securities = db, securities
        self.bucket: dict[str, list[float]] = {"read": [], "write": []}
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            security = 1 + n % self._securities
            started = time.perf_counter()
            with self._db.transaction() as session:
                store.daily_bars(session, security, date(2020, 1, 1), date(2020, 12, 31))
            self.bucket["read"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            with self._db.transaction() as session:
                store.cache_indicators(session, security, date(2020, 12, 31), {"RSI_14": n}, NOW)
            self.bucket["write"].append((time.perf_counter() - started) * 1000)


def measured(load: Load, action) -> tuple[float, dict[str, list[float]]]:
    load.bucket = {"read": [], "write": []}
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000, load.bucket


def stats(values: list[float]) -> str:
    if not values:
        return "no calls"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):6.2f}  p99 {p99:7.2f}  max {ordered[-1]:7.2f} ms  ({len(ordered)} calls)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--securities", type=int, default=500)
    parser.add_argument("--days", type=int, default=2520)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.db"
        started = time.perf_counter()
        build(path, args.securities, args.days)
        print(f"database: {args.securities} securities x {args.days} days, {path.stat().st_size / 1e6:.1f} MB "
              f"(built in {time.perf_counter() - started:.1f} s)")
        db = store.open_database(f"sqlite:///{path}")
        work = Maintenance(store.SCHEMA, db, load_settings("data", Path(folder), store.RETENTION_RULES, {}))
        load = Load(db, args.securities)
        load.start()
        time.sleep(0.5)  # warm
        restarts: list[int] = []

        def part(name: str, **options):
            return lambda: work.run(MaintenanceRequest(parts=(name,), **options), NOW, datetime.now(UTC))

        def stepped_copy():
            with contextlib.closing(sqlite3.connect(path)) as source, \
                    contextlib.closing(sqlite3.connect(Path(folder) / "stepped.db")) as target:
                restarts.append(maintenance.copy_in_steps(source, target))

        results = {"baseline (no maintenance)": measured(load, lambda: time.sleep(args.seconds))}
        for name, action in (("backup (as RunMaintenance: one step, then the copy checked)", part("backup")),
                             ("copy alone, in steps", stepped_copy),
                             ("optimize: ANALYZE + VACUUM", part("optimize", vacuum=True)),
                             ("optimize: ANALYZE only", part("optimize")),
                             ("checkpoint (TRUNCATE)", part("checkpoint")),
                             ("integrity_check", part("integrity_check"))):
            results[name] = measured(load, action)
            time.sleep(0.3)
        load.stop.set()
        load.join()
        base = {kind: statistics.median(values) for kind, values in results["baseline (no maintenance)"][1].items()}
        for name, (duration, bucket) in results.items():
            print(f"\n{name}: {duration:.0f} ms")
            for kind, values in bucket.items():
                ratio = f"  p50 {statistics.median(values) / base[kind]:.1f}x baseline" if values else ""
                print(f"  service {kind:5s} {stats(values)}{ratio}")
        print(f"\nthe stepped copy restarted {restarts[0]} times (then copied the rest in one step)")
        print(json.dumps({name: round(duration, 1) for name, (duration, _) in results.items()}))
        db.close()


if __name__ == "__main__":
    main()
