"""Test helpers: free ports, an in-process server with the real plumbing, a tiny test service."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

import grpc

from services.common.config import CommonConfig, load_common
from services.common.server import RunningServer, start_server

TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_config(service: str = "display", token: str | None = TOKEN, **extra: str) -> CommonConfig:
    env = {f"TRADER_{service.upper()}_ADDR": f"127.0.0.1:{free_port()}", **extra}
    if token is None:
        env["TRADER_AUTH_DISABLED"] = "1"
    else:
        env["TRADER_API_TOKEN"] = token
    return load_common(service, env)


def raw_methods(service: str, methods: dict[str, Callable]) -> Callable[[grpc.Server], None]:
    """Register `service` with unary methods on raw bytes: handler(request_bytes, context) -> bytes."""
    handlers = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()}
    return lambda server: server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))


@contextlib.contextmanager
def serving(config: CommonConfig, register: Callable[[grpc.Server], None]) -> Iterator[RunningServer]:
    running = start_server(config, register, max_workers=4)
    try:
        yield running
    finally:
        running.stop(0)


def call_raw(channel: grpc.Channel, method: str, payload: bytes = b"", **kwargs) -> bytes:
    return channel.unary_unary(method)(payload, **kwargs)
