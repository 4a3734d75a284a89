"""`make run`'s launcher: starts everything, prints one line per cycle, stops cleanly."""

import os
import re
import signal
import subprocess
import sys

import pytest

from services.common.config import REPO_ROOT, SERVICES
from tests.helpers import free_port

pytestmark = pytest.mark.e2e
LINE = re.compile(r"^(\d{4}-\d{2}-\d{2})  value EUR +([\d,]+\.\d\d)  cash EUR +([\d,]+\.\d\d)  "
                  r"trade: (.+)  display: (.+)$")


def launcher_env(tmp_path, **extra):
    env = {**os.environ, "TRADER_VAR_DIR": str(tmp_path), "TRADER_REPLAY_CYCLES_PER_SECOND": "0", **extra}
    env.pop("TRADER_API_TOKEN", None)
    env.update({f"TRADER_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in SERVICES})
    return env


def test_replay_prints_a_line_per_cycle_and_stops(tmp_path):
    env = launcher_env(tmp_path, TRADER_REPLAY_MAX_CYCLES="3", TRADER_REPLAY_START="2019-03-01")
    done = subprocess.run([sys.executable, "-m", "gateway.launch"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    token = re.search(r"API token: (\S+)", out).group(1)
    assert f"authorization: Bearer {token}" in out and "trader.gateway.v1.Gateway/" in out
    lines = [LINE.match(line) for line in out.splitlines() if LINE.match(line)]
    assert [m.group(1) for m in lines] == ["2019-03-01", "2019-03-04", "2019-03-05"]
    assert lines[0].group(4).startswith("BUY ")  # 11,000 EUR arrive on day one and get invested
    assert lines[-1].group(5).startswith("EUR ")
    assert "all services stopped" in out


def test_sigterm_stops_the_launcher_and_every_service(tmp_path):
    env = launcher_env(tmp_path, TRADER_REPLAY_CYCLES_PER_SECOND="2")
    process = subprocess.Popen([sys.executable, "-m", "gateway.launch"], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if LINE.match(line.rstrip("\n")):
                break
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "all services stopped" in out
    for name in SERVICES:
        assert '"msg": "stopped"' in (tmp_path / "logs" / f"{name}.log").read_text(), name
