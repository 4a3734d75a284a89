"""The call-context interceptor: a stream the client ended is not reported as INTERNAL."""

import logging

import grpc

from services.common.interceptors import CallContextInterceptor


class EndedStreamContext:
    def invocation_metadata(self):
        return ()

    def is_active(self):
        return False  # the client cancelled

    def code(self):
        return None

    def abort(self, code, message):  # pragma: no cover - must not be reached
        raise AssertionError(f"aborted with {code}: {message}")


class Details:
    method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    invocation_metadata = ()


def test_a_stream_the_client_ended_is_logged_as_cancelled_not_internal(caplog):
    def behavior(requests, context):
        yield next(requests)
        raise grpc.RpcError("the client went away")  # what reading a cancelled request stream raises

    handler = grpc.stream_stream_rpc_method_handler(behavior)
    wrapped = CallContextInterceptor().intercept_service(lambda _: handler, Details())
    with caplog.at_level(logging.INFO):
        replies = list(wrapped.stream_stream(iter(["first"]), EndedStreamContext()))
    assert replies == ["first"]
    assert "call cancelled by the client" in caplog.text and "INTERNAL" not in caplog.text
