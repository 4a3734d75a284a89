"""Benchmark: resident memory (RSS) of the six services, idle and after 50 replay cycles, beside a
bare grpcio server measured in the same run; the goal is under 600 MiB in total for the six
(issue 10 item 10: an Arduino UNO Q class board with 2 GB).

Starts everything as `make run` does (`python -m gateway.launch`: replay mode, the bundled
history, the paper broker, SQLite in a fresh temporary state directory, free ports) but without
the replay driver; this script then drives the cycles as the driver does (gateway/replay.py):
the trading days of the sample from 2018-01-02, the initial and monthly deposits, and one
RunSyncCycle through the gateway per day with the clock (x-trader-as-of) set to 22:00 UTC.
The bare server is grpcio with a 16-thread pool and the health service, called once a cycle,
under the same MALLOC_ARENA_MAX as the services (the launcher sets 2 unless it is set).

RSS is VmRSS from /proc/<pid>/status (shared library pages count in every process that maps
them); "peak" is VmHWM, the largest RSS the process had. Not counted: the short-lived children
of a start (the migration, about 70 MiB, 130 for data; the data service's read of the bundled
history, about 200 MiB), which a container's memory limit must also allow for. The
Kubernetes requests and limits in deploy/k8s/base come from these figures (README, "Deploy").

    .venv/bin/python bench/footprint.py [--cycles 50] [--settle 3]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gateway.config import load as load_gateway_config  # noqa: E402
from gateway.cycle import Services  # noqa: E402
from gateway.replay import SESSION_END_UTC, cycle_line, deposit, trading_days  # noqa: E402
from services.common import clock  # noqa: E402
from services.common.client import Clients, raw_channel  # noqa: E402
from services.common.config import SERVICES  # noqa: E402
from tests.helpers import TOKEN, free_port  # noqa: E402
from tests.launcher import Launcher, launcher_env  # noqa: E402

GOAL_MIB = 600
ORDER = ("gateway", "data", "portfolio", "planner", "trading", "display")
BARE_SERVER = """
import sys, threading
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
server.add_insecure_port(sys.argv[1])
server.start()
server.wait_for_termination()
"""


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MiB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


def environment_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def start_bare_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen([sys.executable, "-c", BARE_SERVER, address], env=env)
    with raw_channel(address, None) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30)
    return process, address


def run_cycles(env: dict[str, str], count: int, bare_address: str) -> None:
    """`count` replay cycles as gateway/replay.py runs them, each followed by a call to the bare server."""
    config = load_gateway_config(env)
    clients = Clients(config.common)
    try:
        services = Services(clients)
        gateway = clients.stub("gateway", gateway_pb2_grpc.GatewayStub)
        days = trading_days(services, config.replay.start, None)[:count]
        last_month = None
        with raw_channel(bare_address, None) as bare_channel:
            bare = health_pb2_grpc.HealthStub(bare_channel)
            for number, day in enumerate(days, start=1):
                with clock.use_as_of(datetime.combine(day, SESSION_END_UTC, tzinfo=UTC)):
                    if number == 1:
                        deposit(services, config.replay.initial_deposit, config.common.base_currency,
                                "replay-initial-deposit")
                    if (day.year, day.month) != last_month:
                        deposit(services, config.replay.monthly_deposit, config.common.base_currency,
                                f"replay-deposit-{day:%Y-%m}")
                    result = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), timeout=120)
                bare.Check(health_pb2.HealthCheckRequest(), timeout=5)
                last_month = (day.year, day.month)
                print(f"  {number:>3}  {cycle_line(day, result)}", flush=True)
    finally:
        clients.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each reading")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trader-footprint-") as tmp:
        env = {**launcher_env(Path(tmp), TRADER_REPLAY_AUTOSTART="0"), "TRADER_API_TOKEN": TOKEN}
        launcher = Launcher(env)
        bare_process = None
        try:
            launcher.until(lambda line: line.startswith("gateway ") and "serving on" in line)
            pids = launcher.children()
            missing = set(SERVICES) - set(pids)
            if missing:
                raise RuntimeError(f"no process found for {sorted(missing)}")
            arenas = environment_of(pids["data"]).get("MALLOC_ARENA_MAX")  # the launcher's default, or ours
            bare_process, bare_address = start_bare_server({**env, **({"MALLOC_ARENA_MAX": arenas} if arenas else {})})
            pids["bare grpcio"] = bare_process.pid
            time.sleep(args.settle)
            idle = {name: memory_mib(pid)[0] for name, pid in pids.items()}
            print(f"running {args.cycles} replay cycles through the gateway", flush=True)
            started = time.monotonic()
            run_cycles(env, args.cycles, bare_address)
            elapsed = time.monotonic() - started
            time.sleep(args.settle)
            after = {name: memory_mib(pid) for name, pid in pids.items()}
        finally:
            launcher.process.send_signal(signal.SIGTERM)
            try:
                launcher.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            launcher.close()
            if bare_process is not None:
                bare_process.terminate()
                bare_process.wait()
    print(f"\n{args.cycles} cycles in {elapsed:.1f} s; RSS in MiB (VmRSS; peak = VmHWM); "
          f"the services ran with MALLOC_ARENA_MAX={arenas or 'unset (glibc default)'}")
    print(f"{'process':<12} {'idle':>8} {'after':>8} {'peak':>8}   after / bare grpcio")
    bare_after = after["bare grpcio"][0]
    for name in (*ORDER, "bare grpcio"):
        rss, peak = after[name]
        print(f"{name:<12} {idle[name]:>8.1f} {rss:>8.1f} {peak:>8.1f}   {rss / bare_after:5.1f}x")
    totals = [sum(idle[n] for n in ORDER), sum(after[n][0] for n in ORDER), sum(after[n][1] for n in ORDER)]
    print(f"{'six total':<12} {totals[0]:>8.1f} {totals[1]:>8.1f} {totals[2]:>8.1f}   "
          f"goal: idle < {GOAL_MIB} MiB: {'met' if totals[0] < GOAL_MIB else 'NOT met'} "
          f"({totals[0] / GOAL_MIB:.0%} of it); after the cycles {totals[1] / GOAL_MIB:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
