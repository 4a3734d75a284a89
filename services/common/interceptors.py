"""Server interceptors: bearer-token auth, and the per-call context (as-of clock, error mapping,
one log line per failed call)."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

import grpc

from services.common import clock
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


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses every call without `authorization: Bearer <token>` (UNAUTHENTICATED)."""

    def __init__(self, token: str):
        self._token = token.encode()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(AUTH_EXEMPT_PREFIXES):
            return handler
        provided = bearer_token(handler_call_details.invocation_metadata)
        if provided is not None and hmac.compare_digest(provided.encode(), self._token):
            return handler
        reason = "missing authorization metadata" if provided is None else "invalid bearer token"
        event(log, "unauthenticated call refused", logging.WARNING,
              method=handler_call_details.method, reason=reason)

        def deny(behavior, streams):
            def refuse(request, context):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

            return refuse

        return _with_behavior(handler, deny)


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
    """Sets the as-of clock from metadata for the call and maps exceptions to status codes."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        def wrap(behavior, streams):
            if streams:
                def stream(request, context):
                    started = time.perf_counter()
                    try:
                        with clock.use_as_of(clock.from_metadata(context.invocation_metadata())):
                            yield from behavior(request, context)
                    except Exception as exc:  # noqa: BLE001 - mapped to a status, never swallowed
                        if not context.is_active():  # the client went away (e.g. ended a reflection stream)
                            event(log, "call cancelled by the client", logging.INFO, method=method)
                            return
                        _report(context, method, exc, started)

                return stream

            def unary(request, context):
                started = time.perf_counter()
                try:
                    with clock.use_as_of(clock.from_metadata(context.invocation_metadata())):
                        return behavior(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped to a status, never swallowed
                    _report(context, method, exc, started)

            return unary

        return _with_behavior(handler, wrap)
