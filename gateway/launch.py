"""`make run`: start the five services and the gateway (with its replay driver) as processes.

Prints the API token and a grpcurl example, waits until every service reports SERVING, then
passes the gateway's one-line-per-cycle output through. Ctrl-C or SIGTERM stops everything:
each child gets SIGTERM (health NOT_SERVING, graceful stop) and is killed if it lingers.
Service logs (JSON lines) go to var/logs/<service>.log.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from services.common.client import health_status
from services.common.config import REPO_ROOT, SERVICES, ConfigError, load_common

START_ORDER = ("data", "portfolio", "planner", "trading", "display")
STARTUP_TIMEOUT_S = 120
STOP_TIMEOUT_S = 10


def module_of(service: str) -> str:
    return "gateway" if service == "gateway" else f"services.{service}"


def wait_serving(address: str, service_name: str, process: subprocess.Popen, deadline: float) -> None:
    with grpc.insecure_channel(address) as channel:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{service_name} exited with code {process.returncode}")
            if health_status(channel, service_name) == "SERVING":
                return
            time.sleep(0.2)
    raise RuntimeError(f"{service_name} did not report SERVING within {STARTUP_TIMEOUT_S} s")


def stop_all(processes: dict[str, subprocess.Popen]) -> None:
    for process in reversed(list(processes.values())):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", file=sys.stderr)
            process.kill()
            process.wait()


def main() -> int:
    env = dict(os.environ)
    env.setdefault("TRADER_API_TOKEN", secrets.token_urlsafe(24))
    env.setdefault("TRADER_REPLAY_AUTOSTART", "1")
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env.setdefault("TRADER_DISPLAY_SERIAL", "emulator")  # frames in var/display/matrix.png
    try:
        config = load_common("gateway", env)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    log_dir = Path(env.get("TRADER_VAR_DIR", REPO_ROOT / "var")) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    token = env["TRADER_API_TOKEN"]
    print(f"mode {config.mode}; API token: {token}")
    print("call any service, e.g.:\n  grpcurl -plaintext -H 'authorization: Bearer " + token + "' "
          f"{config.address_of('gateway')} trader.gateway.v1.Gateway/GetSystemStatus")
    print(f"logs: {log_dir}/<service>.log; Ctrl-C stops everything", flush=True)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name in START_ORDER + ("gateway",):
            log_file = open(log_dir / f"{name}.log", "a")  # noqa: SIM115 - owned by the child
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", module_of(name)], cwd=REPO_ROOT, env=env,
                stdout=None if name == "gateway" else log_file, stderr=log_file,
                start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the children in order
            )
            wait_serving(config.address_of(name), SERVICES[name][0], processes[name],
                         time.monotonic() + STARTUP_TIMEOUT_S)
            print(f"{name:<10} serving on {config.address_of(name)}", flush=True)
        while not stop.is_set() and processes["gateway"].poll() is None:
            stop.wait(0.5)
        return 0
    except RuntimeError as exc:
        print(f"startup failed: {exc}; see {log_dir}", file=sys.stderr)
        return 1
    finally:
        stop_all(processes)
        print("all services stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
