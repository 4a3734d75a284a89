"""`make run`'s launcher: starts everything, prints one line per cycle, stops cleanly."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.launch import STOP_TIMEOUT_S
from services.common.config import REPO_ROOT, SERVICES
from tests.launcher import LINE, Launcher, cycle_day, cycle_ok, launcher_env

pytestmark = pytest.mark.e2e


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


# --- supervision and shutdown under faults (issue 9) ---

def test_a_killed_service_is_restarted_and_the_replay_loses_no_day(tmp_path):
    launcher = Launcher(launcher_env(tmp_path, TRADER_REPLAY_CYCLES_PER_SECOND="4",
                                     TRADER_REPLAY_START="2019-03-01"))
    try:
        launcher.until(lambda line: cycle_day(line) is not None)
        os.kill(launcher.children()["trading"], signal.SIGKILL)
        launcher.until(lambda line: line.startswith("trading killed by SIGKILL; restarting it in"))
        launcher.until(lambda line: line.startswith("trading restarted"))
        launcher.until(lambda line: line.startswith("trading serving again"))
        after = len(launcher.seen)
        # Recovery: within two cycles of trading reporting SERVING, a cycle is ok again.
        for _ in range(3):
            launcher.until(lambda line: cycle_day(line) is not None)
        recovered = [line for line in launcher.seen[after:] if cycle_day(line)]
        assert any(cycle_ok(line) for line in recovered[:2]), "\n".join(launcher.seen[-20:])
        for _ in range(3):
            launcher.until(lambda line: cycle_day(line) is not None and cycle_ok(line))
        # No simulated day was skipped: each day whose cycle failed was tried again until ok.
        days = [(cycle_day(line), cycle_ok(line)) for line in launcher.seen if cycle_day(line)]
        ok_days = [day for day, ok in days if ok]
        assert all(day in ok_days for day, _ in days)
        assert ok_days == sorted(set(ok_days))
    finally:
        launcher.close()


def test_a_burst_of_sigterms_stops_everything_within_the_grace_period(tmp_path):
    launcher = Launcher(launcher_env(tmp_path, TRADER_REPLAY_CYCLES_PER_SECOND="4"))
    try:
        launcher.until(lambda line: cycle_day(line) is not None)
        children = launcher.children()
        assert set(children) == {"gateway", "data", "portfolio", "planner", "trading", "display"}
        for _ in range(8):  # within a millisecond
            os.kill(launcher.process.pid, signal.SIGTERM)
        # Each of the two stop phases (gateway, then services) has STOP_TIMEOUT_S at most.
        assert launcher.process.wait(timeout=2 * STOP_TIMEOUT_S + 5) == 0
        launcher.until(lambda line: line == "all services stopped", timeout_s=5)
        assert not [line for line in launcher.seen if "killing it" in line]
        for name, pid in children.items():
            assert zombie(pid), f"{name} still runs"
            assert '"msg": "stopped"' in (tmp_path / "logs" / f"{name}.log").read_text(), name
    finally:
        launcher.close()


def test_a_killed_launcher_leaves_no_orphans(tmp_path):
    launcher = Launcher(launcher_env(tmp_path, TRADER_REPLAY_CYCLES_PER_SECOND="4"))
    try:
        launcher.until(lambda line: cycle_day(line) is not None)
        children = launcher.children()
        assert len(children) == 6
        launcher.process.kill()  # SIGKILL: the launcher cannot stop anything itself
        launcher.process.wait()
        # Each child gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and stops gracefully.
        deadline = time.monotonic() + 2 * STOP_TIMEOUT_S + 10
        while time.monotonic() < deadline and not all(zombie(pid) for pid in children.values()):
            time.sleep(0.2)
        left = {name: pid for name, pid in children.items() if not zombie(pid)}
        assert not left, f"orphans: {left}"
        for name in children:
            assert '"msg": "stopped"' in (tmp_path / "logs" / f"{name}.log").read_text(), name
    finally:
        launcher.close()


def zombie(pid: int) -> bool:
    """True when `pid` no longer runs: gone, or exited and not yet reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_a_replay_started_again_after_the_end_of_the_history_says_so_and_exits_0(tmp_path):
    env = launcher_env(tmp_path, TRADER_REPLAY_START="2022-12-27")
    for _ in range(2):  # the second start finds nothing left to replay
        done = subprocess.run([sys.executable, "-m", "gateway.launch"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, (done.stdout, done.stderr)
    assert "it already reached the end of the history; rm -rf var starts over" in done.stdout
    assert "startup failed" not in done.stdout + done.stderr


def test_a_second_launcher_on_the_same_state_directory_is_refused(tmp_path):
    from gateway.launch import hold_state_lock  # noqa: PLC0415

    held = hold_state_lock(tmp_path)  # as a running `trader run` holds it
    assert held is not None and hold_state_lock(tmp_path) is None
    done = subprocess.run([sys.executable, "-m", "gateway.launch"], cwd=REPO_ROOT, env=launcher_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"another `trader run` is using {tmp_path}" in done.stderr
    assert "serving on" not in done.stdout and not list(tmp_path.glob("*.db"))  # nothing started or opened
    held.close()
    again = hold_state_lock(tmp_path)  # released with its holder (the kernel releases it if the holder dies)
    assert again is not None
    again.close()
