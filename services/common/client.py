"""Client factory: channels to the other services with auth, as-of propagation, a deadline on
every call, and retries with backoff on UNAVAILABLE for reads only.

A method is a read when its name starts with Get, List or Check (the contract's naming rule);
anything else (SubmitOrder, ExecutePlan, RecordDeposit, ...) is never retried blindly.
"""

from __future__ import annotations

import collections
import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_exponential

from services.common import clock
from services.common.config import CommonConfig

READ_PREFIXES = ("Get", "List", "Check")


def is_read(method: str) -> bool:
    return method.rsplit("/", 1)[-1].startswith(READ_PREFIXES)


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                            "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class OutgoingInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the bearer token and the current as-of time; sets the default deadline."""

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
        return _CallDetails(details.method, details.timeout or self._timeout_s, metadata,
                            details.credentials, details.wait_for_ready, details.compression)

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


def open_channel(address: str, token: str | None, timeout_s: float) -> grpc.Channel:
    channel = grpc.insecure_channel(address)
    return grpc.intercept_channel(channel, RetryReadsInterceptor(), OutgoingInterceptor(token, timeout_s))


class Clients:
    """Lazily opened stubs to the other services, e.g. `clients.stub("data", MarketDataStub)`."""

    def __init__(self, config: CommonConfig):
        self._config = config
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def channel(self, service: str) -> grpc.Channel:
        with self._lock:
            if service not in self._channels:
                self._channels[service] = open_channel(
                    self._config.address_of(service), self._config.api_token, self._config.call_timeout_s
                )
            return self._channels[service]

    def stub(self, service: str, stub_class):
        return stub_class(self.channel(service))

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
