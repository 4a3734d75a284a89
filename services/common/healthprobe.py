"""Container health probe: asks a service's grpc.health.v1 `Check` whether it is SERVING.

    python -m services.common.healthprobe [SERVICE] [--address HOST:PORT] [--timeout S] [--alive]

Exit code 0 when the service answers SERVING (with `--alive`: when its server answers at all,
whatever the status), 1 otherwise; one line on stdout says what was asked and what answered.
It stands in for grpc_health_probe in the image's HEALTHCHECK, docker-compose.yml and the
Kubernetes liveness probe of trading (which must stay alive while it is NOT_SERVING: its books
disagree with the broker until a SyncBroker or AcceptBrokerPositions, which need it running).

SERVICE (gateway, data, portfolio, planner, trading, display) defaults to the one this container
runs: the service named on the command line of the container's main process (/proc/1/cmdline:
`python -m services.data`, or `... entrypoint.sh data` under an init). The address defaults to
the service's port on the loopback when it listens on every interface (TRADER_LISTEN_HOST
0.0.0.0 or [::]), else to TRADER_<SERVICE>_ADDR. With TLS (TRADER_TLS_CA; README, "Deploy") it
connects as the service's own clients do, presenting TRADER_TLS_CLIENT_CERT or the service's
certificate, so it works under mutual TLS too; the certificate must name the probed host
(127.0.0.1 for a wildcard listener).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.client import raw_channel
from services.common.config import SERVICES, ClientTls, ConfigError, Env, load_client_tls

WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}


def service_in_command_line(argv: Sequence[str]) -> str | None:
    """The service a command line runs: `-m services.data` or `-m gateway`, or a bare name argument."""
    for arg in argv:
        name = arg.removeprefix("services.")
        if name in SERVICES:
            return name
    return None


def main_process_service(cmdline: Path = Path("/proc/1/cmdline")) -> str | None:
    try:
        argv = cmdline.read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    return service_in_command_line(argv)


def probe_address(service: str, environ: Mapping[str, str]) -> str:
    """Where the service can be reached from inside its own container (raises ConfigError)."""
    env = Env(environ)
    address = env.address(f"TRADER_{service.upper()}_ADDR", f"127.0.0.1:{SERVICES[service][1]}")
    listen_host = env.host("TRADER_LISTEN_HOST")
    env.check()
    if listen_host is None:
        return address
    port = address.rsplit(":", 1)[1]
    return f"{WILDCARD_HOSTS.get(listen_host, listen_host)}:{port}"


def check(address: str, service_name: str, timeout_s: float, tls: ClientTls | None = None) -> str:
    """The status name (SERVING, NOT_SERVING, ...), or the gRPC error code when none came back."""
    with raw_channel(address, tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service_name), timeout=timeout_s)
        except grpc.RpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.healthprobe", description=__doc__.split("\n")[0])
    parser.add_argument("service", nargs="?", choices=sorted(SERVICES),
                        help="default: the service this container's main process runs")
    parser.add_argument("--address", help="host:port (default: from TRADER_LISTEN_HOST and TRADER_<SERVICE>_ADDR)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--alive", action="store_true", help="succeed on any answer, NOT_SERVING included")
    args = parser.parse_args(argv)
    service = args.service or main_process_service()
    if service is None:
        print("healthprobe: cannot tell which service this container runs; name it, e.g. 'healthprobe data'")
        return 1
    environ = os.environ if environ is None else environ
    try:
        address = args.address or probe_address(service, environ)
        tls = load_client_tls(environ)
    except ConfigError as exc:
        print(f"healthprobe: {exc}")
        return 1
    service_name = SERVICES[service][0]
    status = check(address, service_name, args.timeout, tls)
    answered = status in health_pb2.HealthCheckResponse.ServingStatus.keys()
    healthy = answered if args.alive else status == "SERVING"
    print(f"{service_name} at {address}: {status}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
