"""Client factory: channels to the other services with auth, as-of propagation, a deadline on
every call, and retries with backoff on UNAVAILABLE for reads only.

A method is a read when its name starts with Get, List or Check (the contract's naming rule);
anything else (SubmitOrder, ExecutePlan, RecordDeposit, ...) is never retried blindly.

Recovering from a restarted peer: channels reconnect after at most RECONNECT_BACKOFF_MAX_MS
(gRPC's default grows to 120 s), and every call waits for a connection within its deadline
(wait_for_ready) instead of failing at once while the peer is starting. Waiting is safe for
every call, writes included: a call waiting for a connection has not been sent, so nothing can
happen twice; once sent, a lost reply is reported as before and never resent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from services.common import clock, tracing
from services.common.config import SERVICES, ClientTls, CommonConfig, load_client_tls

READ_PREFIXES = ("Get", "List", "Check")
RECONNECT_BACKOFF_MAX_MS = 1000
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
)


def is_read(method: str) -> bool:
    return method.rsplit("/", 1)[-1].startswith(READ_PREFIXES)


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) and hasattr(exc, "code") and exc.code() == grpc.StatusCode.UNAVAILABLE


class RetryPolicy:
    """Reads answered UNAVAILABLE are tried again with exponential backoff (tenacity): up to
    `attempts` in all, waiting `first_wait_s`, then twice as long each time, at most `max_wait_s`."""

    def __init__(self, attempts: int = 4, first_wait_s: float = 0.1, max_wait_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.attempts = attempts
        self.first_wait_s = first_wait_s
        self.max_wait_s = max_wait_s
        self._sleep = sleep

    def again(self, first_error: grpc.RpcError, call: Callable[[], Any]) -> Any:
        """The retries after a first attempt that failed with `first_error` (UNAVAILABLE): the
        same schedule as if tenacity had made that attempt (it is handed to tenacity as attempt 1,
        so the waits and the count do not change). Raises the last attempt's error."""
        pending = [first_error]

        def attempt() -> Any:
            if pending:
                raise pending.pop()
            return call()

        return Retrying(stop=stop_after_attempt(self.attempts),
                        wait=wait_exponential(multiplier=self.first_wait_s, max=self.max_wait_s),
                        retry=retry_if_exception(_unavailable), reraise=True, sleep=self._sleep)(attempt)


class CallDefaults:
    """What every outgoing call carries: the bearer token, the current as-of time (when there is
    one), the current trace context (where this layer carries it: tracing.layers_propagate), the
    default deadline, and wait_for_ready unless the call says otherwise."""

    def __init__(self, token: str | None, timeout_s: float):
        self._auth = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout_s = timeout_s
        self._formatted: tuple[datetime | None, tuple] = (None, ())  # the last as-of time and its metadata

    def metadata(self, given) -> tuple:
        as_of = clock.as_of()
        if as_of is None:
            carried = ()
        else:
            last, carried = self._formatted  # one tuple: read and replaced atomically across threads
            if last != as_of:
                carried = ((clock.METADATA_KEY, clock.format_as_of(as_of)),)
                self._formatted = (as_of, carried)
        metadata = (*given, *self._auth, *carried) if given else (*self._auth, *carried)
        return tracing.with_trace_context(metadata) if tracing.layers_propagate() else metadata


class _UnaryUnary(grpc.UnaryUnaryMultiCallable):
    """A unary call with the defaults; a read (`retry` given) is tried again after UNAVAILABLE.
    The first attempt is a plain call: the retry machinery is only built once it failed."""

    def __init__(self, inner: grpc.UnaryUnaryMultiCallable, defaults: CallDefaults, retry: RetryPolicy | None):
        self._inner = inner
        self._defaults = defaults
        self._retry = retry

    def _invoke(self, call, request, timeout, metadata, credentials, wait_for_ready, compression):
        defaults = self._defaults
        arguments = {"timeout": timeout or defaults.timeout_s, "metadata": defaults.metadata(metadata),
                     "credentials": credentials, "wait_for_ready": True if wait_for_ready is None else wait_for_ready,
                     "compression": compression}
        try:
            return call(request, **arguments)
        except grpc.RpcError as exc:
            if self._retry is None or not _unavailable(exc):
                raise
            first_error = exc
        return self._retry.again(first_error, lambda: call(request, **arguments))

    def __call__(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None,
                 compression=None):
        return self._invoke(self._inner, request, timeout, metadata, credentials, wait_for_ready, compression)

    def with_call(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None,
                  compression=None):
        return self._invoke(self._inner.with_call, request, timeout, metadata, credentials, wait_for_ready,
                            compression)

    def future(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None,
               compression=None):
        """With the defaults but never retried: a future's outcome is its caller's to handle."""
        defaults = self._defaults
        return self._inner.future(request, timeout=timeout or defaults.timeout_s,
                                  metadata=defaults.metadata(metadata), credentials=credentials,
                                  wait_for_ready=True if wait_for_ready is None else wait_for_ready,
                                  compression=compression)


class _Streaming:
    """A server-streaming call with the defaults; never retried."""

    def __init__(self, inner, defaults: CallDefaults):
        self._inner = inner
        self._defaults = defaults

    def _arguments(self, timeout, metadata, credentials, wait_for_ready, compression) -> dict:
        defaults = self._defaults
        return {"timeout": timeout or defaults.timeout_s, "metadata": defaults.metadata(metadata),
                "credentials": credentials, "wait_for_ready": True if wait_for_ready is None else wait_for_ready,
                "compression": compression}

    def __call__(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None,
                 compression=None):
        return self._inner(request, **self._arguments(timeout, metadata, credentials, wait_for_ready, compression))

    def with_call(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None,
                  compression=None):
        return self._inner.with_call(request, **self._arguments(timeout, metadata, credentials, wait_for_ready,
                                                                compression))

    def future(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None,
               compression=None):
        return self._inner.future(request, **self._arguments(timeout, metadata, credentials, wait_for_ready,
                                                             compression))


class DefaultsChannel(grpc.Channel):
    """A channel whose unary and server-streaming calls carry `CallDefaults` and whose reads are
    retried (`RetryPolicy`).

    One thin layer over the (traced) channel, built once per method when a stub is made: it
    replaces two grpc.intercept_channel interceptors, which built a call-details tuple, a
    continuation and the inner channel's multi-callables on every call, and a tenacity Retrying
    per read (bench/rpc_overhead.py)."""

    def __init__(self, channel: grpc.Channel, defaults: CallDefaults, retry: RetryPolicy):
        self._channel = channel
        self._defaults = defaults
        self._retry = retry

    def unary_unary(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        inner = self._channel.unary_unary(method, request_serializer, response_deserializer, _registered_method)
        return _UnaryUnary(inner, self._defaults, self._retry if is_read(method) else None)

    def unary_stream(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        return _Streaming(self._channel.unary_stream(method, request_serializer, response_deserializer,
                                                     _registered_method), self._defaults)

    # Client streams (server reflection's) go as they are: no default deadline on a long-lived stream.
    def stream_unary(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        return self._channel.stream_unary(method, request_serializer, response_deserializer, _registered_method)

    def stream_stream(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        return self._channel.stream_stream(method, request_serializer, response_deserializer, _registered_method)

    def subscribe(self, callback, try_to_connect=False):
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback):
        self._channel.unsubscribe(callback)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()
        return False


def health_status(channel: grpc.Channel, service_name: str, timeout_s: float = 1.0) -> str:
    """A service's grpc.health.v1 status (SERVING, NOT_SERVING, ...), or UNREACHABLE."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service_name),
                                                          timeout=timeout_s)
    except grpc.RpcError:
        return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    """Trust `tls.root_certificates`; present the client certificate when there is one (mTLS)."""
    return grpc.ssl_channel_credentials(tls.root_certificates, tls.private_key, tls.certificate_chain)


def raw_channel(address: str, tls: ClientTls | None, options=CHANNEL_OPTIONS) -> grpc.Channel:
    """A channel without interceptors (health checks, reflection): TLS with `tls`, else plain text."""
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, channel_credentials(tls), options=options)


def _intercepted(channel: grpc.Channel, token: str | None, timeout_s: float,
                 retry: RetryPolicy | None = None) -> grpc.Channel:
    return DefaultsChannel(channel, CallDefaults(token, timeout_s), retry or RetryPolicy())


FROM_ENVIRONMENT: Any = object()


def open_channel(address: str, token: str | None, timeout_s: float, tls: ClientTls | None = FROM_ENVIRONMENT,
                 retry: RetryPolicy | None = None) -> grpc.Channel:
    """A channel for command-line tools. TLS follows the TRADER_TLS_* variables unless `tls` is
    given (None: plain text); wrong TLS variables raise ConfigError. `retry`: how reads are
    tried again (by default RetryPolicy())."""
    if tls is FROM_ENVIRONMENT:
        tls = load_client_tls()
    return _intercepted(raw_channel(address, tls), token, timeout_s, retry)


class Clients:
    """Lazily opened stubs to the other services, e.g. `clients.stub("data", MarketDataStub)`."""

    def __init__(self, config: CommonConfig):
        self._config = config
        self._raw: dict[str, grpc.Channel] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def channel(self, service: str) -> grpc.Channel:
        with self._lock:
            if service not in self._channels:
                raw = raw_channel(self._config.address_of(service), self._config.client_tls)
                self._raw[service] = raw
                self._channels[service] = _intercepted(raw, self._config.api_token, self._config.call_timeout_s)
            return self._channels[service]

    def stub(self, service: str, stub_class):
        return stub_class(self.channel(service))

    def health(self, service: str, timeout_s: float = 0.5) -> str:
        """A peer's grpc.health.v1 status (SERVING, NOT_SERVING, UNREACHABLE, ...)."""
        self.channel(service)
        return health_status(self._raw[service], SERVICES[service][0], timeout_s)

    def wait_serving(self, services: Iterable[str], timeout_s: float,
                     stopped: Callable[[], bool] = lambda: False) -> bool:
        """Poll the peers' health until every one reports SERVING (True), `timeout_s` passes or
        `stopped()` (False). A peer that was restarted is reconnected to while waiting."""
        deadline = time.monotonic() + timeout_s
        pending = list(services)
        while True:
            pending = [s for s in pending if self.health(s) != "SERVING"]
            if not pending:
                return True
            if stopped() or time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def close(self) -> None:
        with self._lock:
            for channel in self._raw.values():
                channel.close()
            self._raw.clear()
            self._channels.clear()
