"""The display service as a process with a serial device on a pseudo-terminal: a posted message
reaches the device as a TEXT line, and a dead device never slows an RPC down."""

import os
import subprocess
import sys
import time

import grpc
import pytest
from trader.display.v1 import display_pb2, display_pb2_grpc

from gateway.launch import wait_serving
from services.common.config import REPO_ROOT
from tests.helpers import TOKEN, free_port
from tests.test_display_device import FakeMcu, wait_until

pytestmark = pytest.mark.e2e
AUTH = [("authorization", f"Bearer {TOKEN}")]


@pytest.fixture
def display_with(tmp_path):
    started = []

    def start(serial_url):
        address = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "TRADER_DISPLAY_ADDR": address, "TRADER_API_TOKEN": TOKEN,
               "TRADER_VAR_DIR": str(tmp_path), "TRADER_DISPLAY_SERIAL": serial_url}
        process = subprocess.Popen([sys.executable, "-m", "services.display"], cwd=REPO_ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=open(tmp_path / "display.log", "w"))
        started.append(process)
        wait_serving(address, "trader.display.v1.Display", process, time.monotonic() + 60)
        return display_pb2_grpc.DisplayStub(grpc.insecure_channel(address))

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def test_posted_message_reaches_the_device(display_with):
    mcu = FakeMcu()
    try:
        display = display_with(mcu.path)
        display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.NEXT_ACTIONS, text="€ 12,345"),
                            metadata=AUTH)
        assert wait_until(lambda: "TEXT:EUR 12,345" in mcu.lines)
        display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.ERROR, text="sync failed",
                                                           ttl_seconds=60), metadata=AUTH)
        assert wait_until(lambda: mcu.mcu.text == "SYNC FAILED" and mcu.mcu.mode == "error")
        state = display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH)
        assert (state.device, state.device_detail, state.text) == (display_pb2.DEVICE_CONNECTED, mcu.path,
                                                                   "sync failed")
    finally:
        mcu.unplug()


def test_dead_device_never_slows_rpcs(display_with):
    mcu = FakeMcu(mute=True)
    try:
        display = display_with(mcu.path)
        started = time.monotonic()
        for i in range(20):
            display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.PROCESSING, text=f"STEP {i}"),
                                metadata=AUTH, timeout=1)
        assert time.monotonic() - started < 2
        assert wait_until(lambda: display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH,
                                                          timeout=1).device == display_pb2.DEVICE_MISSING)
    finally:
        mcu.unplug()


def test_absent_device_is_reported_and_state_kept(display_with):
    display = display_with("/dev/ttyACM-not-plugged-in")
    state = display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.NEXT_ACTIONS, text="EUR 5"),
                                metadata=AUTH)
    assert state.text == "EUR 5" and state.device == display_pb2.DEVICE_MISSING
    assert "ttyACM-not-plugged-in" in state.device_detail
