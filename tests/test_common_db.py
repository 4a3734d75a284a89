"""The database plumbing: a database URL that cannot be used is one clear line naming the
variable (exit code 2 from a service), never a traceback; timestamps come back in UTC on every
backend."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.engine import make_url

from services.common.config import REPO_ROOT
from services.common.db import DatabaseConfigError, UtcDateTime, open_engine, shown_url
from services.planner import store as planner_store
from tests.helpers import free_port


def problem(url: str, service: str = "planner") -> str:
    with pytest.raises(DatabaseConfigError) as caught:
        open_engine(service, url)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"TRADER_{service.upper()}_DB_URL=")
    return message


def test_an_unparsable_url():
    assert "not a database URL" in problem("var/planner.db")
    assert "expected e.g. sqlite:///" in problem("://nothing")


def test_an_unknown_driver():
    assert "unknown database driver 'nosuch'; this build supports sqlite and postgresql+psycopg" in \
        problem("nosuch://host/db")


def test_a_driver_that_is_not_installed():
    assert "the driver for 'mysql+mysqldb' is not installed (MySQLdb)" in problem("mysql+mysqldb://u@localhost/x")


def test_an_unreachable_server_and_the_password_stays_hidden():
    message = problem(f"postgresql+psycopg://trader:s3cret-pw@127.0.0.1:{free_port()}/trader", "trading")
    assert message.startswith("TRADER_TRADING_DB_URL=postgresql+psycopg://trader:***@127.0.0.1:")
    assert "cannot connect:" in message and "refused" in message and "s3cret-pw" not in message


def test_a_password_is_hidden_wherever_it_is_written():
    assert shown_url("postgresql://user:pa ss@host:nope/db") == "postgresql://user:***@host:nope/db"
    assert shown_url("postgresql+psycopg://u@h/db?sslmode=require&password=x1&port=5") == \
        "postgresql+psycopg://u@h/db?sslmode=require&password=***&port=5"
    assert shown_url("sqlite:////var/lib/trader:old@x/trading.db") == "sqlite:////var/lib/trader:old@x/trading.db"


def test_a_sqlite_folder_that_cannot_be_made():
    assert "cannot create the database's folder" in problem("sqlite:////proc/no/such/planner.db")


def test_a_missing_database(postgres):
    url = make_url(postgres.url("postgres")).set(database="trader_no_such_database").render_as_string(False)
    assert 'database "trader_no_such_database" does not exist' in problem(url)


def test_a_wrong_password(postgres):
    admin = make_url(postgres.admin_url)
    if admin.host:
        pytest.skip("TRADER_TEST_POSTGRES_URL points elsewhere: this test knows the local cluster's rules")
    url = admin.set(host="127.0.0.1", password="not-the-password", query={}).render_as_string(False)
    message = problem(url)
    assert "password authentication failed" in message and "not-the-password" not in message


def test_a_role_that_may_not_create_tables_is_a_configuration_error(postgres):
    """PostgreSQL 15 lets only the database owner create tables in `public`: a role without that
    right is told so at start, and nothing is changed."""
    admin = make_url(postgres.admin_url)
    if admin.host:
        pytest.skip("TRADER_TEST_POSTGRES_URL points elsewhere: this test knows the local cluster's rules")
    database = make_url(postgres.create_database("no_create")).database
    role = postgres.create_role("no_create", "pw-0123456789")
    url = admin.set(host="127.0.0.1", username=role, password="pw-0123456789", database=database,
                    query={}).render_as_string(False)
    with pytest.raises(DatabaseConfigError) as caught:
        planner_store.open_database(url)
    message = str(caught.value)
    assert message.startswith("TRADER_PLANNER_DB_URL=") and "\n" not in message and "pw-0123456789" not in message
    assert "cannot bring the schema to this build's revision (nothing was changed)" in message
    assert "permission denied for schema public" in message


def test_a_service_with_a_bad_database_url_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "TRADER_AUTH_DISABLED": "1", "TRADER_VAR_DIR": str(tmp_path),
           "TRADER_PLANNER_ADDR": f"127.0.0.1:{free_port()}",
           "TRADER_PLANNER_DB_URL": f"postgresql+psycopg://trader:pw@127.0.0.1:{free_port()}/trader"}
    done = subprocess.run([sys.executable, "-m", "services.planner"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("trader-planner: TRADER_PLANNER_DB_URL=postgresql+psycopg://trader:***@")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_the_default_sqlite_database_opens(tmp_path):
    planner_store.open_database(f"sqlite:///{tmp_path / 'new' / 'planner.db'}").close()
    assert (tmp_path / "new" / "planner.db").exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_times_come_back_in_utc_whatever_the_session_time_zone(backend, tmp_path, request):
    if backend == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    else:
        url = request.getfixturevalue("postgres").create_database("utc")
        engine = create_engine(url, connect_args={"options": "-c timezone=Asia/Tokyo"})
    table = Table("times", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime()))
    written = datetime(2018, 1, 3, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    try:
        table.create(engine)
        with engine.begin() as connection:
            connection.execute(insert(table).values(id=1, at=written))
            read = connection.execute(select(table.c.at)).scalar_one()
        assert read == written and read.tzinfo == UTC and read.date().isoformat() == "2018-01-04"
        with pytest.raises(Exception, match="naive datetime"), engine.begin() as connection:
            connection.execute(insert(table).values(id=2, at=datetime(2018, 1, 3)))
    finally:
        engine.dispose()
