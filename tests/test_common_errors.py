"""Domain errors map to the documented status codes; unexpected errors become INTERNAL."""

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.client import open_channel
from services.common.errors import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_CHARS,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    shorten,
    status_for,
)
from tests.helpers import TOKEN, call_raw, make_config, raw_methods, serving

CASES = [
    (InvalidArgument("quantity", "must be positive"), grpc.StatusCode.INVALID_ARGUMENT, "quantity: must be positive"),
    (NotFound("unknown symbol 'X'"), grpc.StatusCode.NOT_FOUND, "unknown symbol 'X'"),
    (AlreadyExists("client_order_id 'a' was used"), grpc.StatusCode.ALREADY_EXISTS, "client_order_id 'a' was used"),
    (FailedPrecondition("cash", "needs 10"), grpc.StatusCode.FAILED_PRECONDITION, "cash: needs 10"),
    (Unavailable("broker down"), grpc.StatusCode.UNAVAILABLE, "broker down"),
]


@pytest.mark.parametrize(("error", "code", "message"), CASES)
def test_status_for_domain_errors(error, code, message):
    assert status_for(error) == (code, message)


def test_unexpected_error_is_internal_without_leaking_details():
    code, message = status_for(ZeroDivisionError("secret detail"))
    assert code == grpc.StatusCode.INTERNAL
    assert "secret" not in message


@pytest.fixture
def channel():
    def raiser(index):
        def handler(request, context):
            if index == len(CASES):
                raise ValueError("boom")
            raise CASES[index][0]
        return handler

    methods = {f"Fail{i}": raiser(i) for i in range(len(CASES) + 1)}
    config = make_config("display")
    with serving(config, raw_methods("trader.display.v1.Display", methods)):
        with grpc.insecure_channel(config.listen_address) as channel:
            yield channel


@pytest.mark.parametrize("index", range(len(CASES)))
def test_server_maps_domain_errors(channel, index):
    with pytest.raises(grpc.RpcError) as caught:
        call_raw(channel, f"/trader.display.v1.Display/Fail{index}", metadata=[("authorization", f"Bearer {TOKEN}")])
    _, code, message = CASES[index]
    assert caught.value.code() == code
    assert caught.value.details() == message


def test_server_maps_bugs_to_internal(channel):
    with pytest.raises(grpc.RpcError) as caught:
        call_raw(channel, f"/trader.display.v1.Display/Fail{len(CASES)}",
                 metadata=[("authorization", f"Bearer {TOKEN}")])
    assert caught.value.code() == grpc.StatusCode.INTERNAL


# --- a peer's status passed on; echoed values cut short (issue 9) ---

class PeerError(grpc.RpcError):
    """What a failed call through a stub raises."""

    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


@pytest.mark.parametrize("code", [grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS])
def test_a_peers_refusal_keeps_its_code_and_message(code):
    assert status_for(PeerError(code, "fx_rate_missing: no exchange rate for CHF (base EUR)")) == \
        (code, "fx_rate_missing: no exchange rate for CHF (base EUR)")


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_peer_that_is_down_is_unavailable(code):
    assert status_for(PeerError(code, "connection refused"))[0] == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAUTHENTICATED])
def test_a_peers_fault_is_ours(code):
    assert status_for(PeerError(code, "boom"))[0] == grpc.StatusCode.INTERNAL


@given(st.text(max_size=5000))
def test_messages_are_cut_to_fit_a_header_and_cutting_twice_changes_nothing(text):
    cut = shorten(text)
    assert len(cut) <= MAX_MESSAGE_CHARS and len(cut.encode("utf-8", "replace")) <= MAX_MESSAGE_BYTES
    assert shorten(cut) == cut
    if cut != text:
        assert "more characters cut" in cut


def test_a_long_echoed_value_keeps_its_status_code():
    symbol = "\N{GRINNING FACE}" * 2500
    code, message = status_for(NotFound(f"unknown security {symbol!r}"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert message.startswith("unknown security '\N{GRINNING FACE}") and "more characters cut" in message


@pytest.fixture
def relay():
    """Server B refuses with whatever the request names; server A asks B and passes its answer on."""
    config_b, config_a = make_config("data"), make_config("portfolio")
    refusals = {b"missing": NotFound("unknown security '" + "\N{GRINNING FACE}" * 2500 + "'"),
                b"rule": FailedPrecondition("fx_rate_missing", "no exchange rate for CHF (base EUR)"),
                b"bad": InvalidArgument("symbol", "is required"), b"down": Unavailable("broker down")}

    def refuse(request, context):
        raise refusals[request]

    def ask_b(request, context):
        with open_channel(config_b.listen_address, TOKEN, 5) as channel:
            return call_raw(channel, "/trader.data.v1.MarketData/Refuse", request)

    with serving(config_b, raw_methods("trader.data.v1.MarketData", {"Refuse": refuse})), \
            serving(config_a, raw_methods("trader.portfolio.v1.Portfolio", {"AskB": ask_b})):
        with grpc.insecure_channel(config_a.listen_address) as channel:
            yield channel


@pytest.mark.parametrize(("kind", "code", "start"), [
    (b"missing", grpc.StatusCode.NOT_FOUND, "unknown security '\N{GRINNING FACE}"),
    (b"rule", grpc.StatusCode.FAILED_PRECONDITION, "fx_rate_missing: no exchange rate for CHF"),
    (b"bad", grpc.StatusCode.INVALID_ARGUMENT, "symbol: is required"),
    (b"down", grpc.StatusCode.UNAVAILABLE, "dependency unavailable: broker down"),
])
def test_a_refusal_reaches_the_caller_through_a_peer(relay, kind, code, start):
    with pytest.raises(grpc.RpcError) as caught:
        call_raw(relay, "/trader.portfolio.v1.Portfolio/AskB", kind, metadata=[("authorization", f"Bearer {TOKEN}")])
    assert caught.value.code() == code
    assert caught.value.details().startswith(start)
