"""OpenTelemetry setup: one tracer provider per process, W3C context over gRPC metadata.

The exporter follows the standard variables: with OTEL_EXPORTER_OTLP_ENDPOINT (or the traces
variant) set, spans go over OTLP, by gRPC or by HTTP with protobuf as OTEL_EXPORTER_OTLP_PROTOCOL
(or the traces variant) says (grpc when unset); the exporter itself reads the endpoint (for HTTP
the base URL, /v1/traces appended), headers, certificates, compression and timeout. With no
endpoint set, nothing is exported and nothing complains: a trace this process starts is not
sampled, so its spans are not recorded (a recorded span costs about three times as much, for
nobody), yet each still has its trace and span ids, which flow between services and into logs
as before. A call from a process that samples its trace (the W3C traceparent's sampled flag) is
recorded as that process asks (the SDK's ParentBased sampler).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient, GrpcInstrumentorServer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from services.common.config import Env, otlp_traces_protocol

_instrumented = False


def otlp_configured(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def span_exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    """The OTLP exporter the variables ask for (it reads os.environ itself), or None.
    Raises ConfigError for an unknown protocol."""
    if not otlp_configured(environ):
        return None
    env = Env(environ)
    protocol = otlp_traces_protocol(env)
    env.check()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter()


def setup_tracing(service: str, extra_processors: tuple[SpanProcessor, ...] = ()) -> TracerProvider:
    """Install the tracer provider and the gRPC instrumentation (before any server or channel)."""
    global _instrumented
    name = os.environ.get("OTEL_SERVICE_NAME") or f"trader-{service}"
    exporter = span_exporter(os.environ)
    recorded = exporter is not None or bool(extra_processors)
    # With something to record for, the sampler the OTEL_TRACES_SAMPLER variables ask for (the
    # SDK's default: every trace); without, traces started here are not sampled (module docstring).
    provider = TracerProvider(resource=Resource.create({"service.name": name}),
                              sampler=None if recorded else ParentBased(ALWAYS_OFF))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    if not _instrumented:
        GrpcInstrumentorServer().instrument()
        GrpcInstrumentorClient().instrument()
        _instrumented = True
    return provider


def current_trace_id() -> str:
    """The current span's trace id as 32 hex digits, or '' outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
