"""Database maintenance (issue 15 item 3): backup and restore of every service's database, the
backup's check, retention at its boundaries, the parts on their own, PostgreSQL's answers, one
maintenance at a time, the settings."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from gateway import store as gateway_store
from services.common import maintenance
from services.common.config import REPO_ROOT, ConfigError
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.maintenance import (
    FAILED,
    MAX_DAYS,
    OK,
    SKIPPED,
    Maintenance,
    MaintenanceRequest,
    RestoreRefused,
    backup_files,
    check_backup,
    load_settings,
    restore,
)
from services.common.migrations import STORES, alembic_config, load_schema, scripts
from services.data import analytics
from services.data import store as data_store
from services.data.history import Bar
from services.data.universe import Security
from services.display import store as display_store
from services.display.pools import Message
from services.planner import store as planner_store
from services.portfolio import store as portfolio_store
from services.portfolio.valuation import Holding
from services.trading import store as trading_store
from services.trading.orders import OrderIntent
from tests.helpers import free_port

NOW = datetime(2018, 1, 10, 22, tzinfo=UTC)       # the as-of clock (a replay day)
WALL = datetime(2026, 11, 30, 3, tzinfo=UTC)      # the wall clock
STORE_MODULES = {"data": data_store, "portfolio": portfolio_store, "planner": planner_store,
                 "trading": trading_store, "display": display_store, "gateway": gateway_store}


# --- each service's database with real rows, through its own store ---

def _data_rows(session) -> None:
    security = data_store.save_security(session, Security("AAPL.US", "Apple", "USD", "XNAS", "US", "Technology",
                                                          "Consumer Electronics", isin="US0378331005"))
    data_store.upsert_bars(session, security.id, [Bar(date(2018, 1, d), 170.0 + d, 169.0, 172.0 + d, 168.0, 2e7)
                                                  for d in (2, 3, 4, 5, 8, 9, 10)], None)
    data_store.cache_indicators(session, security.id, date(2018, 1, 10), {"RSI_14": 61.5}, NOW)
    data_store.save_fx_rate(session, "USD", date(2018, 1, 10), 1.2, "ecb")


def _portfolio_rows(session) -> None:
    portfolio_store.replace_broker_state(session, [Holding("AAPL.US", 10, 171.5, "USD")], {"EUR": 8_250.0}, NOW)
    portfolio_store.add_cash_flow(session, "deposit", 10_000.0, "EUR", "first-deposit", NOW, amount_base=10_000.0)
    for day in (8, 9, 10):
        _snapshot(session, date(2018, 1, day))


def _snapshot(session, day: date) -> None:
    portfolio_store.save_snapshot(
        session, portfolio_store.SnapshotRow(date=day, positions_value_base=1_430.0, cash_base=8_250.0,
                                             total_value_base=9_680.0, base_currency="EUR", taken_at=NOW),
        [portfolio_store.SnapshotPositionRow(date=day, symbol="AAPL.US", quantity=10, value_base=1_430.0,
                                             country="US", industry="Technology", bucket="core")], [])


def _planner_rows(session) -> None:
    planner_store.save_plan(session, "a1b2c3d4e5f60718", "2018-01-10", "plan-1", {"steps": []}, NOW)


def _trading_rows(session) -> None:
    trading_store.add_order(session, OrderIntent("order-1", "AAPL.US", "BUY", 10, "plan-1 step 1"), "USD", NOW)


def _display_rows(session) -> None:
    display_store.put(session, Message("NEXT_ACTIONS", "BUY 10 AAPL", None, "normal", "next_actions", WALL))
    display_store.save_settings(session, 100, 40)


def _gateway_rows(session) -> None:
    gateway_store.add_run(session, NOW, True, True, "0af7651916cd43dd8448eb211c80319c",
                          [{"name": "sync_broker", "status": "OK", "duration_ms": 3.1, "detail": ""}], WALL)


ROWS = {"data": _data_rows, "portfolio": _portfolio_rows, "planner": _planner_rows, "trading": _trading_rows,
        "display": _display_rows, "gateway": _gateway_rows}


def open_service_db(service: str, path: Path):
    return STORE_MODULES[service].open_database(f"sqlite:///{path}")


def dump(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: what a restore must bring back."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                   "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: sorted(connection.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


def make_maintenance(service: str, db, folder: Path, environ: dict | None = None) -> Maintenance:
    rules = STORE_MODULES[service].RETENTION_RULES
    return Maintenance(load_schema(service), db, load_settings(service, folder, rules, environ or {}))


def backup_now(work: Maintenance, wall: datetime = WALL, **options) -> maintenance.PartResult:
    report = work.run(MaintenanceRequest(parts=("backup",), **options), NOW, wall)
    (part,) = report.parts
    return part


@pytest.mark.parametrize("service", sorted(STORES))
def test_backup_then_restore_brings_back_every_row(tmp_path, service):
    live = tmp_path / f"{service}.db"
    db = open_service_db(service, live)
    with db.transaction() as session:
        ROWS[service](session)
    work = make_maintenance(service, db, tmp_path)
    part = backup_now(work)
    assert part.status == OK, part.detail
    backup = part.backup
    assert backup.path.parent == tmp_path / "backups" / service and backup.path.exists()
    assert backup.integrity == "ok" and backup.size_bytes == backup.path.stat().st_size > 0
    assert backup.schema_revision == scripts(load_schema(service)).get_current_head()
    # the copy is a self-contained file that passes the check on its own
    assert not Path(f"{backup.path}-wal").exists()
    assert check_backup(backup.path, load_schema(service)).problems == []
    with contextlib.closing(sqlite3.connect(backup.path)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    at_backup = dump(live)
    assert any(at_backup[t] for t in load_schema(service).tables), "the test wrote no rows"
    with db.transaction() as session:  # changes after the backup, which the restore undoes
        for metadata in load_schema(service).metadata:
            for table in reversed(metadata.sorted_tables):
                session.execute(table.delete())
    db.close()
    assert dump(live) != at_backup

    checked, kept = restore(service, backup.path, f"sqlite:///{live}", WALL)

    assert checked.revision == backup.schema_revision
    assert dump(live) == at_backup
    assert kept is not None and kept.exists() and dump(kept) != at_backup  # the state before the restore
    open_service_db(service, live).close()  # the service opens it as usual


def test_restore_cli_verifies_and_restores(tmp_path):
    live = tmp_path / "portfolio.db"
    db = open_service_db("portfolio", live)
    with db.transaction() as session:
        _portfolio_rows(session)
    backup = backup_now(make_maintenance("portfolio", db, tmp_path)).backup
    at_backup = dump(live)
    with db.transaction() as session:
        portfolio_store.add_cash_flow(session, "deposit", 1.0, "EUR", "after-backup", NOW)
    env = {**os.environ, "TRADER_VAR_DIR": str(tmp_path), "TRADER_PORTFOLIO_DB_URL": ""}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "services.common.maintenance", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    verified = cli("verify", "portfolio", str(backup.path))
    assert verified.returncode == 0 and "integrity ok" in verified.stdout
    in_use = cli("restore", "portfolio", str(backup.path))  # the service's engine still holds it
    assert in_use.returncode == 1 and "stop the portfolio service first" in in_use.stderr
    assert dump(live) != at_backup
    db.close()
    restored = cli("restore", "portfolio", str(backup.path))
    assert restored.returncode == 0, restored.stderr
    assert "before the restore is kept as" in restored.stdout
    assert dump(live) == at_backup
    wrong_service = cli("restore", "trading", str(backup.path))
    assert wrong_service.returncode == 1 and "not a trading database" in wrong_service.stderr


# --- a backup that is not sound is never taken for one ---

def corrupt(path: Path) -> None:
    """Overwrite pages in the middle of the file (what a failing disk does)."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(b"\xde\xad\xbe\xef" * 2048)


def test_a_corrupted_backup_is_detected_and_not_restored(tmp_path):
    live = tmp_path / "data.db"
    db = open_service_db("data", live)
    with db.transaction() as session:
        _data_rows(session)
        for n in range(200):  # pages beyond the first few, so the damage hits table and index pages
            session.add(data_store.FxRateRow(currency="USD", date=date(2000, 1, 1) + timedelta(days=n), rate=1.1,
                                             source="ecb"))
    backup = backup_now(make_maintenance("data", db, tmp_path)).backup
    db.close()
    before = dump(live)
    corrupt(backup.path)

    checked = check_backup(backup.path, load_schema("data"))
    assert checked.problems and checked.problems[0].startswith("integrity check:")
    with pytest.raises(RestoreRefused, match="cannot be restored: integrity check"):
        restore("data", backup.path, f"sqlite:///{live}", WALL)
    assert dump(live) == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    fake = tmp_path / "data-20261130T030000Z.db"
    fake.write_bytes(b"not a database at all" * 100)
    assert check_backup(fake, load_schema("data")).problems
    missing = tmp_path / "missing.db"
    assert check_backup(missing, load_schema("data")).problems == [f"{missing}: no such file"]


def test_a_copy_that_fails_its_check_keeps_the_old_backups(tmp_path, monkeypatch):
    db = open_service_db("gateway", tmp_path / "gateway.db")
    with db.transaction() as session:
        _gateway_rows(session)
    work = make_maintenance("gateway", db, tmp_path)
    old = backup_now(work, WALL - timedelta(days=30)).backup.path

    def copy_then_damage(source, target):  # a copy whose table points at a page that is not there
        source.backup(target)
        target.execute("PRAGMA writable_schema = ON")
        target.execute("UPDATE sqlite_master SET rootpage = 9999 WHERE name = 'cycle_runs'")

    monkeypatch.setattr(maintenance, "copy_database", copy_then_damage)
    part = backup_now(work)
    assert part.status == FAILED and "the copy failed its check, removed" in part.detail
    assert [p for _, p in backup_files(tmp_path / "backups" / "gateway", "gateway")] == [old]  # not pruned
    assert sorted(p.name for p in (tmp_path / "backups" / "gateway").iterdir()) == [old.name]  # no partial left
    db.close()


def test_a_backup_newer_than_the_code_is_refused(tmp_path):
    live = tmp_path / "display.db"
    db = open_service_db("display", live)
    backup = backup_now(make_maintenance("display", db, tmp_path)).backup
    db.close()
    with contextlib.closing(sqlite3.connect(backup.path)) as copy:
        copy.execute("UPDATE alembic_version_display SET version_num = 'display_9999'")
        copy.commit()
    with pytest.raises(RestoreRefused, match="'display_9999'.*a newer build wrote it"):
        restore("display", backup.path, f"sqlite:///{live}", WALL)


def test_a_backup_from_an_older_build_is_restored_and_migrated_at_start(tmp_path):
    schema = load_schema("portfolio")
    revisions = [r.revision for r in scripts(schema).walk_revisions()]  # newest first
    assert len(revisions) >= 2
    older = tmp_path / "older.db"
    engine = create_engine(f"sqlite:///{older}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(schema, connection), revisions[1])
    engine.dispose()
    live = tmp_path / "portfolio.db"
    open_service_db("portfolio", live).close()

    checked, _ = restore("portfolio", older, f"sqlite:///{live}", WALL)

    assert checked.revision == revisions[1]
    db = open_service_db("portfolio", live)  # the service's start migrates it to head
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version_portfolio")).scalar() == revisions[0]
    db.close()


# --- backups kept N days ---

def test_backups_older_than_the_kept_days_go_and_nothing_else(tmp_path):
    db = open_service_db("trading", tmp_path / "trading.db")
    work = make_maintenance("trading", db, tmp_path, {"TRADER_BACKUP_KEEP_DAYS": "3"})
    folder = tmp_path / "backups" / "trading"
    made = {days: backup_now(work, WALL - timedelta(days=days)).backup.path for days in (5, 4, 3, 2)}
    foreign = [folder / "notes.txt", folder / "trading-20180101T000000Z.before-restore.db", folder / "data-x.db"]
    for path in foreign:
        path.write_text("keep me")

    part = backup_now(work)

    assert sorted(part.removed_backups) == sorted([made[5], made[4]])  # made before WALL - 3 days
    assert made[3].exists() and made[2].exists() and part.backup.path.exists()
    assert all(path.exists() for path in foreign)
    # a caller may keep fewer days
    assert sorted(backup_now(work, backup_keep_days=1).removed_backups) == sorted([made[3], made[2]])
    assert len(backup_files(folder, "trading")) == 2  # both made at WALL
    db.close()


def test_two_backups_in_one_second_get_two_files(tmp_path):
    db = open_service_db("display", tmp_path / "display.db")
    work = make_maintenance("display", db, tmp_path)
    first, second = backup_now(work).backup.path, backup_now(work).backup.path
    assert first != second and first.exists() and second.exists()
    assert second.name == f"display-{WALL:%Y%m%dT%H%M%SZ}-2.db"
    db.close()


# --- retention: each rule at its boundary ---

@pytest.fixture
def service_db(tmp_path):
    opened = []

    def open_one(service: str):
        db = open_service_db(service, tmp_path / f"{service}.db")
        opened.append(db)
        return db, make_maintenance(service, db, tmp_path)

    yield open_one
    for db in opened:
        db.close()


def retention(work: Maintenance, now: datetime = NOW, wall: datetime = WALL, **options) -> maintenance.PartResult:
    (part,) = work.run(MaintenanceRequest(parts=("retention",), **options), now, wall).parts
    return part


def count(db, table: str) -> int:
    with db.engine.connect() as connection:
        return connection.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar()


def test_snapshot_retention_keeps_the_cutoff_day(service_db):
    db, work = service_db("portfolio")
    with db.transaction() as session:
        for day in (6, 7, 8, 9, 10):
            _snapshot(session, date(2018, 1, day))
    assert retention(work).retention[0].keep_days == 0 and count(db, "snapshots") == 5  # 0: keeps all (default)

    part = retention(work, retention_days={"snapshots": 2})

    (result,) = part.retention
    assert result.cutoff == date(2018, 1, 8) and result.deleted_rows == 4  # 2 snapshots + their 2 positions
    with db.engine.connect() as connection:
        assert [r[0] for r in connection.execute(text("SELECT date FROM snapshots ORDER BY date"))] == \
               ["2018-01-08", "2018-01-09", "2018-01-10"]
    assert count(db, "snapshot_positions") == 3


def test_retention_dry_run_counts_and_deletes_nothing(service_db):
    db, work = service_db("portfolio")
    with db.transaction() as session:
        for day in (6, 7, 8):
            _snapshot(session, date(2018, 1, day))
    part = retention(work, retention_days={"snapshots": 2}, retention_dry_run=True)
    assert part.retention[0].deleted_rows == 4 and part.detail == "would delete 4 rows"
    assert count(db, "snapshots") == 3 and count(db, "snapshot_positions") == 3


def test_indicator_cache_retention_at_the_instant(service_db):
    db, work = service_db("data")
    assert data_store.INDICATOR_CACHE_KEEP_DAYS == max(analytics.TTL.values()).days
    cutoff = NOW - timedelta(days=data_store.INDICATOR_CACHE_KEEP_DAYS)
    with db.transaction() as session:
        security = data_store.save_security(session, Security("AAPL.US", "Apple", "USD", "XNAS", "", "", ""))
        data_store.upsert_bars(session, security.id, [Bar(date(1990, 1, 2), 1.0), Bar(date(2018, 1, 2), 2.0)], None)
        for day, computed_at in ((1, cutoff - timedelta(seconds=1)), (2, cutoff), (3, NOW)):
            data_store.cache_indicators(session, security.id, date(2018, 1, day), {"RSI_14": 50.0}, computed_at)

    part = retention(work)

    assert {r.rule: (r.deleted_rows, r.cutoff) for r in part.retention} == {
        "indicator_cache": (1, cutoff), "daily_bars": (0, None)}  # bars are history: kept by default
    with db.engine.connect() as connection:
        assert [r[0] for r in connection.execute(text("SELECT through FROM indicator_cache ORDER BY through"))] == \
               ["2018-01-02", "2018-01-03"]
    assert count(db, "daily_bars") == 2


def test_bar_retention_follows_the_data_retention_setting(tmp_path):
    db = open_service_db("data", tmp_path / "data.db")
    work = make_maintenance("data", db, tmp_path, {"TRADER_DATA_RETENTION_DAYS": "3"})
    with db.transaction() as session:
        security = data_store.save_security(session, Security("AAPL.US", "Apple", "USD", "XNAS", "", "", ""))
        data_store.upsert_bars(session, security.id, [Bar(date(2018, 1, d), 1.0 + d) for d in (5, 6, 7, 8)], None)
    (bars,) = [r for r in retention(work).retention if r.rule == "daily_bars"]
    assert (bars.keep_days, bars.cutoff, bars.deleted_rows) == (3, date(2018, 1, 7), 2)
    db.close()


def test_plan_retention_by_creation(service_db):
    db, work = service_db("planner")
    cutoff = NOW - timedelta(days=30)
    with db.transaction() as session:
        for n, created in enumerate((cutoff - timedelta(microseconds=1), cutoff, NOW)):
            planner_store.save_plan(session, f"hash{n}", "2018-01-10", f"plan-{n}", {}, created)
            planner_store.save_targets(session, f"state{n}", "key", {}, created)  # a cache too
    assert retention(work).retention[0].deleted_rows == 2
    assert count(db, "plans") == 2 and count(db, "optimizer_targets") == 2


def test_cycle_run_retention_reads_the_wall_clock(service_db):
    db, work = service_db("gateway")
    cutoff = WALL - timedelta(days=365)
    with db.transaction() as session:
        for finished in (cutoff - timedelta(seconds=1), cutoff, WALL):
            gateway_store.add_run(session, NOW, True, True, "0" * 32, [], finished)
    # the as-of clock of a replay (2018) is years before the rows' wall-clock times: it decides nothing
    result = next(r for r in retention(work, now=NOW, wall=WALL).retention if r.rule == "cycle_runs")
    assert (result.cutoff, result.deleted_rows) == (cutoff, 1)
    assert count(db, "cycle_runs") == 2


def test_expired_messages_go_and_lasting_ones_stay(service_db):
    db, work = service_db("display")
    cutoff = WALL - timedelta(days=7)
    with db.transaction() as session:
        for source, expires in (("old", cutoff - timedelta(seconds=1)), ("edge", cutoff), ("live", WALL),
                                ("lasting", None)):
            display_store.put(session, Message("ERROR", source, expires, "error", source, cutoff - timedelta(days=1)))
    assert retention(work).retention[0].deleted_rows == 1
    with db.engine.connect() as connection:
        assert sorted(r[0] for r in connection.execute(text("SELECT source FROM messages"))) == \
               ["edge", "lasting", "live"]


def test_trading_keeps_its_ledger(service_db):
    db, work = service_db("trading")
    with db.transaction() as session:
        _trading_rows(session)
    part = retention(work)
    assert part.status == OK and part.retention == [] and "keeps every row" in part.detail
    with pytest.raises(InvalidArgument, match=r"retention_days\['orders'\]: not a retention rule.*its rules: none"):
        retention(work, retention_days={"orders": 1})
    assert count(db, "orders") == 1


# --- the other parts, and how they fail ---

def test_every_part_runs_and_reports(service_db):
    db, work = service_db("portfolio")
    with db.transaction() as session:
        _portfolio_rows(session)
    report = work.run(MaintenanceRequest(), NOW, WALL)
    assert [p.name for p in report.parts] == ["backup", "retention", "optimize", "checkpoint", "integrity_check"]
    assert report.ok and report.backend == "sqlite" and report.service == "portfolio"
    assert all(p.status == OK and p.duration_ms > 0 and p.detail for p in report.parts)
    assert Path(f"{db.engine.url.database}-wal").stat().st_size == 0  # truncated


def test_vacuum_runs_when_free_pages_make_it_worth_it(service_db):
    db, work = service_db("gateway")
    with db.transaction() as session:
        for _ in range(300):
            gateway_store.add_run(session, NOW, True, True, "0" * 32, [{"detail": "x" * 2000}], WALL)
    (part,) = work.run(MaintenanceRequest(parts=("optimize",)), NOW, WALL).parts
    assert "no VACUUM: 0% of the pages are free" in part.detail
    with db.transaction() as session:
        session.execute(text("DELETE FROM cycle_runs"))
    work.run(MaintenanceRequest(parts=("checkpoint",)), NOW, WALL)
    size = Path(db.engine.url.database).stat().st_size
    optimize, checkpoint = work.run(MaintenanceRequest(parts=("optimize", "checkpoint")), NOW, WALL).parts
    assert optimize.detail.startswith("ANALYZE; VACUUM: ") and checkpoint.status == OK
    assert Path(db.engine.url.database).stat().st_size < size / 4  # the file shrinks at the checkpoint


def test_a_failing_part_does_not_stop_the_others(tmp_path):
    db = open_service_db("display", tmp_path / "display.db")
    (tmp_path / "backups").write_text("a file where the backup folder should be")
    work = make_maintenance("display", db, tmp_path)
    report = work.run(MaintenanceRequest(), NOW, WALL)
    status = {p.name: p.status for p in report.parts}
    assert status == {"backup": FAILED, "retention": OK, "optimize": OK, "checkpoint": OK, "integrity_check": OK}
    assert not report.ok and report.parts[0].detail == f"Not a directory: {tmp_path / 'backups' / 'display'}"
    db.close()


def test_integrity_check_reports_damage(tmp_path):
    live = tmp_path / "gateway.db"
    db = open_service_db("gateway", live)
    with db.transaction() as session:
        for _ in range(400):
            gateway_store.add_run(session, NOW, True, True, "0" * 32, [{"detail": "x" * 500}], WALL)
    work = make_maintenance("gateway", db, tmp_path)
    work.run(MaintenanceRequest(parts=("checkpoint",)), NOW, WALL)
    db.engine.dispose()
    corrupt(live)
    (part,) = work.run(MaintenanceRequest(parts=("integrity_check",)), NOW, WALL).parts
    assert part.status == FAILED and part.detail
    db.close()


def test_a_second_maintenance_while_one_runs_is_refused(tmp_path):
    release, entered = threading.Event(), threading.Event()

    def slow_prune(session, cutoff):
        entered.set()
        release.wait(10)
        return 0

    rule = maintenance.RetentionRule("slow", "a rule that takes its time", "TRADER_SLOW_DAYS", 1, slow_prune)
    db = open_service_db("gateway", tmp_path / "gateway.db")
    work = Maintenance(load_schema("gateway"), db, load_settings("gateway", tmp_path, [rule], {}))
    first = threading.Thread(target=work.run, args=(MaintenanceRequest(parts=("retention",)), NOW, WALL))
    first.start()
    assert entered.wait(10)
    with pytest.raises(FailedPrecondition, match="^maintenance_running: a maintenance of the gateway database"):
        work.run(MaintenanceRequest(parts=("integrity_check",)), NOW, WALL)
    release.set()
    first.join(10)
    assert work.run(MaintenanceRequest(parts=("integrity_check",)), NOW, WALL).ok  # free again
    db.close()


# --- requests and settings ---

@settings(max_examples=60, deadline=None)
@given(keep=st.one_of(st.none(), st.integers(-2**31, 2**31 - 1)),
       days=st.dictionaries(st.sampled_from(["snapshots", "nope", ""]), st.integers(-2**31, 2**31 - 1), max_size=2))
def test_request_boundaries(tmp_path_factory, keep, days):
    folder = tmp_path_factory.mktemp("requests")
    db = open_service_db("portfolio", folder / "portfolio.db")
    try:
        work = make_maintenance("portfolio", db, folder)
        valid = (keep is None or 1 <= keep <= MAX_DAYS) and all(
            rule == "snapshots" and 0 <= value <= MAX_DAYS for rule, value in days.items())
        request = MaintenanceRequest(parts=("backup", "integrity_check"), backup_keep_days=keep, retention_days=days)
        if valid:
            assert work.run(request, NOW, WALL).ok
        else:
            with pytest.raises(InvalidArgument) as refused:
                work.run(request, NOW, WALL)
            assert refused.value.field in ("backup_keep_days", *(f"retention_days[{r!r}]" for r in days))
            assert not (folder / "backups").exists()  # nothing done
    finally:
        db.close()


def test_settings_default_and_checked(tmp_path):
    rules = portfolio_store.RETENTION_RULES
    default = load_settings("portfolio", tmp_path, rules, {})
    assert default.backup_dir == tmp_path / "backups" / "portfolio" and default.backup_keep_days == 7
    assert [(rule.name, days) for rule, days in default.retention] == [("snapshots", 0)]
    chosen = load_settings("portfolio", tmp_path, rules, {"TRADER_BACKUP_DIR": "/srv/backups",
                                                          "TRADER_BACKUP_KEEP_DAYS": "30",
                                                          "TRADER_SNAPSHOT_RETENTION_DAYS": "3650"})
    assert chosen.backup_dir == Path("/srv/backups/portfolio") and chosen.backup_keep_days == 30
    assert chosen.retention[0][1] == 3650
    with pytest.raises(ConfigError) as caught:
        load_settings("portfolio", tmp_path, rules, {"TRADER_BACKUP_KEEP_DAYS": "0",
                                                     "TRADER_SNAPSHOT_RETENTION_DAYS": "1.5"})
    assert [p.split("=")[0] for p in caught.value.problems] == ["TRADER_BACKUP_KEEP_DAYS",
                                                                 "TRADER_SNAPSHOT_RETENTION_DAYS"]


def test_every_service_declares_its_rules_with_their_variables():
    for service, module in STORE_MODULES.items():
        for rule in module.RETENTION_RULES:
            assert rule.variable.startswith("TRADER_") and rule.variable.endswith("_DAYS"), (service, rule.name)
            assert rule.default_days >= 0


# --- PostgreSQL ---

@pytest.fixture
def postgres_portfolio(postgres):
    url = postgres.create_database("maintenance")
    db = portfolio_store.open_database(url)
    yield db, url
    db.close()


def test_postgresql_runs_what_it_has_and_names_what_to_use_instead(postgres_portfolio, tmp_path):
    db, _ = postgres_portfolio
    with db.transaction() as session:
        for day in (6, 7, 8, 9, 10):
            _snapshot(session, date(2018, 1, day))
    work = make_maintenance("portfolio", db, tmp_path)

    report = work.run(MaintenanceRequest(retention_days={"snapshots": 2}), NOW, WALL)

    parts = {p.name: p for p in report.parts}
    assert report.backend == "postgresql" and report.ok
    assert parts["backup"].status == SKIPPED and "pg_dump" in parts["backup"].detail
    assert parts["checkpoint"].status == SKIPPED and "checkpoints its write-ahead log" in parts["checkpoint"].detail
    assert parts["integrity_check"].status == SKIPPED and "CREATE EXTENSION amcheck" in parts["integrity_check"].detail
    assert parts["optimize"].status == OK and parts["optimize"].detail.startswith("VACUUM (ANALYZE) of ")
    assert parts["retention"].retention[0].deleted_rows == 4 and count(db, "snapshots") == 3
    assert not (tmp_path / "backups").exists()

    for part, rule, says in (("backup", "backup_unavailable", "pg_dump -Fc"),
                             ("checkpoint", "checkpoint_unavailable", "checkpoint_timeout"),
                             ("integrity_check", "integrity_check_unavailable", "amcheck")):
        with pytest.raises(FailedPrecondition, match=f"^{rule}: .*{says}"):
            work.run(MaintenanceRequest(parts=(part, "retention"), retention_days={"snapshots": 1}), NOW, WALL)
    assert count(db, "snapshots") == 3  # refused: nothing ran


def test_postgresql_integrity_check_with_amcheck(postgres_portfolio, tmp_path):
    db, url = postgres_portfolio
    with db.engine.connect() as connection:
        connection.execute(text("CREATE EXTENSION amcheck"))
        connection.commit()
        indexes = len([i for t in inspect(connection).get_table_names() for i in inspect(connection).get_indexes(t)])
    work = make_maintenance("portfolio", db, tmp_path)
    (part,) = work.run(MaintenanceRequest(parts=("integrity_check",)), NOW, WALL).parts
    assert part.status == OK and "found no problem in" in part.detail
    assert int(part.detail.split("found no problem in ")[1].split()[0]) >= indexes  # primary keys too


def test_restore_into_postgresql_is_refused_with_pg_restore(postgres_portfolio, tmp_path):
    _, url = postgres_portfolio
    with pytest.raises(RestoreRefused, match="pg_restore"):
        restore("portfolio", tmp_path / "any.db", url, WALL)


def test_postgresql_amcheck_without_the_right_to_run_it_says_what_to_grant(postgres, postgres_portfolio, tmp_path):
    if make_url(postgres.admin_url).host:
        pytest.skip("TRADER_TEST_POSTGRES_URL points elsewhere: this test knows the local cluster's rules")
    db, url = postgres_portfolio
    with db.engine.connect() as connection:
        connection.execute(text("CREATE EXTENSION amcheck"))
        connection.commit()
    role = postgres.create_role("no_amcheck", "pw-0123456789")
    as_role = make_url(url).set(host="127.0.0.1", username=role, password="pw-0123456789", query={})
    engine = create_engine(as_role)
    try:
        work = Maintenance(load_schema("portfolio"), SimpleNamespace(engine=engine),
                           load_settings("portfolio", tmp_path, portfolio_store.RETENTION_RULES, {}))
        with pytest.raises(FailedPrecondition, match=f"^integrity_check_unavailable: the role {role} may not run "
                                                     f"amcheck: GRANT EXECUTE ON FUNCTION bt_index_check"):
            work.run(MaintenanceRequest(parts=("integrity_check",)), NOW, WALL)
    finally:
        engine.dispose()


def test_a_service_with_a_wrong_maintenance_setting_does_not_start(tmp_path):
    env = {**os.environ, "TRADER_AUTH_DISABLED": "1", "TRADER_VAR_DIR": str(tmp_path), "TRADER_API_TOKEN": "",
           "TRADER_DISPLAY_ADDR": f"127.0.0.1:{free_port()}", "TRADER_BACKUP_KEEP_DAYS": "0",
           "TRADER_DISPLAY_MESSAGE_RETENTION_DAYS": "-1"}
    done = subprocess.run([sys.executable, "-m", "services.display"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "TRADER_BACKUP_KEEP_DAYS='0': must be between 1 and 100000" in done.stderr
    assert "TRADER_DISPLAY_MESSAGE_RETENTION_DAYS='-1': must be between 0 and 100000" in done.stderr
    assert not (tmp_path / "display.db").exists()  # refused before the database is opened


def test_a_failing_rule_does_not_stop_the_others(tmp_path):
    def broken(session, cutoff):
        session.execute(text("DELETE FROM no_such_table"))
        return 0

    rules = [maintenance.RetentionRule("broken", "a rule whose table is gone", "TRADER_BROKEN_DAYS", 1, broken),
             *gateway_store.RETENTION_RULES]
    db = open_service_db("gateway", tmp_path / "gateway.db")
    with db.transaction() as session:
        gateway_store.add_run(session, NOW, True, True, "0" * 32, [], WALL - timedelta(days=400))
    work = Maintenance(load_schema("gateway"), db, load_settings("gateway", tmp_path, rules, {}))
    part = retention(work)
    assert part.status == FAILED and part.detail == "deleted 1 rows; failed: broken"
    broken_result, runs, _job_runs = part.retention
    assert "no such table: no_such_table" in broken_result.detail and runs.deleted_rows == 1
    assert count(db, "cycle_runs") == 0
    db.close()


def test_a_damaged_database_is_restored_and_kept_aside(tmp_path):
    live = tmp_path / "gateway.db"
    db = open_service_db("gateway", live)
    with db.transaction() as session:
        for _ in range(300):
            gateway_store.add_run(session, NOW, True, True, "0" * 32, [{"detail": "x" * 500}], WALL)
    backup = backup_now(make_maintenance("gateway", db, tmp_path)).backup
    at_backup = dump(backup.path)
    with contextlib.closing(sqlite3.connect(live)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    corrupt(live)
    with contextlib.closing(sqlite3.connect(live)) as connection:
        assert maintenance.integrity_problems(connection)  # the damage a restore is for

    _, kept = restore("gateway", backup.path, f"sqlite:///{live}", WALL)

    assert dump(live) == at_backup
    assert kept.exists()  # what was there, for whoever wants to look at it
    live.write_bytes(b"garbage" * 1000)
    with pytest.raises(RestoreRefused, match="is not an SQLite database .* move it aside and restore again"):
        restore("gateway", backup.path, f"sqlite:///{live}", WALL)
