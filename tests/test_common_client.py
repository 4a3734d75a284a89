"""Client factory: reads retry on UNAVAILABLE, writes never do; every call has a deadline."""

import threading
import time

import grpc
import pytest

from services.common.client import is_read, open_channel
from tests.helpers import TOKEN, call_raw, make_config, raw_methods, serving


def test_read_naming_rule():
    assert is_read("/trader.data.v1.MarketData/GetQuotes")
    assert is_read("/trader.trading.v1.Trading/ListTrades")
    assert not is_read("/trader.trading.v1.Trading/SubmitOrder")
    assert not is_read("/trader.trading.v1.Trading/ExecutePlan")


@pytest.fixture
def flaky():
    calls = {"GetThing": 0, "PutThing": 0}
    lock = threading.Lock()

    def failing_twice(name):
        def handler(request, context):
            with lock:
                calls[name] += 1
                attempt = calls[name]
            if attempt <= 2:
                context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
            return b"ok"
        return handler

    def slow(request, context):
        time.sleep(2)
        return b"late"

    config = make_config("display")
    methods = {"GetThing": failing_twice("GetThing"), "PutThing": failing_twice("PutThing"), "GetSlow": slow}
    with serving(config, raw_methods("trader.display.v1.Display", methods)):
        yield config.listen_address, calls


def test_reads_are_retried_on_unavailable(flaky):
    address, calls = flaky
    with open_channel(address, TOKEN, 5) as channel:
        assert call_raw(channel, "/trader.display.v1.Display/GetThing") == b"ok"
    assert calls["GetThing"] == 3


def test_writes_are_never_retried(flaky):
    address, calls = flaky
    with open_channel(address, TOKEN, 5) as channel, pytest.raises(grpc.RpcError) as caught:
        call_raw(channel, "/trader.display.v1.Display/PutThing")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert calls["PutThing"] == 1


def test_default_deadline_applies(flaky):
    address, _ = flaky
    with open_channel(address, TOKEN, 0.3) as channel, pytest.raises(grpc.RpcError) as caught:
        call_raw(channel, "/trader.display.v1.Display/GetSlow")
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
