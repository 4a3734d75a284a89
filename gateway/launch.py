"""`make run`: start the five services and the gateway (with its replay driver, or in paper
and live mode its scheduler) as processes, and keep them running.

Prints the API token and a grpcurl example, waits until every service reports SERVING, then
passes the gateway's one-line-per-cycle output through. Supervision (as compose's `restart:`
or Kubernetes would): a service that exits on its own is logged and restarted after a back-off
(0.5 s, doubling up to 30 s; reset once it has run for a minute). When the gateway exits by
itself with code 0 the replay is over and everything stops; with REPLAY_GAVE_UP_EXIT its replay
gave up: everything stops and the launcher exits 1. One launcher at a time uses a state
directory: a second is refused (exit 1) while the first holds `<var>/run.lock`. Ctrl-C or SIGTERM stops everything:
the gateway first, then the services, each with SIGTERM (health NOT_SERVING, graceful stop),
killed if it lingers. Any number of signals at any time only raise a flag (no deadlock). The
children die with the launcher even if it is killed (PR_SET_PDEATHSIG, services/common/shutdown.py).
Service logs (JSON lines) go to var/logs/<service>.log.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gateway.replay import REPLAY_GAVE_UP_EXIT
from services.common.client import health_status, raw_channel
from services.common.config import (
    REPO_ROOT,
    SERVICES,
    TLS_CA,
    TLS_CERT,
    TLS_CLIENT_CERT,
    TLS_CLIENT_KEY,
    TLS_KEY,
    ClientTls,
    CommonConfig,
    ConfigError,
    load_common,
)
from services.common.shutdown import PARENT_PID_VARIABLE, StopRequest

START_ORDER = ("data", "portfolio", "planner", "trading", "display")
STARTUP_TIMEOUT_S = 120
STOP_TIMEOUT_S = 10
SERVING_POLL_S = 0.05  # a service starting is asked this often whether it serves yet
# ... over a channel that tries to connect as often: with the clients' back-off (up to 1 s) a
# service was seen serving up to a second after it began to.
SERVING_POLL_OPTIONS = tuple((option, int(SERVING_POLL_S * 1000)) for option in (
    "grpc.initial_reconnect_backoff_ms", "grpc.min_reconnect_backoff_ms", "grpc.max_reconnect_backoff_ms"))
RESTART_FIRST_DELAY_S = 0.5
RESTART_MAX_DELAY_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long restarts after the first delay again
WALL_CLOCK_ONLY_MODES = ("paper", "live")


def module_of(service: str) -> str:
    return "gateway" if service == "gateway" else f"services.{service}"


def wait_serving(address: str, service_name: str, process: subprocess.Popen, deadline: float,
                 stop: StopRequest | None = None, tls: ClientTls | None = None) -> None:
    """Poll the service's health (over TLS with `tls`) until SERVING; raise RuntimeError if its
    process exits, `stop` is requested or `deadline` passes."""
    with raw_channel(address, tls, SERVING_POLL_OPTIONS) as channel:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{service_name} exited with code {process.returncode}")
            if stop is not None and stop.is_set():
                raise RuntimeError(f"stopped by {stop.reason} while starting {service_name}")
            if health_status(channel, service_name) == "SERVING":
                return
            time.sleep(SERVING_POLL_S)
    raise RuntimeError(f"{service_name} did not report SERVING within {STARTUP_TIMEOUT_S} s")


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: IO | None
    started_at: float
    restarts: int = 0
    quick_failures: int = 0           # exits in a row, each within STABLE_AFTER_S of its start
    restart_at: float | None = None   # when a crashed child is due to start again
    awaiting_serving: bool = False    # restarted, not yet SERVING


class Supervisor:
    """Starts the children and restarts the ones that exit on their own."""

    def __init__(self, config: CommonConfig, env: dict[str, str], log_dir: Path):
        self._config = config
        self._env = {**env, PARENT_PID_VARIABLE: str(os.getpid())}
        self._log_dir = log_dir
        self.children: dict[str, Child] = {}

    def _spawn(self, name: str) -> tuple[subprocess.Popen, IO | None]:
        log = open(self._log_dir / f"{name}.log", "a")  # noqa: SIM115 - closed when the child ends
        process = subprocess.Popen(
            [sys.executable, "-m", module_of(name)], cwd=REPO_ROOT, env=self._env,
            stdout=None if name == "gateway" else log, stderr=log,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the children in order
        )
        return process, log

    def start(self, name: str, stop: StopRequest) -> None:
        self.spawn(name)
        self.await_serving(name, stop)

    def spawn(self, name: str) -> None:
        """Start the child without waiting for it (`await_serving` waits)."""
        process, log = self._spawn(name)
        self.children[name] = Child(name, process, log, time.monotonic())

    def await_serving(self, name: str, stop: StopRequest) -> None:
        child = self.children[name]
        wait_serving(self._config.address_of(name), SERVICES[name][0], child.process,
                     child.started_at + STARTUP_TIMEOUT_S, stop, self._config.client_tls)
        say(f"{name:<10} serving on {self._config.address_of(name)}")

    def check(self) -> bool:
        """Restart what crashed, report what came back. False once the gateway finished (code 0)."""
        now = time.monotonic()
        for child in self.children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._restart(child, now)
                continue
            code = child.process.poll()
            if code is None:
                if child.awaiting_serving and self._serving(child.name):
                    child.awaiting_serving = False
                    say(f"{child.name} serving again (restart {child.restarts})")
                continue
            if child.log is not None:
                child.log.close()
            if child.name == "gateway" and code in (0, REPLAY_GAVE_UP_EXIT):
                return False  # the replay is over or gave up (or the gateway was told to stop)
            child.quick_failures = child.quick_failures + 1 if now - child.started_at < STABLE_AFTER_S else 1
            delay = min(RESTART_MAX_DELAY_S, RESTART_FIRST_DELAY_S * 2 ** (child.quick_failures - 1))
            child.restart_at = now + delay
            say(f"{child.name} {describe_exit(code)}; restarting it in {delay:.1f} s")
        return True

    def _restart(self, child: Child, now: float) -> None:
        child.process, child.log = self._spawn(child.name)
        child.started_at, child.restart_at = now, None
        child.restarts += 1
        child.awaiting_serving = True
        say(f"{child.name} restarted (pid {child.process.pid}, restart {child.restarts})")

    def _serving(self, name: str) -> bool:
        with raw_channel(self._config.address_of(name), self._config.client_tls) as channel:
            return health_status(channel, SERVICES[name][0], timeout_s=0.2) == "SERVING"

    def stop_all(self) -> None:
        """SIGTERM the gateway and wait for it (its cycle in flight finishes against live services),
        then the services; each gets STOP_TIMEOUT_S before it is killed."""
        self._stop([c for c in self.children.values() if c.name == "gateway"])
        self._stop([c for c in reversed(list(self.children.values())) if c.name != "gateway"])

    def _stop(self, children: list[Child]) -> None:
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{child.name} did not stop in time; killing it", error=True)
                child.process.kill()
                child.process.wait()
            if child.log is not None:
                child.log.close()


def grpcurl_tls_flags(env: dict[str, str], config: CommonConfig) -> str:
    """grpcurl's flags for the connection the services expect: -plaintext, or the CA bundle and
    the client certificate (mTLS) the services' own clients use."""
    if config.client_tls is None:
        return "-plaintext"
    flags = f"-cacert {env[TLS_CA]}"
    if config.client_tls.certificate_chain is not None:
        cert, key = (TLS_CLIENT_CERT, TLS_CLIENT_KEY) if env.get(TLS_CLIENT_CERT) else (TLS_CERT, TLS_KEY)
        flags += f" -cert {env[cert]} -key {env[key]}"
    return flags


def say(text: str, error: bool = False) -> None:
    print(text, file=sys.stderr if error else sys.stdout, flush=True)


def main() -> int:
    stop = StopRequest()
    stop.install()  # before anything starts: a signal burst at any time only raises the flag
    env = dict(os.environ)
    env.setdefault("TRADER_API_TOKEN", secrets.token_urlsafe(24))
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env.setdefault("MALLOC_ARENA_MAX", "2")  # glibc: two malloc arenas, not 8 per core (README, "Deploy")
    env.setdefault("TRADER_DISPLAY_SERIAL", "emulator")  # frames in var/display/matrix.png
    try:
        config = load_common("gateway", env)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    # Paper and live run on the wall clock: the gateway's scheduler runs the jobs, no replay.
    env.setdefault("TRADER_REPLAY_AUTOSTART", "0" if config.mode in WALL_CLOCK_ONLY_MODES else "1")
    log_dir = Path(env.get("TRADER_VAR_DIR", REPO_ROOT / "var")) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    lock = hold_state_lock(log_dir.parent)
    if lock is None:
        say(f"another `trader run` is using {log_dir.parent} (it holds {log_dir.parent / 'run.lock'}); "
            "stop it first", error=True)
        return 1
    token = env["TRADER_API_TOKEN"]
    say(f"mode {config.mode}; API token: {token}")
    say(f"call any service, e.g.:\n  grpcurl {grpcurl_tls_flags(env, config)} -H 'authorization: Bearer {token}' "
        f"{config.address_of('gateway')} trader.gateway.v1.Gateway/GetSystemStatus")
    say(f"logs: {log_dir}/<service>.log; Ctrl-C stops everything")

    supervisor = Supervisor(config, env, log_dir)
    try:
        for name in START_ORDER + ("gateway",):
            supervisor.start(name, stop)
        while not stop.wait(0.2):
            if not supervisor.check():
                break
        gateway = supervisor.children.get("gateway")
        if gateway is not None and gateway.process.poll() == REPLAY_GAVE_UP_EXIT:
            say(f"the replay gave up (the reason is above); see {log_dir}/gateway.log", error=True)
            return 1
        return 0
    except RuntimeError as exc:
        if stop.is_set():
            return 0
        gateway = supervisor.children.get("gateway")
        if gateway is not None and gateway.process.poll() == 0:  # the replay had nothing left to run
            return 0
        say(f"startup failed: {exc}; see {log_dir}", error=True)
        return 1
    finally:
        supervisor.stop_all()
        say("all services stopped")
        lock.close()


def hold_state_lock(var_dir: Path) -> IO | None:
    """An exclusive lock on `var_dir`/run.lock, held while the returned file is open (and released
    by the kernel if the process dies); None when another process holds it."""
    handle = open(var_dir / "run.lock", "a")  # noqa: SIM115 - held for the launcher's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


if __name__ == "__main__":
    sys.exit(main())
