"""The span exporter follows OTEL_EXPORTER_OTLP_PROTOCOL (grpc, http/protobuf), as the standard
OpenTelemetry variables say, checked with a local OTLP/gRPC and OTLP/HTTP receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from trader.display.v1 import display_pb2, display_pb2_grpc

from gateway.launch import wait_serving
from services.common.config import REPO_ROOT, ConfigError, load_common
from services.common.tracing import span_exporter
from tests.helpers import TOKEN, free_port
from tests.suite import HttpSpanCollector, SpanCollector

OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
                  "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_SDK_DISABLED",
                  "OTEL_TRACES_EXPORTER")


@pytest.fixture
def otel_env(monkeypatch):
    """A clean slate of OTEL_* variables; returns a setter."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch.setenv


@pytest.fixture
def grpc_collector():
    collector = SpanCollector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    collector.endpoint = f"http://127.0.0.1:{port}"
    yield collector
    server.stop(0)


@pytest.fixture
def http_collector():
    with HttpSpanCollector() as collector:
        yield collector


def export_one_span(name: str) -> str:
    """Make one span through the exporter the environment asks for; returns its module."""
    exporter = span_exporter(os.environ)
    provider = TracerProvider(resource=Resource.create({"service.name": "trader-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span(name):
        pass
    provider.shutdown()
    return type(exporter).__module__


def test_grpc_by_default(otel_env, grpc_collector):
    otel_env("OTEL_EXPORTER_OTLP_ENDPOINT", grpc_collector.endpoint)
    otel_env("OTEL_EXPORTER_OTLP_INSECURE", "true")
    assert export_one_span("by-default") == "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
    assert ("trader-test", "by-default") in {(service, name) for service, _, name in grpc_collector.spans}


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"])
def test_http_protobuf_posts_to_v1_traces(otel_env, http_collector, variable):
    otel_env("OTEL_EXPORTER_OTLP_ENDPOINT", http_collector.endpoint)  # the base URL: /v1/traces is appended
    otel_env(variable, "http/protobuf")
    assert export_one_span("over-http") == "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    assert ("trader-test", "over-http") in {(service, name) for service, _, name in http_collector.spans}
    assert http_collector.requests == {"/v1/traces": 1}


def test_the_traces_variables_win(otel_env, grpc_collector, http_collector):
    otel_env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    otel_env("OTEL_EXPORTER_OTLP_ENDPOINT", http_collector.endpoint)
    otel_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    otel_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", grpc_collector.endpoint)
    otel_env("OTEL_EXPORTER_OTLP_INSECURE", "true")
    export_one_span("specific")
    assert [name for _, _, name in grpc_collector.spans] == ["specific"] and not http_collector.spans
    # the traces endpoint of OTLP/HTTP is used as given (no /v1/traces appended)
    otel_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    otel_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{http_collector.endpoint}/v1/traces")
    export_one_span("specific-http")
    assert [name for _, _, name in http_collector.spans] == ["specific-http"]


def test_no_endpoint_no_export(otel_env):
    otel_env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert span_exporter(os.environ) is None


@pytest.mark.parametrize(("value", "detail"), [("http/json", "has no http/json exporter"), ("http", "expected grpc")])
def test_unknown_protocols_are_configuration_errors(otel_env, value, detail):
    otel_env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    otel_env("OTEL_EXPORTER_OTLP_PROTOCOL", value)
    with pytest.raises(ConfigError):
        span_exporter(os.environ)
    with pytest.raises(ConfigError) as caught:
        load_common("display", {"TRADER_API_TOKEN": TOKEN, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": value})
    [problem] = caught.value.problems
    assert problem.startswith(f"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL={value!r}: ") and detail in problem
    assert load_common("display", {"TRADER_API_TOKEN": TOKEN, "OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/Protobuf"})


@pytest.mark.e2e
def test_a_service_exports_its_spans_over_http(http_collector, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "TRADER_DISPLAY_ADDR": address, "TRADER_API_TOKEN": TOKEN, "TRADER_VAR_DIR": str(tmp_path),
           "OTEL_EXPORTER_OTLP_ENDPOINT": http_collector.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with open(tmp_path / "display.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.display"], cwd=REPO_ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_serving(address, "trader.display.v1.Display", process, time.monotonic() + 60)
        with grpc.insecure_channel(address) as channel:
            display_pb2_grpc.DisplayStub(channel).GetDisplayState(
                display_pb2.GetDisplayStateRequest(), metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
        deadline = time.monotonic() + 20
        wanted = ("trader-display", "/trader.display.v1.Display/GetDisplayState")
        while wanted not in {(s, n) for s, _, n in http_collector.spans} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert wanted in {(service, name) for service, _, name in http_collector.spans}, \
            (tmp_path / "display.log").read_text()[-2000:]
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.e2e
def test_without_an_exporter_trace_ids_still_flow_into_a_service_and_its_logs(tmp_path):
    """No endpoint: spans are not recorded (nobody would read them), but a call's trace id is
    the service's, in its log lines and in what it passes on."""
    address = f"127.0.0.1:{free_port()}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "TRADER_DISPLAY_ADDR": address, "TRADER_API_TOKEN": TOKEN, "TRADER_VAR_DIR": str(tmp_path)}
    log_path = tmp_path / "display.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.display"], cwd=REPO_ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        wait_serving(address, "trader.display.v1.Display", process, time.monotonic() + 60)
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError):
            display_pb2_grpc.DisplayStub(channel).SetBrightness(
                display_pb2.SetBrightnessRequest(brightness=999), timeout=10,
                metadata=[("authorization", f"Bearer {TOKEN}"), ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-00")])
    finally:
        process.terminate()
        process.wait(timeout=15)
    refused = [json.loads(line) for line in log_path.read_text().splitlines()
               if line.startswith("{") and '"call refused"' in line]
    assert [line.get("trace_id") for line in refused] == [trace_id]


def test_without_the_instrumentation_the_client_layer_and_interceptor_carry_the_trace():
    """No instrumentation (no exporter): a call made inside a trace carries its context in the
    client layer, and the handler (and its log lines) run in that trace; baggage goes along."""
    from opentelemetry import baggage, context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, use_span

    from services.common.client import Clients
    from services.common.tracing import current_trace_id, layers_propagate
    from tests.helpers import make_config, raw_methods, serving

    assert layers_propagate()  # this process installed no instrumentation
    seen = []

    def handler(request, context_):
        seen.append((current_trace_id(), baggage.get_baggage("tenant")))
        return b"ok"

    config = make_config("display")
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    caller = NonRecordingSpan(SpanContext(trace_id, 0x00F067AA0BA902B7, is_remote=False,
                                          trace_flags=TraceFlags(TraceFlags.DEFAULT)))
    with serving(config, raw_methods("trader.display.v1.Display", {"GetThing": handler})):
        clients = Clients(config)
        try:
            call = clients.channel("display").unary_unary("/trader.display.v1.Display/GetThing")
            token = context.attach(baggage.set_baggage("tenant", "one"))
            try:
                with use_span(caller):
                    call(b"")
            finally:
                context.detach(token)
            call(b"")  # outside the trace: nothing is carried
        finally:
            clients.close()
    assert seen[0] == (format(trace_id, "032x"), "one")
    assert seen[1][0] != format(trace_id, "032x") and seen[1][1] is None


def test_step_spans_where_nothing_is_recorded(monkeypatch):
    """Without anything to record, a step within a trace runs in the current span (same trace
    id, no new span); outside a trace it starts one; where spans are recorded, always a new one."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    from services.common import tracing

    tracer = TracerProvider(sampler=ParentBased(ALWAYS_OFF)).get_tracer("test")
    monkeypatch.setattr(tracing, "_recording", False)
    with tracer.start_as_current_span("server") as server:
        with tracing.step_span(tracer, "cycle.plan") as step:
            assert step is server and trace.get_current_span() is server
    with tracing.step_span(tracer, "job.tidy") as root:
        assert root.get_span_context().is_valid and trace.get_current_span() is root
    monkeypatch.setattr(tracing, "_recording", True)
    with tracer.start_as_current_span("server") as server, tracing.step_span(tracer, "cycle.plan") as step:
        assert step is not server
        assert step.get_span_context().trace_id == server.get_span_context().trace_id
