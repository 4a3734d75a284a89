"""The display service over gRPC: settings, streaming, next actions, the emulated device."""

import threading
import time

import grpc
import pytest
from trader.display.v1 import display_pb2, display_pb2_grpc
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from tests.helpers import TOKEN

pytestmark = pytest.mark.e2e
AUTH = [("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", "2018-01-03T22:00:00+00:00")]


@pytest.fixture(scope="module")
def display(running_suite):
    return display_pb2_grpc.DisplayStub(running_suite.channel("display"))


@pytest.mark.parametrize(("method", "request_", "field"), [
    ("SetBrightness", display_pb2.SetBrightnessRequest(brightness=256), "brightness"),
    ("SetBrightness", display_pb2.SetBrightnessRequest(brightness=-1), "brightness"),
    ("SetSpeed", display_pb2.SetSpeedRequest(speed_ms=9), "speed_ms"),
    ("SetSpeed", display_pb2.SetSpeedRequest(speed_ms=2001), "speed_ms"),
    ("PostMessage", display_pb2.PostMessageRequest(pool=display_pb2.ERROR, text="X", mode=42), "mode"),
])
def test_setting_refusals(display, method, request_, field):
    before = display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH)
    with pytest.raises(grpc.RpcError) as caught:
        getattr(display, method)(request_, metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and caught.value.details().startswith(field)
    after = display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH)
    assert (after.brightness, after.speed_ms, after.text) == (before.brightness, before.speed_ms, before.text)


def test_settings_apply(display):
    state = display.SetBrightness(display_pb2.SetBrightnessRequest(brightness=200), metadata=AUTH)
    assert state.brightness == 200
    state = display.SetSpeed(display_pb2.SetSpeedRequest(speed_ms=80), metadata=AUTH)
    assert (state.brightness, state.speed_ms) == (200, 80)


def test_watch_streams_every_change(display):
    received = []
    stream = display.WatchDisplay(display_pb2.WatchDisplayRequest(), metadata=AUTH, timeout=20)

    def read():
        for state in stream:
            received.append(state)
            if state.text == "WATCH 2":
                return

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.PROCESSING, text="watch 1", ttl_seconds=60),
                        metadata=AUTH)
    display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.PROCESSING, text="WATCH 2", ttl_seconds=60,
                                                       mode=display_pb2.MODE_TRADE), metadata=AUTH)
    reader.join(timeout=10)
    stream.cancel()
    texts = [s.text for s in received]
    assert "watch 1" in texts and texts[-1] == "WATCH 2"
    assert received[-1].mode == display_pb2.MODE_TRADE and received[-1].device_text == "WATCH 2"
    display.ClearMessage(display_pb2.ClearMessageRequest(pool=display_pb2.PROCESSING), metadata=AUTH)


def test_the_cycle_hands_the_display_its_next_actions(display, running_suite):
    trading_pb2_grpc.TradingStub(running_suite.channel("trading")).FundPaperAccount(
        trading_pb2.FundPaperAccountRequest(amount=20_000, reference="display-next-actions"), metadata=AUTH)
    cycle = gateway_pb2_grpc.GatewayStub(running_suite.channel("gateway")).RunSyncCycle(
        gateway_pb2.RunSyncCycleRequest(), metadata=AUTH, timeout=60)  # the portfolio mirrors the broker
    assert cycle.ok and cycle.last_trade.startswith("BUY ")
    parts = cycle.display_text.split(" | ")
    assert parts[0] == f"EUR {cycle.total_value_base:,.0f}" and parts[1] == f"CASH EUR {cycle.cash_base:,.0f}"
    assert len(parts) == 3 and parts[2].split()[0] == "BUY" and parts[2].split()[2] == "EUR"
    assert parts[2].split()[1] == cycle.last_trade.split()[2].split(".")[0]  # the step just placed


def test_next_actions_show_what_the_request_carries(display):
    for pool in (display_pb2.ERROR, display_pb2.PROCESSING):
        display.ClearMessage(display_pb2.ClearMessageRequest(pool=pool), metadata=AUTH)
    state = display.RefreshNextActions(display_pb2.RefreshNextActionsRequest(
        base_currency="EUR", total_value_base=12_345.4, cash_base=675, next_step=display_pb2.NextStep(
            side="BUY", symbol="AAPL.US", value_base=855.2)), metadata=AUTH)
    assert (state.pool, state.text, state.source) == (display_pb2.NEXT_ACTIONS,
                                                      "EUR 12,345 | CASH EUR 675 | BUY AAPL EUR 855", "next_actions")
    state = display.RefreshNextActions(display_pb2.RefreshNextActionsRequest(
        base_currency="USD", total_value_base=10, cash_base=-2), metadata=AUTH)
    assert state.text == "USD 10 | CASH USD -2"


@pytest.mark.parametrize(("request_", "field"), [
    (display_pb2.RefreshNextActionsRequest(total_value_base=1), "base_currency"),
    (display_pb2.RefreshNextActionsRequest(base_currency="EUR", total_value_base=float("nan")), "total_value_base"),
    (display_pb2.RefreshNextActionsRequest(base_currency="EUR", cash_base=float("inf")), "cash_base"),
    (display_pb2.RefreshNextActionsRequest(base_currency="EUR", next_step=display_pb2.NextStep(
        side="HOLD", symbol="AAPL.US")), "next_step.side"),
    (display_pb2.RefreshNextActionsRequest(base_currency="EUR", next_step=display_pb2.NextStep(side="BUY")),
     "next_step.symbol"),
    (display_pb2.RefreshNextActionsRequest(base_currency="EUR", next_step=display_pb2.NextStep(
        side="SELL", symbol="KO.US", value_base=-1)), "next_step.value_base"),
])
def test_next_actions_refuse_bad_input_and_change_nothing(display, request_, field):
    before = display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH)
    with pytest.raises(grpc.RpcError) as caught:
        display.RefreshNextActions(request_, metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and caught.value.details().startswith(field)
    assert display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH).text == before.text


def test_error_wins_and_reaches_the_emulated_device(display, running_suite):
    display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.NEXT_ACTIONS, text="EUR 1"), metadata=AUTH)
    state = display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.ERROR, text="Order failed €",
                                                               ttl_seconds=30), metadata=AUTH)
    assert (state.pool, state.mode, state.device_text) == (display_pb2.ERROR, display_pb2.MODE_ERROR,
                                                           "ORDER FAILED EUR")
    deadline = time.monotonic() + 10
    while state.device != display_pb2.DEVICE_CONNECTED and time.monotonic() < deadline:
        time.sleep(0.1)
        state = display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH)
    assert state.device == display_pb2.DEVICE_CONNECTED and state.device_detail.startswith("/dev/pts/")
    frames = running_suite.workdir / "display"
    deadline = time.monotonic() + 10
    while not (frames / "matrix.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (frames / "matrix.png").read_bytes().startswith(b"\x89PNG")
    display.ClearMessage(display_pb2.ClearMessageRequest(pool=display_pb2.ERROR), metadata=AUTH)
