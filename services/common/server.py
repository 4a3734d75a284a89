"""Server bootstrap shared by every service.

`run_service` is the whole life of a service process: validated config, logging, tracing,
a gRPC server with auth and call-context interceptors, grpc.health.v1 and reflection, then a
wait for SIGTERM/SIGINT and a graceful stop (health NOT_SERVING first, in-flight calls get the
grace period, then the service's own cleanup and a final flush of spans).
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from trader.common.v1 import info_pb2_grpc

from services.common import clock, info, templates
from services.common.config import SERVICES, CommonConfig, ConfigError, ServerTls
from services.common.db import Database, migrate_in_child_processes
from services.common.interceptors import CallContextInterceptor
from services.common.logs import event, setup_logging
from services.common.reflection import enable_reflection
from services.common.shutdown import StopRequest, die_with_parent
from services.common.tracing import setup_tracing

log = logging.getLogger("trader.server")
MAX_LISTED_SERVICES = 100  # as grpc-go: List answers RESOURCE_EXHAUSTED beyond this
TEMPLATE_MODES = ("backtest", "replay")  # the modes that start from a fresh state again and again


class HealthServicer(health.HealthServicer):
    """grpcio-health-checking's servicer (Check, Watch) plus List, which it lacks (1.85.1).

    List (grpc/health/v1/health.proto): a snapshot of every known service's status, the
    server's overall status under "" included; RESOURCE_EXHAUSTED if there are too many.
    """

    def List(self, request, context):
        with self._lock:  # the base class keeps the statuses in _server_status, under _lock
            statuses = dict(self._server_status)
        if len(statuses) > MAX_LISTED_SERVICES:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{len(statuses)} services exceed the {MAX_LISTED_SERVICES} that List answers")
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()})


@dataclass
class RunningServer:
    """A started gRPC server with its health servicer."""

    server: grpc.Server
    health: HealthServicer
    service_name: str
    port: int
    _stopped: threading.Event = field(default_factory=threading.Event)

    def set_serving(self, serving: bool) -> None:
        """Per-service health: NOT_SERVING while the service cannot do its job."""
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        self.health.set(self.service_name, status)
        self.health.set("", status)

    def stop(self, grace_s: float) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()  # every status NOT_SERVING before we stop accepting
        self.server.stop(grace_s).wait()


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """TLS with the service's certificate; with a client CA, clients without a certificate it
    signed are refused during the handshake (mutual TLS)."""
    return grpc.ssl_server_credentials([(tls.private_key, tls.certificate_chain)], root_certificates=tls.client_ca,
                                       require_client_auth=tls.client_ca is not None)


def start_server(config: CommonConfig, register: Callable[[grpc.Server], None],
                 max_workers: int = 16, service_info: info.ServiceInfoServicer | None = None) -> RunningServer:
    """Build, bind and start the server for `config.service`; `register` adds the servicer, and
    `service_info` (a service process's) trader.common.v1.ServiceInfo."""
    service_name = SERVICES[config.service][0]
    # No SO_REUSEPORT (gRPC's default on Linux): a second process on a port in use must fail to
    # bind, not share the port and answer half the first one's calls with another token and state.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         interceptors=[CallContextInterceptor(config.api_token)], options=[("grpc.so_reuseport", 0)])
    register(server)
    health_servicer = HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    served = (service_name, health.SERVICE_NAME)
    if service_info is not None:
        info_pb2_grpc.add_ServiceInfoServicer_to_server(service_info, server)
        served += (info.SERVICE_NAME,)
    enable_reflection(server, served)
    if config.server_tls is None:
        port = server.add_insecure_port(config.listen_address)
    else:
        port = server.add_secure_port(config.listen_address, server_credentials(config.server_tls))
    if port == 0:
        raise OSError(f"cannot bind {config.listen_address}")
    server.start()
    running = RunningServer(server, health_servicer, service_name, port)
    running.set_serving(True)
    return running


@dataclass
class ServiceParts:
    """What a service contributes to `run_service`."""

    register: Callable[[grpc.Server], None]                 # adds the servicer to the server
    close: Callable[[], None] = lambda: None                 # releases clients, database, ...
    # Called once serving; `request_stop` stops the service as SIGTERM would.
    after_start: Callable[[RunningServer, Callable[[], None]], None] | None = None
    database: Database | None = None  # its figures in GetServiceInfo


def run_service(name: str, load_config: Callable[[], Any], build: Callable[[Any], ServiceParts]) -> int:
    """Run one service until SIGTERM/SIGINT (or `request_stop`). Returns the exit code.

    `load_config()` returns the service's config: a CommonConfig, or an object whose `common`
    attribute is one. A ConfigError (from it, or from `build`, e.g. a database that cannot be
    used) is printed with every problem and exits with code 2.
    """
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"trader-{name}: {exc}", file=sys.stderr)
        return 2
    common: CommonConfig = getattr(config, "common", config)
    setup_logging(name, common.log_level)
    provider = setup_tracing(name)
    die_with_parent()
    stop_requested = StopRequest()
    stop_requested.install()  # a burst of signals cannot deadlock it (see shutdown.py)
    migrate_in_child_processes()  # the service keeps no Alembic loaded (db.py)
    if common.mode in TEMPLATE_MODES:  # fresh databases from var/cache/ (templates.py)
        templates.enable()
    try:
        parts = build(config)
    except ConfigError as exc:  # found while building, e.g. a database URL that does not connect
        print(f"trader-{name}: {exc}", file=sys.stderr)
        provider.shutdown()
        return 2
    service_info = info.ServiceInfoServicer(name, parts.database, common.var_dir, clock.wall_now())
    try:
        running = start_server(common, parts.register, service_info=service_info)
    except Exception:
        parts.close()
        raise
    # Start-up objects (libraries, loaded data) live as long as the process: move them out of
    # the collector's reach so full collections stay short (they set the latency tail).
    gc.freeze()
    tls = "off" if common.server_tls is None else "mutual" if common.server_tls.client_ca else "on"
    event(log, "serving", address=common.listen_address, mode=common.mode,
          auth="on" if common.api_token else "off", tls=tls)
    if parts.after_start is not None:
        parts.after_start(running, stop_requested.request)
    stop_requested.wait()
    event(log, "stopping", reason=stop_requested.reason, grace_s=common.shutdown_grace_s)
    running.stop(common.shutdown_grace_s)
    parts.close()
    provider.shutdown()
    event(log, "stopped")
    gc.freeze()  # what loaded since the start (e.g. the optimiser's libraries) need not be swept at exit
    return 0
