"""Auth interceptor: refuses missing and wrong tokens, lets health and reflection through."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from services.common.interceptors import bearer_token
from tests.helpers import TOKEN, call_raw, make_config, raw_methods, serving

METHOD = "/trader.display.v1.Display/Ping"


@pytest.fixture
def server_channel():
    config = make_config("display")
    with serving(config, raw_methods("trader.display.v1.Display", {"Ping": lambda req, ctx: b"pong"})):
        with grpc.insecure_channel(config.listen_address) as channel:
            yield channel


def test_missing_token_is_unauthenticated(server_channel):
    with pytest.raises(grpc.RpcError) as caught:
        call_raw(server_channel, METHOD)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing" in caught.value.details()


@pytest.mark.parametrize("header", ["Bearer wrong-token-0123456789", "Basic " + TOKEN, TOKEN, "Bearer "])
def test_wrong_token_is_unauthenticated(server_channel, header):
    with pytest.raises(grpc.RpcError) as caught:
        call_raw(server_channel, METHOD, metadata=[("authorization", header)])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_right_token_passes(server_channel, scheme):
    assert call_raw(server_channel, METHOD, metadata=[("authorization", f"{scheme} {TOKEN}")]) == b"pong"


def test_health_needs_no_token(server_channel):
    stub = health_pb2_grpc.HealthStub(server_channel)
    for service in ("", "trader.display.v1.Display"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_no_token(server_channel):
    services = ProtoReflectionDescriptorDatabase(server_channel).get_services()
    assert "trader.display.v1.Display" in services
    assert "grpc.health.v1.Health" in services


def test_auth_disabled_only_when_asked():
    config = make_config("display", token=None)
    assert config.api_token is None
    with serving(config, raw_methods("trader.display.v1.Display", {"Ping": lambda req, ctx: b"pong"})):
        with grpc.insecure_channel(config.listen_address) as channel:
            assert call_raw(channel, METHOD) == b"pong"


def test_bearer_token_parsing():
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", "Token abc")]) == ""
    assert bearer_token([("other", "x")]) is None


def test_every_call_is_checked_though_the_wrapped_handler_is_kept(server_channel):
    right = [("authorization", f"Bearer {TOKEN}")]
    for metadata, allowed in ((right, True), ([], False), ([("authorization", "Bearer wrong")], False),
                              (right, True)):
        if allowed:
            assert call_raw(server_channel, METHOD, metadata=metadata) == b"pong"
        else:
            with pytest.raises(grpc.RpcError) as caught:
                call_raw(server_channel, METHOD, metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_bad_as_of_time_is_invalid_argument_after_the_token(server_channel):
    with pytest.raises(grpc.RpcError) as caught:
        call_raw(server_channel, METHOD, metadata=[("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", "soon")])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("x-trader-as-of")
    with pytest.raises(grpc.RpcError) as caught:  # without the token, the token is what is refused
        call_raw(server_channel, METHOD, metadata=[("x-trader-as-of", "soon")])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
