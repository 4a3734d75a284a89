"""Start the six services as separate processes on free ports, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from gateway.launch import START_ORDER, module_of, wait_serving
from services.common.client import raw_channel
from services.common.config import REPO_ROOT, SERVICES, load_client_tls
from tests.helpers import TOKEN, free_port


class SpanCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP/gRPC trace receiver: remembers (service.name, trace id, span name)."""

    def __init__(self):
        self.spans: list[tuple[str, str, str]] = []

    def Export(self, request, context):
        self.record(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def record(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope in resource_spans.scope_spans:
                self.spans.extend((service, span.trace_id.hex(), span.name) for span in scope.spans)

    def services_in_trace(self, trace_id: str) -> set[str]:
        return {service for service, trace, _ in self.spans if trace == trace_id}


class HttpSpanCollector(SpanCollector):
    """A minimal OTLP/HTTP (protobuf) trace receiver on 127.0.0.1: POST /v1/traces. `endpoint` is
    the base URL for OTEL_EXPORTER_OTLP_ENDPOINT; `requests` counts the posts by path."""

    def __init__(self):
        super().__init__()
        self.requests: dict[str, int] = {}
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                collector.requests[self.path] = collector.requests.get(self.path, 0) + 1
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_error(404 if self.path != "/v1/traces" else 415)
                    return
                collector.record(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format, *args):  # noqa: A002 - the base class's signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HttpSpanCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class Suite:
    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None):
        self.workdir = workdir
        self.addresses = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
        self.collector = SpanCollector()
        self._collector_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self.collector, self._collector_server)
        collector_port = self._collector_server.add_insecure_port("127.0.0.1:0")
        self.env = {
            **os.environ,
            **{f"TRADER_{name.upper()}_ADDR": address for name, address in self.addresses.items()},
            "TRADER_API_TOKEN": TOKEN,
            "TRADER_VAR_DIR": str(workdir),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "GRPC_VERBOSITY": "ERROR",
            **(extra_env or {}),
        }
        self.processes: dict[str, subprocess.Popen] = {}
        # the tests call as the services do: over TLS when the environment says so
        self.client_tls = load_client_tls(self.env)

    def start(self) -> Suite:
        self._collector_server.start()
        for name in START_ORDER + ("gateway",):
            log = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            self.processes[name] = subprocess.Popen([sys.executable, "-m", module_of(name)], cwd=REPO_ROOT,
                                                    env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        for name, process in self.processes.items():
            wait_serving(self.addresses[name], SERVICES[name][0], process, deadline, tls=self.client_tls)
        return self

    def start_one(self, name: str, **env_changes: str | None) -> None:
        """(Re)start one service, with environment changes (None removes a variable)."""
        env = {**self.env, **{k: v for k, v in env_changes.items() if v is not None}}
        for key in [k for k, v in env_changes.items() if v is None]:
            env.pop(key, None)
        log = open(self.workdir / f"{name}.log", "a")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen([sys.executable, "-m", module_of(name)], cwd=REPO_ROOT, env=env,
                                                stdout=log, stderr=subprocess.STDOUT)
        wait_serving(self.addresses[name], SERVICES[name][0], self.processes[name], time.monotonic() + 60,
                     tls=self.client_tls)

    def channel(self, service: str) -> grpc.Channel:
        return raw_channel(self.addresses[service], self.client_tls)

    def terminate(self) -> dict[str, tuple[int | None, float]]:
        """SIGTERM every process; returns name -> (exit code, seconds it took)."""
        started = time.monotonic()
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        results = {}
        for name, process in self.processes.items():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            results[name] = (process.returncode, time.monotonic() - started)
        self._collector_server.stop(0)
        return results

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text()
