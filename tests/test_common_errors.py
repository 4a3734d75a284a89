"""Domain errors map to the documented status codes; unexpected errors become INTERNAL."""

import grpc
import pytest

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
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
