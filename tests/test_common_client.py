"""Client factory: reads retry on UNAVAILABLE, writes never do; every call has a deadline."""

import threading
import time
from datetime import UTC, datetime

import grpc
import pytest

from services.common import clock
from services.common.client import Clients, RetryPolicy, is_read, open_channel
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


# --- a restarted peer (issue 9: calls failed at once while the channel backed off for seconds) ---

def test_a_call_waits_for_a_restarting_peer_within_its_deadline():
    config = make_config("display")
    register = raw_methods("trader.display.v1.Display", {"PutThing": lambda request, context: b"done"})
    with open_channel(config.listen_address, TOKEN, 10) as channel:
        with serving(config, register):
            assert call_raw(channel, "/trader.display.v1.Display/PutThing") == b"done"
        # The peer is gone. A write issued now waits for it rather than failing at once ...
        result = {}
        caller = threading.Thread(target=lambda: result.update(
            reply=call_raw(channel, "/trader.display.v1.Display/PutThing")))
        caller.start()
        time.sleep(1.5)  # longer than gRPC's default first reconnect back-off (1 s)
        assert caller.is_alive()
        # ... and succeeds once the peer is back.
        with serving(config, register):
            caller.join(timeout=10)
            assert result == {"reply": b"done"}


def test_a_call_to_a_peer_that_stays_down_ends_at_its_deadline():
    config = make_config("display")
    with open_channel(config.listen_address, TOKEN, 0.5) as channel, pytest.raises(grpc.RpcError) as caught:
        call_raw(channel, "/trader.display.v1.Display/PutThing")
    assert caught.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)


def test_wait_serving_watches_health():
    config = make_config("display")
    clients = Clients(config)
    try:
        assert clients.health("display") == "UNREACHABLE"
        assert not clients.wait_serving(["display"], 0.3)
        with serving(config, raw_methods("trader.display.v1.Display", {})) as running:
            assert clients.wait_serving(["display"], 10)
            running.set_serving(False)
            assert clients.health("display") == "NOT_SERVING"
    finally:
        clients.close()


# --- the retry schedule and what every call carries (one channel layer since round 2 of issue 11) ---

def test_a_read_that_stays_unavailable_is_tried_four_times_with_backoff():
    calls = []
    config = make_config("display")

    def down(request, context):
        calls.append(1)
        context.abort(grpc.StatusCode.UNAVAILABLE, "down")

    waits = []
    retry = RetryPolicy(sleep=waits.append)
    with serving(config, raw_methods("trader.display.v1.Display", {"GetThing": down})), \
            open_channel(config.listen_address, TOKEN, 5, retry=retry) as channel, \
            pytest.raises(grpc.RpcError) as caught:
        call_raw(channel, "/trader.display.v1.Display/GetThing")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(calls) == 4 and waits == [0.1, 0.2, 0.4]


def test_a_read_refused_otherwise_is_not_retried():
    calls = []
    config = make_config("display")

    def refuse(request, context):
        calls.append(1)
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    with serving(config, raw_methods("trader.display.v1.Display", {"GetThing": refuse})), \
            open_channel(config.listen_address, TOKEN, 5) as channel, pytest.raises(grpc.RpcError) as caught:
        call_raw(channel, "/trader.display.v1.Display/GetThing")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and len(calls) == 1


def test_every_call_carries_the_token_and_its_own_as_of_time():
    seen = []
    config = make_config("display")

    def record(request, context):
        metadata = dict(context.invocation_metadata())
        seen.append((metadata.get("authorization"), metadata.get(clock.METADATA_KEY), metadata.get("x-extra")))
        return b"ok"

    first, second = datetime(2016, 3, 1, 20, 30, tzinfo=UTC), datetime(2016, 3, 2, 20, 30, tzinfo=UTC)
    with serving(config, raw_methods("trader.display.v1.Display", {"PutThing": record})), \
            open_channel(config.listen_address, TOKEN, 5) as channel:
        method = "/trader.display.v1.Display/PutThing"
        with clock.use_as_of(first):
            call_raw(channel, method)
            call_raw(channel, method, metadata=[("x-extra", "1")])
        with clock.use_as_of(second):
            call_raw(channel, method)
        call_raw(channel, method)  # the wall clock: no as-of time
        with clock.use_as_of(first):
            call_raw(channel, method)
    bearer = f"Bearer {TOKEN}"
    assert seen == [(bearer, first.isoformat(), None), (bearer, first.isoformat(), "1"),
                    (bearer, second.isoformat(), None), (bearer, None, None), (bearer, first.isoformat(), None)]
