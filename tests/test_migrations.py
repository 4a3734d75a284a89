"""Alembic migrations per service, on SQLite and PostgreSQL: the models and the migrations agree,
databases written by the last build before Alembic upgrade in place and keep their rows, what a
build cannot use is refused untouched, a failed migration leaves nothing behind, and a new
revision is written by autogenerate."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, create_engine, inspect, select, text

from gateway import store as gateway_store
from services.common import db as common_db
from services.common.config import REPO_ROOT
from services.common.db import Database, SchemaMismatch, make_engine
from services.common.migrations import STORES, differences, load_schema, migrate, new_revision, scripts
from services.data import store as data_store
from services.display import store as display_store
from services.planner import store as planner_store
from services.portfolio import store as portfolio_store
from services.portfolio.valuation import Holding
from services.trading import store as trading_store

RELEASE = Path(__file__).parent / "fixtures" / "release_e46d249"
AT = datetime(2018, 1, 3, 22, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request, tmp_path):
    """name -> the URL of a new empty database on the backend."""
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name}.db"
    return request.getfixturevalue("postgres").create_database


def load_release(url: str, service: str) -> None:
    """Fill an empty database from the dump of what the release wrote (tests/fixtures)."""
    backend = "sqlite" if url.startswith("sqlite") else "postgresql"
    sql = (RELEASE / f"{service}.{backend}.sql").read_text()
    if backend == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.executescript(sql)
        return
    engine = create_engine(url)
    connection = engine.raw_connection()  # the dump is many statements, without parameters
    try:
        connection.cursor().execute(sql)
        connection.commit()
    finally:
        connection.close()
        engine.dispose()


def table_rows(url: str, tables: set[str], columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of `tables`; with `columns`, only those columns of each table (a later revision
    may add columns: the release's own values must survive)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            metadata = MetaData()
            metadata.reflect(connection, only=sorted(tables))
            return {name: sorted(connection.execute(select(*(table.c[c] for c in columns[name]) if columns
                                                            else (table,))).all(), key=repr)
                    for name, table in metadata.tables.items()}
    finally:
        engine.dispose()


def table_columns(url: str, tables: set[str]) -> dict[str, list[str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            metadata = MetaData()
            metadata.reflect(connection, only=sorted(tables))
            return {name: [c.name for c in table.columns] for name, table in metadata.tables.items()}
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", list(STORES))
def test_models_and_migrations_agree(service, new_database):
    schema = load_schema(service)
    engine = make_engine(new_database(service))
    try:
        assert differences(schema, engine) == []
    finally:
        engine.dispose()


def test_differences_finds_a_model_change():
    schema = load_schema("planner")
    changed = MetaData()
    for table in schema.metadata[0].tables.values():
        table.to_metadata(changed)
    changed.tables["plans"].append_column(Column("note", String(40), nullable=True))
    found = differences(replace(schema, metadata=(changed,)))
    assert [(op[0], op[2], op[3].name) for op in found] == [("add_column", "plans", "note")]


@pytest.mark.parametrize("service", list(STORES))
def test_each_history_is_one_line_of_the_service_own_revisions(service):
    script = scripts(load_schema(service))
    revisions = list(script.walk_revisions())
    assert len(script.get_heads()) == 1, "two revisions share a parent: re-parent the newer one"
    assert [r.revision for r in reversed(revisions)] == [f"{service}_{n:04d}" for n in range(1, len(revisions) + 1)]
    assert all(r.down_revision == (revisions[i + 1].revision if i + 1 < len(revisions) else None)
               for i, r in enumerate(revisions))


# What the store reads from each release database after the upgrade (the rows make.py wrote).
READS = {
    "data": lambda s: (data_store.find_security(s, "AAPL.US").isin,
                       len(data_store.daily_bars(s, data_store.find_security(s, "AAPL.US").id, None, date.max))),
    "portfolio": lambda s: (portfolio_store.holdings(s), portfolio_store.broker_synced_at(s)),
    "planner": lambda s: planner_store.find_plan(s, "0123456789abcdef", "2018-01-03")[0],
    "trading": lambda s: (trading_store.find_order(s, "fixture-order-1").state,
                          trading_store.last_trade_at(s, "AAPL.US", "BUY", AT)),
    "display": lambda s: display_store.settings(s),
    "gateway": lambda s: (gateway_store.run_count(s), gateway_store.last_run(s).as_of),
}
EXPECTED = {
    "data": ("US0378331005", 3),
    "portfolio": ([Holding("AAPL.US", 10, 172.26, "USD")], AT),
    "planner": "plan-1",
    "trading": ("FILLED", AT),
    "display": (42, 120),
    "gateway": (1, AT),
}
# A write after the upgrade: keys (and sequences, on PostgreSQL) carry on from the release's rows.
WRITES = {
    "data": lambda s: data_store.save_fx_rate(s, "USD", AT.date().replace(day=4), 1.2, "ECB"),
    "portfolio": lambda s: portfolio_store.add_cash_flow(s, "deposit", 500.0, "EUR", "after-upgrade", AT).id,
    "planner": lambda s: planner_store.save_plan(s, "fedcba9876543210", "2018-01-04", "plan-2", {}, AT),
    "trading": lambda s: trading_store.record_execution(s, trading_store.Execution(
        "MANUAL-2", "outside-2", "MSFT.US", "SELL", 3, 86.0, "USD", 1.0, AT), AT),
    "display": lambda s: display_store.save_settings(s, 50, 60),
    "gateway": lambda s: gateway_store.add_run(s, AT, True, False, "0" * 32, [], AT),
}


@pytest.mark.parametrize("service", list(STORES))
def test_a_release_database_upgrades_in_place_and_keeps_its_rows(service, new_database):
    url = new_database(f"release_{service}")
    load_release(url, service)
    schema = load_schema(service)
    release_tables = table_names(url) - {"schema_info"}
    release_columns = table_columns(url, release_tables)
    before = table_rows(url, release_tables)

    db = Database(url, schema)
    try:
        with db.engine.connect() as connection:
            assert connection.execute(text(f"SELECT version_num FROM {schema.version_table}")).scalar_one() == \
                scripts(schema).get_current_head()
        assert "schema_info" not in table_names(url)
        assert table_rows(url, release_tables, release_columns) == before
        assert differences(schema, db.engine) == []
        with db.transaction() as session:
            assert READS[service](session) == EXPECTED[service]
            WRITES[service](session)
        assert migrate(db.engine, schema) == (scripts(schema).get_current_head(),) * 2  # the next start: nothing
    finally:
        db.close()


def test_an_older_pre_alembic_version_takes_the_legacy_steps(new_database):
    """A trading database at schema_info version 2 (before broker references) is brought to
    version 4 by the legacy steps, then adopted; the step's backfill ran."""
    url = new_database("trading_v2")
    load_release(url, "trading")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_orders_broker_reference"))
        connection.execute(text("ALTER TABLE orders DROP COLUMN broker_reference"))
        connection.execute(text("DROP TABLE cash_movements"))
        connection.execute(text("UPDATE schema_info SET version = 2"))
    engine.dispose()
    db = trading_store.open_database(url)
    try:
        with db.transaction() as session:
            assert trading_store.find_order(session, "86506576399624069").client_order_id == "fixture-order-1"
        assert differences(trading_store.SCHEMA, db.engine) == []
    finally:
        db.close()


def refused(url: str, schema) -> str:
    with pytest.raises(SchemaMismatch) as caught:
        Database(url, schema)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"TRADER_{schema.service.upper()}_DB_URL=")
    return message


def test_a_database_from_a_newer_build_is_refused_untouched(new_database):
    url = new_database("newer")
    Database(url, planner_store.SCHEMA).close()
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version_planner SET version_num = 'planner_9999'"))
    engine.dispose()
    before = table_rows(url, table_names(url))
    message = refused(url, planner_store.SCHEMA)
    assert "'planner_9999'" in message and "newer build" in message
    assert table_rows(url, table_names(url)) == before


def test_a_newer_pre_alembic_version_is_refused(new_database):
    url = new_database("newer_legacy")
    load_release(url, "trading")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE schema_info SET version = 5"))
    engine.dispose()
    assert "schema_info version 5" in refused(url, trading_store.SCHEMA)
    assert "schema_info" in table_names(url) and "alembic_version_trading" not in table_names(url)


def test_tables_without_any_version_are_refused(new_database):
    url = new_database("foreign")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE plans (x INTEGER)"))
    engine.dispose()
    assert "holds the tables plans but no planner schema version" in refused(url, planner_store.SCHEMA)


def test_a_service_process_migrates_in_a_child_and_keeps_no_alembic_loaded(new_database):
    """run_service's way (db.migrate_in_child_processes): the schema reaches head, the child logs
    as the service, and the service's process never imports Alembic."""
    url = new_database("child")
    code = ("import sys; from services.common import db, logs; logs.setup_logging('trading'); "
            "db.migrate_in_child_processes(); "
            "from services.trading import store; store.open_database(sys.argv[1]).close(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))")
    done = subprocess.run([sys.executable, "-c", code, url], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]" and '"msg": "database migrated"' in done.stderr
    engine = make_engine(url)
    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version_trading")).scalar_one()
    engine.dispose()
    assert revision == scripts(trading_store.SCHEMA).get_current_head()


def test_a_migration_in_a_child_refuses_as_in_process(new_database, monkeypatch):
    monkeypatch.setattr(common_db, "_migrate_in_child", True)
    url = new_database("foreign_child")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE plans (x INTEGER)"))
    engine.dispose()
    assert "holds the tables plans but no planner schema version" in refused(url, planner_store.SCHEMA)


def next_planner_revision() -> tuple[str, str]:
    """(the planner's head revision, the id of the one after it)."""
    head = scripts(planner_store.SCHEMA).get_current_head()
    return head, f"planner_{int(head.split('_')[1]) + 1:04d}"


def test_a_failing_migration_leaves_nothing_behind(new_database, tmp_path):
    """Every revision runs in one transaction: the baseline's tables go when the next one fails."""
    versions = tmp_path / "versions"
    shutil.copytree(planner_store.SCHEMA.versions, versions)
    head, following = next_planner_revision()
    (versions / f"{following}_fails.py").write_text(
        f'import sqlalchemy as sa\nfrom alembic import op\n\nrevision = "{following}"\n'
        f'down_revision = "{head}"\n\n\ndef upgrade():\n'
        '    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))\n'
        '    op.execute("INSERT INTO plans VALUES (\'h\', \'2018-01-02\', \'p\', \'{}\', CURRENT_TIMESTAMP)")\n'
        '    raise RuntimeError("a step that fails")\n')
    url = new_database("failing")
    with pytest.raises(RuntimeError, match="a step that fails"):
        Database(url, replace(planner_store.SCHEMA, versions=versions))
    assert table_names(url) == set()


def test_services_sharing_one_database_keep_their_own_versions(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with sqlite3.connect(tmp_path / "shared.db") as connection:
        for service in ("planner", "gateway"):
            connection.executescript((RELEASE / f"{service}.sqlite.sql").read_text()
                                     .replace("CREATE TABLE schema_info", "CREATE TABLE IF NOT EXISTS schema_info"))
    Database(url, planner_store.SCHEMA).close()
    assert {"schema_info", "alembic_version_planner"} <= table_names(url)  # the gateway's row is left
    Database(url, gateway_store.SCHEMA).close()
    assert table_names(url) == planner_store.SCHEMA.tables | gateway_store.SCHEMA.tables | {
        "alembic_version_planner", "alembic_version_gateway"}


def test_a_new_revision_is_autogenerated_and_applies(tmp_path, new_database):
    """`make migration`: a model change becomes the next revision, which upgrades a release database."""
    versions = tmp_path / "versions"
    shutil.copytree(planner_store.SCHEMA.versions, versions)
    schema = replace(planner_store.SCHEMA, versions=versions)
    assert new_revision(schema, "nothing changed") is None

    changed = MetaData()
    for table in schema.metadata[0].tables.values():
        table.to_metadata(changed)
    changed.tables["plans"].append_column(Column("note", String(40), nullable=True))
    schema = replace(schema, metadata=(changed,))
    head, following = next_planner_revision()
    path = new_revision(schema, "plans get a note")
    assert path.name == f"{following}_plans_get_a_note.py"
    written = path.read_text()
    assert f'revision: str = "{following}"' in written and f'down_revision: str | None = "{head}"' in written
    assert 'batch_op.add_column(sa.Column("note", sa.String(length=40), nullable=True))' in written

    url = new_database("with_note")
    load_release(url, "planner")
    db = Database(url, schema)
    try:
        assert differences(schema, db.engine) == []
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT plan_id, note FROM plans")).all() == [("plan-1", None)]
    finally:
        db.close()
    after = f"planner_{int(following.split('_')[1]) + 1:04d}"
    assert new_revision(schema, "a data step", empty=True).name == f"{after}_a_data_step.py"
