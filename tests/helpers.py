"""Test helpers: free ports, an in-process server with the real plumbing, a tiny test service."""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Callable, Iterator

import grpc

from services.common.config import CommonConfig, load_common
from services.common.server import RunningServer, start_server

TOKEN = "test-token-0123456789abcdef"


# Ports handed out below the kernel's ephemeral range (Linux default 32768-60999), so an outgoing
# connection cannot take one between the test picking it and a server binding it, and never the
# same one twice in a test run (a port closed at once may be offered again).
_PORTS = range(20_000, 32_000)
_handed_out: set[int] = set()
_pick = random.Random(os.getpid())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and was not handed out before in this process."""
    for _ in range(1_000):
        port = _pick.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port in 20000-31999")


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
