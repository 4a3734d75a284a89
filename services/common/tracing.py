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

How the context crosses a call: with something to record for (an exporter or a processor),
OpenTelemetry's gRPC instrumentation, a span at each end of every call. Without, the services'
own client layer (client.py) and server interceptor (interceptors.py) carry it with the
configured propagators (opentelemetry.propagate: W3C traceparent and baggage by default): the
client injects the current context into the call's metadata; the server makes the caller's
context current for the call, or starts a trace of its own when the call brings none. The same
ids flow, without the instrumentation's two spans and wrappers per call, which nobody records
here (bench/rpc_overhead.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient, GrpcInstrumentorServer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from services.common.config import Env, otlp_traces_protocol

_instrumented = False
_recording = True  # spans may be recorded (False once setup_tracing found nothing to record for)
# The metadata keys the default propagators use (W3C trace context and baggage).
CONTEXT_KEYS = frozenset(("traceparent", "tracestate", "baggage"))
_server_tracer = trace.get_tracer("trader.rpc")


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


def setup_tracing(service: str, extra_processors: tuple[SpanProcessor, ...] = (),
                  instrument: bool | None = None) -> TracerProvider:
    """Install the tracer provider and, when spans are recorded, the gRPC instrumentation (before
    any server or channel). `instrument`: install it or not whatever is recorded (None: as said;
    bench/rpc_overhead.py compares the two ways)."""
    global _instrumented, _recording
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
    _recording = recorded
    instrument = recorded if instrument is None else instrument
    if instrument and not _instrumented:
        GrpcInstrumentorServer().instrument()
        GrpcInstrumentorClient().instrument()
        _instrumented = True
    elif not instrument and _instrumented:  # a second setup in one process (tests)
        GrpcInstrumentorServer().uninstrument()
        GrpcInstrumentorClient().uninstrument()
        _instrumented = False
    return provider


def step_span(tracer: trace.Tracer, name: str, attributes: dict | None = None
              ) -> contextlib.AbstractContextManager[trace.Span]:
    """`tracer.start_as_current_span(name, attributes=...)` where spans are recorded or no trace
    is current (the span starts one). Where this process records nothing (setup_tracing without
    an exporter), within a trace the current span stands for it: an unsampled span costs ~16 us
    and nobody sees it; its trace id, all that replies, logs and the next calls carry, is the
    current one's anyway."""
    current = trace.get_current_span()
    if _recording or not current.get_span_context().is_valid:
        return tracer.start_as_current_span(name, attributes=attributes)
    return contextlib.nullcontext(current)


def layers_propagate() -> bool:
    """True when the client layer and the server interceptor carry the trace context (no
    instrumentation installed in this process: see the module docstring)."""
    return not _instrumented


def with_trace_context(metadata: tuple) -> tuple:
    """`metadata` plus the current context's propagation headers (none outside a trace)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return (*metadata, *carrier.items()) if carrier else metadata


def attach_call_context(carrier: dict[str, str], method: str) -> tuple[object, trace.Span | None]:
    """Make the caller's context (`carrier`: its propagation headers) current for a call, or a
    new trace's server span when it brings none; returns what `detach_call_context` takes."""
    context = propagate.extract(carrier) if carrier else otel_context.Context()
    span = None
    if not trace.get_current_span(context).get_span_context().is_valid:
        span = _server_tracer.start_span(method, context=context, kind=trace.SpanKind.SERVER)
        context = trace.set_span_in_context(span, context)
    return otel_context.attach(context), span


def detach_call_context(attached: tuple[object, trace.Span | None]) -> None:
    token, span = attached
    otel_context.detach(token)
    if span is not None:
        span.end()


def current_trace_id() -> str:
    """The current span's trace id as 32 hex digits, or '' outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
