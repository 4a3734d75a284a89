"""Fuzz every RPC of the six services with requests generated from their descriptors.

Each generated request (with an odd `x-trader-as-of` header or none) gets an answer or a
precise refusal, never INTERNAL, UNKNOWN, DATA_LOSS, UNAVAILABLE or RESOURCE_EXHAUSTED; and a
write refused for bad input changes nothing the services store. `make test` runs a few examples
per RPC (derandomized, so a run is repeatable); `pytest -m long` runs many more, randomly.
"""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from tests import fuzz
from tests.helpers import TOKEN
from tests.suite import Suite

pytestmark = pytest.mark.e2e
AUTH = [("authorization", f"Bearer {TOKEN}")]
METHODS = fuzz.all_methods()
QUICK_EXAMPLES = 10
SLOW_METHODS = {"RunSyncCycle": 3, "GetRecommendations": 5, "RefreshNextActions": 5, "SyncPrices": 5}
LONG_EXAMPLES = 250
QUICK_SEQUENCES, LONG_SEQUENCES = 15, 500  # sequences of up to 8 calls
# Refusals for bad input change nothing at all; a rule's refusal of an order is recorded on it.
INPUT_REFUSALS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
                  grpc.StatusCode.OUT_OF_RANGE)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """Six fresh services with some history: funded, a deposit, a cycle that bought something."""
    suite = Suite(tmp_path_factory.mktemp("fuzz")).start()
    metadata = AUTH + [("x-trader-as-of", "2018-01-02T22:00:00+00:00")]
    trading_pb2_grpc.TradingStub(suite.channel("trading")).FundPaperAccount(
        trading_pb2.FundPaperAccountRequest(amount=10_000, reference="fuzz-fund"), metadata=metadata)
    portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio")).RecordDeposit(
        portfolio_pb2.RecordDepositRequest(amount=10_000, reference="fuzz-fund"), metadata=metadata)
    gateway_pb2_grpc.GatewayStub(suite.channel("gateway")).RunSyncCycle(
        gateway_pb2.RunSyncCycleRequest(), metadata=metadata, timeout=120)
    channels = {name: suite.channel(name) for name in suite.addresses}
    yield suite, channels, fuzz.State(channels, AUTH)
    for channel in channels.values():
        channel.close()
    suite.terminate()


def invoke(channel: grpc.Channel, method: fuzz.Method, request, metadata) -> tuple[grpc.StatusCode, str]:
    """Call `method`; (code, details). A server stream is read up to its first message."""
    output = fuzz.message_class(method.descriptor.output_type)
    try:
        if method.descriptor.server_streaming:
            stream = channel.unary_stream(method.path, request_serializer=type(request).SerializeToString,
                                          response_deserializer=output.FromString)(request, metadata=metadata,
                                                                                   timeout=60)
            next(stream)
            stream.cancel()
        else:
            channel.unary_unary(method.path, request_serializer=type(request).SerializeToString,
                                response_deserializer=output.FromString)(request, metadata=metadata, timeout=60)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def describe(method, request, as_of) -> str:
    text = str(request)
    return f"{method} as of {as_of!r} with {text[:300]}{'...' if len(text) > 300 else ''}"


class Checker:
    """Calls one generated request and checks its answer; remembers what the services store
    (read again after each accepted write) to show that a refused write changed nothing."""

    def __init__(self, fuzzed):
        _, self.channels, self.state = fuzzed
        self.known = None

    def __call__(self, method: fuzz.Method, request, as_of) -> None:
        metadata = AUTH + ([("x-trader-as-of", as_of)] if as_of is not None else [])
        if method.mutates and self.known is None:
            self.known = self.state.read()
        before = self.known
        code, details = invoke(self.channels[method.service], method, request, metadata)
        assert code in fuzz.ACCEPTED_CODES, f"{code.name}: {details} for {describe(method, request, as_of)}"
        if not method.mutates:
            return
        if code in INPUT_REFUSALS:
            assert self.state.read() == before, f"refused {code.name} but changed: {describe(method, request, as_of)}"
            return
        if code == grpc.StatusCode.FAILED_PRECONDITION:  # a rule refused: only the refused order may be recorded
            after = self.state.read(orders=False)
            assert after == {k: v for k, v in before.items() if k != "orders"}, \
                f"refused {code.name} but changed: {describe(method, request, as_of)}"
        self.known = None  # accepted (or an order recorded): read again before the next write


def fuzz_method(fuzzed, method: fuzz.Method, hypothesis_settings: settings) -> None:
    checker = Checker(fuzzed)

    @given(request=fuzz.request_strategy(method), as_of=fuzz.as_of_strategy)
    @hypothesis_settings
    def check(request, as_of):
        checker(method, request, as_of)

    check()


def fuzz_sequences(fuzzed, hypothesis_settings: settings) -> None:
    checker = Checker(fuzzed)
    cheap = [m for m in METHODS if m.name not in SLOW_METHODS]

    @given(calls=st.lists(st.tuples(fuzz.call_strategy(cheap), fuzz.as_of_strategy), min_size=1, max_size=8))
    @hypothesis_settings
    def check(calls):
        for (method, request), as_of in calls:
            checker(method, request, as_of)

    check()


@pytest.mark.parametrize("method", METHODS, ids=str)
def test_generated_requests_get_precise_answers(fuzzed, method):
    fuzz_method(fuzzed, method, settings(
        max_examples=SLOW_METHODS.get(method.name, QUICK_EXAMPLES), deadline=None, derandomize=True,
        database=None, suppress_health_check=list(HealthCheck)))


@pytest.mark.long
@pytest.mark.parametrize("method", METHODS, ids=str)
def test_generated_requests_long_run(fuzzed, method):
    fuzz_method(fuzzed, method, settings(max_examples=LONG_EXAMPLES, deadline=None,
                                         suppress_health_check=list(HealthCheck)))


def test_generated_sequences_of_requests_get_precise_answers(fuzzed):
    fuzz_sequences(fuzzed, settings(max_examples=QUICK_SEQUENCES, deadline=None, derandomize=True, database=None,
                                    suppress_health_check=list(HealthCheck)))


@pytest.mark.long
def test_generated_sequences_long_run(fuzzed):
    fuzz_sequences(fuzzed, settings(max_examples=LONG_SEQUENCES, deadline=None,
                                    suppress_health_check=list(HealthCheck)))


def test_every_rpc_is_fuzzed():
    """The generator covers every RPC the six services declare (44 today)."""
    declared = sum(len(svc.methods) for module in fuzz.MODULES.values()
                   for svc in module.DESCRIPTOR.services_by_name.values())
    assert len(METHODS) == declared >= 44
