"""Server interceptors: bearer-token auth, and the per-call context (as-of clock, the caller's
trace context where no instrumentation carries it (tracing.py), error mapping, one log line per
failed call)."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

import grpc

from services.common import clock, tracing
from services.common.errors import DomainError, status_for
from services.common.logs import event

log = logging.getLogger("trader.rpc")

# Health and reflection stay open so that probes and grpcurl's `list` work without a token.
AUTH_EXEMPT_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _with_behavior(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable, bool], Callable]):
    """A copy of `handler` whose behaviour is `wrap(behaviour, streams_response)`."""
    if handler.unary_unary:
        factory, behavior, streams = grpc.unary_unary_rpc_method_handler, handler.unary_unary, False
    elif handler.unary_stream:
        factory, behavior, streams = grpc.unary_stream_rpc_method_handler, handler.unary_stream, True
    elif handler.stream_unary:
        factory, behavior, streams = grpc.stream_unary_rpc_method_handler, handler.stream_unary, False
    else:
        factory, behavior, streams = grpc.stream_stream_rpc_method_handler, handler.stream_stream, True
    return factory(
        wrap(behavior, streams),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def bearer_token(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _report(context, method: str, exc: BaseException, started: float):
    if context.code() not in (None, grpc.StatusCode.OK):
        raise exc  # the handler chose its status itself (context.abort): keep it
    code, message = status_for(exc)
    level = logging.ERROR if code == grpc.StatusCode.INTERNAL else logging.INFO
    event(log, "call refused" if isinstance(exc, DomainError) else "call failed", level,
          method=method, code=code.name, detail=message, ms=round((time.perf_counter() - started) * 1000, 2),
          exc_info=code == grpc.StatusCode.INTERNAL)
    context.abort(code, message)


class CallContextInterceptor(grpc.ServerInterceptor):
    """Refuses every call without `authorization: Bearer <token>` (UNAUTHENTICATED) when built
    with a token, except health and reflection; sets the as-of clock from metadata for the call;
    maps exceptions to status codes.

    One interceptor for all three (it was two): the wrapped handler of a method is built once
    and kept, and each call reads its metadata once."""

    def __init__(self, token: str | None = None):
        self._token = token.encode() if token is not None else None
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        kept = self._wrapped.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = _with_behavior(handler, self._wrapper(method))
        self._wrapped[method] = (handler, wrapped)  # a race only builds the same wrapper twice
        return wrapped

    def _wrapper(self, method: str) -> Callable[[Callable, bool], Callable]:
        token = None if method.startswith(AUTH_EXEMPT_PREFIXES) else self._token

        def enter(context):
            """(the call's as-of time or None: the wall clock, the attached trace context or None);
            refuses a call without the token."""
            authorization, as_of, carrier = _read_metadata(context.invocation_metadata())
            attached = tracing.attach_call_context(carrier, method) if tracing.layers_propagate() else None
            if token is not None:
                try:
                    _check_token(context, method, authorization, token)
                except BaseException:
                    _leave(attached)
                    raise
            return as_of, attached

        def wrap(behavior, streams):
            if streams:
                def stream(request, context):
                    at, attached = enter(context)
                    started = time.perf_counter()
                    try:
                        with clock.use_as_of(clock.parse_as_of(at) if at is not None else None):
                            yield from behavior(request, context)
                    except Exception as exc:  # noqa: BLE001 - mapped to a status, never swallowed
                        if not context.is_active():  # the client went away (e.g. ended a reflection stream)
                            event(log, "call cancelled by the client", logging.INFO, method=method)
                            return
                        _report(context, method, exc, started)
                    finally:
                        _leave(attached)

                return stream

            def unary(request, context):
                at, attached = enter(context)
                started = time.perf_counter()
                try:
                    with clock.use_as_of(clock.parse_as_of(at) if at is not None else None):
                        return behavior(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped to a status, never swallowed
                    _report(context, method, exc, started)
                finally:
                    _leave(attached)

            return unary

        return wrap


def _leave(attached) -> None:
    if attached is not None:
        tracing.detach_call_context(attached)


def _read_metadata(metadata) -> tuple[str | None, str | None, dict[str, str]]:
    """(the first `authorization` value, the first as-of value, the trace context's headers) of a
    call's metadata."""
    authorization = as_of = None
    carrier: dict[str, str] = {}
    for key, value in metadata or ():
        if key == "authorization":
            if authorization is None:
                authorization = value
        elif key == clock.METADATA_KEY:
            if as_of is None:
                as_of = value
        elif key in tracing.CONTEXT_KEYS:
            carrier.setdefault(key, value)
    return authorization, as_of, carrier


def _check_token(context, method: str, authorization: str | None, token: bytes) -> None:
    """Aborts the call (UNAUTHENTICATED) unless `authorization` is `Bearer <token>`."""
    provided = bearer_token((("authorization", authorization),)) if authorization is not None else None
    if provided is not None and hmac.compare_digest(provided.encode(), token):
        return
    reason = "missing authorization metadata" if provided is None else "invalid bearer token"
    event(log, "unauthenticated call refused", logging.WARNING, method=method, reason=reason)
    context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
