"""The display's device side: protocol, serial link over a pseudo-terminal, reconnect, emulator."""

from __future__ import annotations

import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.display import font, pools, store
from services.display.adapters.emulated_device import EmulatedDevice
from services.display.adapters.serial_link import SerialLink
from services.display.controller import DisplayController
from services.display.emulator import COLS, ROWS, VirtualMcu, frame, scroll_steps, strip, to_png
from services.display.protocol import (
    CHARSET,
    MAX_LINE,
    DeviceState,
    ProtocolError,
    commands,
    fold_text,
    parse_line,
)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --- protocol ---

def test_fold_text_to_the_font():
    assert fold_text("€ 12,345 | Cash £5 café") == "EUR 12,345 | CASH GBP5 CAFE"
    assert fold_text("a\tb\n c") == "A B C"
    assert fold_text("日本") == ""
    assert fold_text("x{y}") == "X?Y?"
    assert len(fold_text("€" * 200)) == MAX_LINE - len("TEXT:")


@given(st.text(max_size=300))
def test_folded_text_always_makes_a_valid_line(text):
    line = f"TEXT:{fold_text(text)}"
    assert len(line) <= MAX_LINE and parse_line(line).value == fold_text(text)


def test_first_sync_sends_everything_then_only_changes():
    first = commands(DeviceState("EUR 1", 50, 128, "normal"), None)
    assert first == ["BRIGHTNESS:128", "SPEED:50", "MODE:normal", "LED:3:0,0,0", "LED:4:0,0,0", "TEXT:EUR 1"]
    sent = DeviceState("EUR 1", 50, 128, "normal")
    assert commands(sent, sent) == []
    assert commands(DeviceState("BAD", 50, 128, "error"), sent) == [
        "MODE:error", "LED:3:255,0,0", "LED:4:255,0,0", "TEXT:BAD"]
    assert commands(DeviceState("EUR 1", 80, 10, "normal"), sent) == ["BRIGHTNESS:10", "SPEED:80"]


@pytest.mark.parametrize(("line", "reason"), [
    ("HELLO", "unknown command"), ("FOO:1", "unknown command"), ("SPEED:5", "out of range"),
    ("SPEED:fast", "bad number"), ("BRIGHTNESS:256", "out of range"), ("BRIGHTNESS:-1", "bad number"),
    ("MODE:party", "unknown mode"), ("LED:5:1,2,3", "unknown led"), ("LED:3:1,2", "bad led"),
    ("LED:3:1,2,300", "out of range"), ("TEXT:lower", "unsupported character"),
    ("TEXT:" + "A" * MAX_LINE, "line too long"),
])
def test_malformed_lines_are_refused_with_a_reason(line, reason):
    with pytest.raises(ProtocolError, match=reason):
        parse_line(line)


@given(st.text(max_size=200))
def test_parser_only_ever_accepts_or_refuses(line):
    try:
        parse_line(line)
    except ProtocolError:
        pass


# --- emulator rendering ---

def test_glyphs_cover_the_charset():
    for char in CHARSET:
        rows = font.glyph(char)
        assert len(rows) == font.HEIGHT and all(len(r) == font.WIDTH for r in rows)


def lit(grid):
    return sum(cell for row in grid for cell in row)


def test_strip_pixels_for_a_known_text():
    assert lit(strip("I")) == 3 + 5 + 3
    e = strip("E")
    assert [row[0] for row in e] == [False] + [True] * 7  # row 0 dark, the E's spine on rows 1-7
    assert len(strip("EUR")[0]) == 3 * 5 + 2


def test_scrolling_enters_from_the_right_and_leaves_left():
    text = "EUR"
    assert lit(frame(text, 0)) == 0
    assert [row[COLS - 1] for row in frame(text, 1)] == [False] + [True] * 7  # the E's first column arrives
    assert lit(frame(text, scroll_steps(text))) == 0
    assert sum(lit(frame(text, s)) for s in range(scroll_steps(text))) == lit(strip(text)) * COLS


def decode_png(data: bytes, scale: int):
    """Our own PNG layout (RGB, filter 0): the colour at the centre of each LED square."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    idat = data.index(b"IDAT")
    raw = zlib.decompress(data[idat + 4: idat + 4 + int.from_bytes(data[idat - 4:idat], "big")])
    stride = 1 + width * 3
    centre = scale // 2
    grid = []
    for led_row in range(height // scale):
        row = raw[(led_row * scale + centre) * stride + 1:][: width * 3]
        grid.append([tuple(row[(x * scale + centre) * 3:(x * scale + centre) * 3 + 3]) for x in range(width // scale)])
    return width, height, grid


def test_png_shows_the_lit_leds():
    grid = frame("E", 5)
    width, height, colours = decode_png(to_png(grid, brightness=200, scale=10), 10)
    assert (width, height) == (COLS * 10, ROWS * 10)
    red = [[c[0] == 200 and c[1] < 50 for c in row] for row in colours]
    assert red == grid


# --- serial link against a fake MCU on a pseudo-terminal ---

class FakeMcu(EmulatedDevice):
    """The emulator's virtual MCU on a pty, recording every line; a mute one never answers."""

    def __init__(self, mute=False):
        super().__init__(None)
        if mute:
            received = self.mcu.received
            self.mcu.handle = lambda line, now: received.append(line)  # records, answers nothing
        self.start()

    @property
    def lines(self) -> list[str]:
        return self.mcu.received

    def unplug(self):
        self.stop()


@pytest.fixture
def link_to():
    links = []

    def make(url, **kwargs):
        link = SerialLink(url, ack_timeout_s=0.3, write_timeout_s=0.3, retry_s=0.1, **kwargs)
        link.start()
        links.append(link)
        return link

    yield make
    for link in links:
        link.stop()


def test_link_sends_the_exact_lines_and_reads_acks(link_to):
    mcu = FakeMcu()
    link = link_to(mcu.path, heartbeat_s=60)
    link.show(DeviceState("€ 1,000", 50, 128, "normal"))
    assert wait_until(lambda: len(mcu.lines) >= 6)
    assert mcu.lines == ["BRIGHTNESS:128", "SPEED:50", "MODE:normal", "LED:3:0,0,0", "LED:4:0,0,0", "TEXT:EUR 1,000"]
    assert link.status() == ("connected", mcu.path) and link.refusals == []
    link.show(DeviceState("SYNC FAILED", 50, 128, "error"))
    assert wait_until(lambda: mcu.mcu.text == "SYNC FAILED")
    assert mcu.lines[6:] == ["MODE:error", "LED:3:255,0,0", "LED:4:255,0,0", "TEXT:SYNC FAILED"]
    assert mcu.mcu.leds == {3: (255, 0, 0), 4: (255, 0, 0)}
    mcu.unplug()


def test_link_sends_heartbeats_when_idle(link_to):
    mcu = FakeMcu()
    link_to(mcu.path, heartbeat_s=0.1).show(DeviceState("X"))
    assert wait_until(lambda: mcu.lines.count("HEARTBEAT") >= 3)
    assert mcu.mcu.host_alive(time.monotonic() * 1000)
    mcu.unplug()


def test_device_refusal_is_recorded_not_fatal(link_to):
    mcu = FakeMcu()
    mcu.mcu.handle = lambda line, now: (mcu.lines.append(line),
                                        "ERR out of range" if line.startswith("SPEED") else "OK")[1]
    link = link_to(mcu.path, heartbeat_s=60)
    link.show(DeviceState("A", 50, 1, "normal"))
    assert wait_until(lambda: "TEXT:A" in mcu.lines)
    assert link.refusals == [("SPEED:50", "out of range")] and link.status()[0] == "connected"
    mcu.unplug()


def test_reconnect_resends_the_whole_state(link_to, tmp_path):
    port = tmp_path / "ttyDISPLAY"  # a stable name, like a udev symlink, for a device that comes and goes
    first = FakeMcu()
    port.symlink_to(first.path)
    link = link_to(str(port), heartbeat_s=0.1)
    link.show(DeviceState("EUR 5", 60, 90, "syncing"))
    assert wait_until(lambda: "TEXT:EUR 5" in first.lines)
    first.unplug()
    port.unlink()
    assert wait_until(lambda: link.status()[0] == "missing")
    second = FakeMcu()
    port.symlink_to(second.path)
    assert wait_until(lambda: link.status()[0] == "connected" and "TEXT:EUR 5" in second.lines)
    assert second.lines[:6] == ["BRIGHTNESS:90", "SPEED:60", "MODE:syncing", "LED:3:0,0,255", "LED:4:0,0,0",
                                "TEXT:EUR 5"]
    second.unplug()


def test_a_mute_device_is_reported_missing(link_to):
    mcu = FakeMcu(mute=True)
    link = link_to(mcu.path, heartbeat_s=60)
    link.show(DeviceState("A"))
    assert wait_until(lambda: "no reply" in link.status()[1])
    for _ in range(10):  # reopening a port that never answers does not count as connected
        assert link.status()[0] == "missing"
        time.sleep(0.05)
    mcu.unplug()


def test_loop_url_echo_counts_as_ack(link_to):
    link = link_to("loop://", heartbeat_s=60)
    link.show(DeviceState("LOOP"))
    assert wait_until(lambda: link.status()[0] == "connected")
    time.sleep(0.3)
    assert link.status()[0] == "connected" and link.refusals == []


def test_missing_port_keeps_retrying_without_raising(link_to):
    link = link_to("/dev/does-not-exist-ttyACM9", heartbeat_s=60)
    link.show(DeviceState("A"))
    assert wait_until(lambda: "does-not-exist" in link.status()[1])
    assert link.status()[0] == "missing"


# --- the controller: expiry, persistence, and a dead device never blocks ---

NOW = datetime.now(UTC)


def test_state_survives_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'display.db'}"
    db = store.open_database(url)
    with db.transaction() as session:
        store.put(session, pools.new_message(pools.ERROR, "BACKUP FAILED", 0, NOW))
        store.save_settings(session, 42, 120)
    db.close()
    again = DisplayController(store.open_database(url), None).refresh()
    assert (again.text, again.pool, again.brightness, again.speed_ms, again.mode) == \
        ("BACKUP FAILED", "ERROR", 42, 120, "error")
    assert again.device_status == "not_configured"


def test_version_1_database_is_migrated(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE schema_info (name VARCHAR(64) PRIMARY KEY, version INTEGER NOT NULL)")
        old.execute("INSERT INTO schema_info VALUES ('display', 1)")
        old.execute("CREATE TABLE messages (pool VARCHAR(16) PRIMARY KEY, text VARCHAR(256), expires_at DATETIME)")
        old.execute("INSERT INTO messages VALUES ('NEXT_ACTIONS', 'EUR 9', NULL)")
    shown = DisplayController(store.open_database(f"sqlite:///{path}"), None).refresh()
    assert (shown.text, shown.mode) == ("EUR 9", "normal")


def test_expiry_is_pushed_to_the_device(tmp_path):
    db = store.open_database(f"sqlite:///{tmp_path / 'd.db'}")
    sent = []

    class Recorder:
        def show(self, state):
            sent.append(state)

        def status(self):
            return "connected", "recorder"

    controller = DisplayController(db, Recorder(), tick_s=0.05)
    with db.transaction() as session:
        store.put(session, pools.new_message(pools.NEXT_ACTIONS, "EUR 1", 0, datetime.now(UTC)))
        store.put(session, pools.new_message(pools.ERROR, "OOPS", 1, datetime.now(UTC)))
    controller.start()
    try:
        assert wait_until(lambda: sent and sent[-1].text == "OOPS")
        assert wait_until(lambda: sent[-1].text == "EUR 1", timeout=3)
        assert [s.mode for s in sent[-2:]] == ["error", "normal"]
    finally:
        controller.stop()


def test_dead_device_never_blocks_the_controller(tmp_path, link_to):
    mcu = FakeMcu(mute=True)
    link = link_to(mcu.path, heartbeat_s=60)
    controller = DisplayController(store.open_database(f"sqlite:///{tmp_path / 'd.db'}"), link)
    started = time.monotonic()
    for i in range(20):
        with controller._db.transaction() as session:
            store.put(session, pools.new_message(pools.PROCESSING, f"STEP {i}", 0, NOW))
        controller.refresh()
    assert time.monotonic() - started < 1.0
    assert wait_until(lambda: "no reply" in controller.refresh().device_detail)
    assert controller.refresh().device_status == "missing"
    mcu.unplug()


def test_emulated_device_writes_frames(tmp_path, link_to):
    device = EmulatedDevice(tmp_path, write_every_s=0.05)
    device.start()
    try:
        link = link_to(device.path, heartbeat_s=60)
        link.show(DeviceState("HI", 10, 200, "normal"))
        assert wait_until(lambda: device.mcu.text == "HI")
        assert wait_until(lambda: "@" in (tmp_path / "matrix.txt").read_text() if (tmp_path / "matrix.txt").exists()
                          else False)
        png = Path(tmp_path / "matrix.png").read_bytes()
        assert png.startswith(b"\x89PNG")
    finally:
        device.stop()


def test_no_host_pattern_after_heartbeats_stop():
    mcu = VirtualMcu()
    mcu.handle("TEXT:HI", 0)
    assert lit(mcu.frame_at(20, 5_000)) > 0
    assert lit(mcu.frame_at(20, 20_000)) == 1 and lit(mcu.frame_at(21, 20_000)) == 0
