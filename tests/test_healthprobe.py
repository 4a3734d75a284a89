"""The listen address (TRADER_LISTEN_HOST) and the container health probe, against a real server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.common.config import REPO_ROOT, ConfigError, load_common
from services.common.healthprobe import main, probe_address, service_in_command_line
from tests.helpers import TOKEN, free_port, serving


def test_listen_host_keeps_the_port_and_leaves_the_peers_alone():
    config = load_common("data", {"TRADER_API_TOKEN": TOKEN, "TRADER_LISTEN_HOST": "0.0.0.0",
                                  "TRADER_DATA_ADDR": "trader-data:50061"})
    assert config.listen_address == "0.0.0.0:50061"
    assert config.address_of("data") == "trader-data:50061"
    assert config.address_of("gateway") == "127.0.0.1:50050"


def test_without_listen_host_the_service_listens_on_its_address():
    config = load_common("data", {"TRADER_API_TOKEN": TOKEN, "TRADER_DATA_ADDR": "10.1.2.3:50061"})
    assert config.listen_address == "10.1.2.3:50061"


@pytest.mark.parametrize("host", ["0.0.0.0:50051", "http://0.0.0.0", "a b", "[::"])
def test_bad_listen_host_is_refused(host):
    with pytest.raises(ConfigError) as caught:
        load_common("data", {"TRADER_API_TOKEN": TOKEN, "TRADER_LISTEN_HOST": host})
    [problem] = caught.value.problems
    assert problem.startswith("TRADER_LISTEN_HOST=")


@pytest.mark.parametrize(("argv", "service"), [
    (["/opt/trader/venv/bin/python", "-m", "services.data"], "data"),
    (["python", "-m", "gateway"], "gateway"),
    (["/usr/bin/tini", "--", "/opt/trader/entrypoint.sh", "trading"], "trading"),
    (["python", "-m", "services.common.healthprobe"], None),
    (["python", "-m", "gateway.launch"], None),
    ([""], None),
])
def test_the_service_is_read_from_the_main_command_line(argv, service):
    assert service_in_command_line(argv) == service


def test_probe_address_uses_the_loopback_for_a_wildcard_listener():
    assert probe_address("trading", {"TRADER_LISTEN_HOST": "0.0.0.0", "TRADER_TRADING_ADDR": "trading:50054"}) \
        == "127.0.0.1:50054"
    assert probe_address("trading", {"TRADER_LISTEN_HOST": "[::]"}) == "[::1]:50054"
    assert probe_address("trading", {"TRADER_TRADING_ADDR": "10.0.0.7:6000"}) == "10.0.0.7:6000"
    with pytest.raises(ConfigError):
        probe_address("trading", {"TRADER_TRADING_ADDR": "nowhere"})


def test_probe_follows_the_service_health(capsys):
    port = free_port()
    environ = {"TRADER_API_TOKEN": TOKEN, "TRADER_LISTEN_HOST": "0.0.0.0", "TRADER_TRADING_ADDR": f"trading:{port}"}
    config = load_common("trading", environ)
    with serving(config, lambda server: None) as running:
        assert main(["trading"], environ) == 0
        assert f"trader.trading.v1.Trading at 127.0.0.1:{port}: SERVING" in capsys.readouterr().out
        running.set_serving(False)
        assert main(["trading"], environ) == 1
        assert main(["trading", "--alive"], environ) == 0  # answers: alive, though not serving
    capsys.readouterr()
    assert main(["trading", "--alive", "--timeout", "0.5"], environ) == 1  # nobody answers
    assert capsys.readouterr().out.rstrip().endswith((": UNAVAILABLE", ": DEADLINE_EXCEEDED"))


def test_probe_command_line(tmp_path):
    port = free_port()
    config = load_common("data", {"TRADER_API_TOKEN": TOKEN, "TRADER_DATA_ADDR": f"127.0.0.1:{port}"})
    with serving(config, lambda server: None):
        done = subprocess.run([sys.executable, "-m", "services.common.healthprobe", "data",
                               "--address", f"127.0.0.1:{port}"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"trader.data.v1.MarketData at 127.0.0.1:{port}: SERVING"
