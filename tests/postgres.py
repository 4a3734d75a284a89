"""A PostgreSQL server for tests: throwaway databases (one unique prefix per test run, dropped at
the end) on the machine's installed cluster, started when it is stopped.

TRADER_TEST_POSTGRES_URL (an SQLAlchemy URL of a maintenance database, with a role allowed to
create databases) uses another server instead. Where no server can be reached or started the
tests that need one are skipped with the reason, unless TRADER_REQUIRE_POSTGRES=1 (CI), which
makes that a failure.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import subprocess

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

SOCKET_DIR = "/var/run/postgresql"


class Unavailable(Exception):
    """Why no PostgreSQL server can be used here."""


class Postgres:
    """Creates databases on one server; `drop_all` removes every one it made."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.prefix = f"trader_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.created: list[str] = []
        self.roles: list[str] = []
        self._admin: Engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """A new empty database `<prefix>_<n>_<name>`; returns its SQLAlchemy URL."""
        database = f"{self.prefix}_{len(self.created)}_{name}"[:63]
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        self.created.append(database)
        return self.url(database)

    def create_role(self, name: str, password: str) -> str:
        """A new login role `<prefix>_<name>` with only the rights every role has; returns its name."""
        role = f"{self.prefix}_{name}"[:63]
        with self._admin.connect() as connection:
            connection.execute(text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
        self.roles.append(role)
        return role

    def drop_all(self) -> None:
        with self._admin.connect() as connection:
            for database in self.created:
                # FORCE: a service killed mid-test may have left a connection open
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            for role in self.roles:
                connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        self.created.clear()
        self.roles.clear()
        self._admin.dispose()


def start_postgres() -> Postgres:
    """The server to test against, started if needed; raises Unavailable saying why not."""
    url = os.environ.get("TRADER_TEST_POSTGRES_URL") or _local_cluster_url()
    try:
        server = Postgres(url)
        with server._admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        raise Unavailable(f"cannot connect to {make_url(url).render_as_string()}: "
                          f"{' '.join(str(exc.orig).split())}") from None
    return server


def _local_cluster_url() -> str:
    """The installed Debian cluster (pg_lsclusters), started when down, with a superuser role
    for the current user (created through the postgres account when it is missing)."""
    if shutil.which("pg_lsclusters") is None:
        raise Unavailable("PostgreSQL is not installed (no pg_lsclusters; Debian: apt-get install postgresql), "
                          "and TRADER_TEST_POSTGRES_URL is not set")
    clusters = _run(["pg_lsclusters", "--no-header"]).splitlines()
    if not clusters:
        raise Unavailable("pg_lsclusters lists no PostgreSQL cluster")
    version, name, port, status = clusters[0].split()[:4]
    if status != "online":
        _run(["pg_ctlcluster", version, name, "start"])
    user = getpass.getuser()
    url = f"postgresql+psycopg://{user}@/postgres?host={SOCKET_DIR}&port={port}"
    probe = create_engine(url)
    try:
        with probe.connect():
            pass
    except DBAPIError as exc:
        if "does not exist" not in str(exc.orig) or user == "postgres":
            raise Unavailable(f"cannot connect to the local cluster {version}/{name} as {user}: "
                              f"{' '.join(str(exc.orig).split())}") from None
        if os.geteuid() != 0:
            raise Unavailable(f"the local cluster {version}/{name} has no role {user!r}, and only root can "
                              f"create it (as postgres: createuser --superuser {user})") from None
        _run(["runuser", "-u", "postgres", "--", "createuser", "--port", port, "--superuser", user])
    finally:
        probe.dispose()
    return url


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{' '.join(command)}: {exc}") from None
    if done.returncode != 0:
        raise Unavailable(f"{' '.join(command)} failed ({done.returncode}): "
                          f"{' '.join((done.stderr or done.stdout).split())}")
    return done.stdout
