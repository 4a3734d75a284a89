"""Shutdown cannot hang (issue 9): a burst of signals only raises a flag, a service stops within
its grace period, and a service dies with the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.launch import wait_serving
from services.common.config import REPO_ROOT, SERVICES, load_common
from services.common.server import start_server
from services.common.shutdown import PARENT_PID_VARIABLE, StopRequest
from tests.helpers import free_port

BURST = 8
GRACE_S = 3.0


def burst(pid: int, signum: int = signal.SIGTERM) -> None:
    """BURST signals back to back (well within a millisecond)."""
    for _ in range(BURST):
        os.kill(pid, signum)


def gone(pid: int) -> bool:
    """True when `pid` no longer runs (exited, or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def test_a_thread_can_raise_the_request():
    stop = StopRequest()
    assert not stop.wait(0.01)
    stop.request("replay finished")
    assert stop.wait() and stop.reason == "replay finished"


def test_a_burst_of_signals_raises_the_request_once():
    script = textwrap.dedent("""
        import sys
        from services.common.shutdown import StopRequest
        stop = StopRequest()
        stop.install()
        print("ready", flush=True)
        stop.wait()
        print("stopping on", stop.reason, flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        burst(process.pid)
        out, _ = process.communicate(timeout=GRACE_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and out.strip() == "stopping on SIGTERM"


def service_env(tmp_path, **extra) -> tuple[dict[str, str], str]:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "TRADER_DISPLAY_ADDR": address, "TRADER_AUTH_DISABLED": "1", "TRADER_VAR_DIR": str(tmp_path),
           "TRADER_SHUTDOWN_GRACE_S": str(GRACE_S), "GRPC_VERBOSITY": "ERROR", **extra}
    env.pop("TRADER_API_TOKEN", None)
    return env, address


def test_a_service_stops_within_its_grace_period_under_a_burst_of_signals(tmp_path):
    env, address = service_env(tmp_path)
    log = open(tmp_path / "display.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "services.display"], cwd=REPO_ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_serving(address, SERVICES["display"][0], process, time.monotonic() + 60)
        burst(process.pid)
        assert process.wait(timeout=GRACE_S + 5) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    lines = (tmp_path / "display.log").read_text()
    assert lines.count('"msg": "stopping"') == 1 and '"msg": "stopped"' in lines


def test_a_service_dies_with_the_process_that_started_it(tmp_path):
    env, address = service_env(tmp_path)
    # A stand-in for the launcher: starts the service as the launcher does, then waits to be killed.
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, time
        env = dict(os.environ, {PARENT_PID_VARIABLE}=str(os.getpid()))
        child = subprocess.Popen([sys.executable, "-m", "services.display"], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(child.pid, flush=True)
        time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               text=True)
    child = int(process.stdout.readline())
    try:
        wait_serving(address, SERVICES["display"][0], process, time.monotonic() + 60)
        process.kill()  # SIGKILL: the parent cannot stop its child itself
        process.wait()
        assert wait_gone(child, GRACE_S + 5), "the service outlived the process that started it"
    finally:
        if not gone(child):
            os.kill(child, signal.SIGKILL)


def test_a_second_server_on_a_port_in_use_fails_to_bind_instead_of_sharing_it(tmp_path):
    env = {"TRADER_AUTH_DISABLED": "1", "TRADER_VAR_DIR": str(tmp_path),
           "TRADER_DISPLAY_ADDR": f"127.0.0.1:{free_port()}"}
    config = load_common("display", env)
    first = start_server(config, lambda server: None)
    try:
        with pytest.raises(Exception, match="bind|address|port"):  # gRPC's wording varies by version
            start_server(config, lambda server: None).server.stop(0)
    finally:
        first.server.stop(0)
