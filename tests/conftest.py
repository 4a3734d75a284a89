import os

import pytest

from tests.postgres import Unavailable, start_postgres
from tests.suite import Suite


@pytest.fixture(scope="session")
def running_suite(tmp_path_factory):
    """The six services as processes, shared by the tests that only call them."""
    suite = Suite(tmp_path_factory.mktemp("suite"), {"TRADER_DISPLAY_SERIAL": "emulator"}).start()
    yield suite
    suite.terminate()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server (tests/postgres.py): skipped with the reason where none can be started,
    a failure instead under TRADER_REQUIRE_POSTGRES=1."""
    try:
        server = start_postgres()
    except Unavailable as exc:
        if os.environ.get("TRADER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (TRADER_REQUIRE_POSTGRES=1) but unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.drop_all()
