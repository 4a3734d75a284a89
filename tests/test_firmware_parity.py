"""The firmware's C++ parser and the Python twin (used by the emulator) answer every line alike."""

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.config import REPO_ROOT
from services.display.protocol import MAX_LINE, DeviceState, ProtocolError, commands, parse_line

FIRMWARE = REPO_ROOT / "firmware"


@pytest.fixture(scope="module")
def firmware_replies(tmp_path_factory):
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is not installed: cannot build the firmware parser on the host")
    binary = tmp_path_factory.mktemp("firmware") / "reply_filter"
    subprocess.run([compiler, "-std=c++17", "-O1", "-I", FIRMWARE / "trader_display",
                    FIRMWARE / "trader_display" / "protocol.cpp", FIRMWARE / "test" / "reply_filter.cpp",
                    "-o", binary], check=True)

    def replies(lines: list[str]) -> list[str]:
        stream = "".join(line + "\n" for line in lines).encode("latin-1")
        done = subprocess.run([binary], input=stream, capture_output=True, check=True, timeout=30)
        return done.stdout.decode().splitlines()

    return replies


def python_reply(line: str) -> str:
    try:
        parse_line(line)
        return "OK"
    except ProtocolError as exc:
        return f"ERR {exc}"


FIXED = [
    "HEARTBEAT", "HEARTBEAT:1", "", "TEXT:", "TEXT:EUR 12,345 | CASH EUR 675", "TEXT:lower", "SPEED:50", "SPEED:9",
    "SPEED:2000", "SPEED:2001", "SPEED:", "SPEED:007", "SPEED:123456", "BRIGHTNESS:0", "BRIGHTNESS:255",
    "BRIGHTNESS:256", "BRIGHTNESS:-1", "MODE:normal", "MODE:syncing", "MODE:trade", "MODE:error", "MODE:Error",
    "LED:3:0,0,255", "LED:4:255,255,255", "LED:5:1,2,3", "LED:5:1,2,300", "LED:3:1,2", "LED:3:1,2,3,4",
    "LED:x:1,2,3", "LED:3:1,,3", "LED:3", "LED:33:1,2,3", "FOO", "FOO:BAR", "TEXT:" + "A" * (MAX_LINE - 5),
    "TEXT:" + "A" * (MAX_LINE - 4),
]


def test_fixed_lines_agree(firmware_replies):
    assert firmware_replies(FIXED) == [python_reply(line) for line in FIXED]


def test_everything_the_host_sends_is_accepted(firmware_replies):
    lines = commands(DeviceState("€ 1,234 | BUY AAPL € 855 | café", 75, 40, "trade"), None) + ["HEARTBEAT"]
    assert firmware_replies(lines) == ["OK"] * len(lines)


protocol_like = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=140),
    st.builds(lambda name, value: f"{name}:{value}",
              st.sampled_from(["TEXT", "SPEED", "BRIGHTNESS", "MODE", "LED"]),
              st.text(alphabet="0123456789,:-abcdeHI |", max_size=20)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(protocol_like, min_size=1, max_size=40))
def test_random_lines_agree(firmware_replies, lines):
    assert firmware_replies(lines) == [python_reply(line) for line in lines]
