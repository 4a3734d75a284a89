import pytest

from tests.suite import Suite


@pytest.fixture(scope="session")
def running_suite(tmp_path_factory):
    """The six services as processes, shared by the tests that only call them."""
    suite = Suite(tmp_path_factory.mktemp("suite"), {"TRADER_DISPLAY_SERIAL": "emulator"}).start()
    yield suite
    suite.terminate()
