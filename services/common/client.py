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

import collections
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_exponential

from services.common import clock
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


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                            "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class OutgoingInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the bearer token and the current as-of time; sets the default deadline; waits for a
    connection (wait_for_ready) unless the call says otherwise."""

    def __init__(self, token: str | None, timeout_s: float):
        self._token = token
        self._timeout_s = timeout_s

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = list(details.metadata or ())
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        as_of = clock.as_of()
        if as_of is not None:
            metadata.append((clock.METADATA_KEY, clock.format_as_of(as_of)))
        wait_for_ready = True if details.wait_for_ready is None else details.wait_for_ready
        return _CallDetails(details.method, details.timeout or self._timeout_s, metadata,
                            details.credentials, wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)


class RetryReadsInterceptor(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, attempts: int = 4, first_wait_s: float = 0.1, max_wait_s: float = 2.0):
        self._attempts = attempts
        self._first_wait_s = first_wait_s
        self._max_wait_s = max_wait_s

    def intercept_unary_unary(self, continuation, client_call_details, request):
        if not is_read(client_call_details.method):
            return continuation(client_call_details, request)
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._first_wait_s, max=self._max_wait_s),
            retry=retry_if_result(lambda outcome: outcome.code() == grpc.StatusCode.UNAVAILABLE),
            retry_error_callback=lambda state: state.outcome.result(),
        )
        return retrying(continuation, client_call_details, request)


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


def _intercepted(channel: grpc.Channel, token: str | None, timeout_s: float) -> grpc.Channel:
    return grpc.intercept_channel(channel, RetryReadsInterceptor(), OutgoingInterceptor(token, timeout_s))


FROM_ENVIRONMENT: Any = object()


def open_channel(address: str, token: str | None, timeout_s: float, tls: ClientTls | None = FROM_ENVIRONMENT,
                 ) -> grpc.Channel:
    """A channel for command-line tools. TLS follows the TRADER_TLS_* variables unless `tls` is
    given (None: plain text); wrong TLS variables raise ConfigError."""
    if tls is FROM_ENVIRONMENT:
        tls = load_client_tls()
    return _intercepted(raw_channel(address, tls), token, timeout_s)


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
