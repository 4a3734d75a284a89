"""The matrix emulator: a virtual MCU that speaks the serial protocol and renders the 8x13
matrix as terminal frames and PNG images, so a person can see what the display shows.

`python -m services.display.emulator "EUR 12,345"` prints the scroll in the terminal and
writes a PNG strip; the display service uses `VirtualMcu` behind a pseudo-terminal when
TRADER_DISPLAY_SERIAL=emulator and keeps var/display/matrix.png and matrix.txt current.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field

from services.display import font
from services.display.protocol import HEARTBEAT_TIMEOUT_MS, ProtocolError, fold_text, parse_line

ROWS, COLS = 8, 13
TEXT_TOP = 1  # the font's first row on the matrix (rows 1-7; row 0 stays dark)

Frame = list[list[bool]]  # [row][col]


def scroll_steps(text: str) -> int:
    """Steps for the text to enter from the right edge and leave on the left."""
    return len(font.columns(text)) + COLS


def frame(text: str, step: int) -> Frame:
    """The matrix at scroll `step`: at step 0 the text is just right of the matrix."""
    cols = font.columns(text)
    grid = [[False] * COLS for _ in range(ROWS)]
    for x in range(COLS):
        source = step + x - COLS
        if 0 <= source < len(cols):
            for y in range(font.HEIGHT):
                grid[TEXT_TOP + y][x] = cols[source][y]
    return grid


def no_host_frame(tick: int) -> Frame:
    """What the MCU shows when heartbeats stop: only a corner pixel, blinking."""
    grid = [[False] * COLS for _ in range(ROWS)]
    grid[0][0] = tick % 2 == 0
    return grid


def strip(text: str) -> Frame:
    """The whole text as one image, as tall as the matrix."""
    cols = font.columns(text)
    return [[y >= TEXT_TOP and y - TEXT_TOP < font.HEIGHT and cols[x][y - TEXT_TOP] for x in range(len(cols))]
            for y in range(ROWS)]


def to_terminal(grid: Frame) -> str:
    return "\n".join("".join("@" if lit else "." for lit in row) for row in grid)


def to_png(grid: Frame, brightness: int = 255, scale: int = 16) -> bytes:
    """An RGB PNG: each LED a square of scale-2 pixels, lit red (by brightness), dark otherwise."""
    level = max(60, brightness)  # stays visible at low brightness
    lit, dark, gap = (level, level * 16 // 100, level * 8 // 100), (40, 40, 40), (0, 0, 0)
    rows = []
    for row in grid:
        for inner in range(scale):
            line = bytearray(b"\x00")  # filter type: none
            for on in row:
                for x in range(scale):
                    edge = inner in (0, scale - 1) or x in (0, scale - 1)
                    line += bytes(gap if edge else (lit if on else dark))
            rows.append(bytes(line))
    width, height = len(grid[0]) * scale if grid and grid[0] else 0, len(grid) * scale

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + \
        chunk(b"IEND", b"")


@dataclass
class VirtualMcu:
    """The firmware's behaviour in Python: parse a line, update state, answer OK or ERR."""

    text: str = ""
    speed_ms: int = 50
    brightness: int = 128
    mode: str = "normal"
    leds: dict[int, tuple[int, int, int]] = field(default_factory=lambda: {3: (0, 0, 0), 4: (0, 0, 0)})
    last_line_ms: float | None = None
    received: list[str] = field(default_factory=list)

    def handle(self, line: str, now_ms: float) -> str:
        self.received.append(line)
        try:
            command = parse_line(line)
        except ProtocolError as exc:
            return f"ERR {exc}"
        self.last_line_ms = now_ms
        if command.name == "TEXT":
            self.text = command.value
        elif command.name == "SPEED":
            self.speed_ms = command.number
        elif command.name == "BRIGHTNESS":
            self.brightness = command.number
        elif command.name == "MODE":
            self.mode = command.value
        elif command.name == "LED":
            self.leds[command.led] = command.rgb
        return "OK"

    def host_alive(self, now_ms: float) -> bool:
        return self.last_line_ms is not None and now_ms - self.last_line_ms <= HEARTBEAT_TIMEOUT_MS

    def frame_at(self, step: int, now_ms: float) -> Frame:
        if not self.host_alive(now_ms):
            return no_host_frame(step)
        if not self.text:
            return [[False] * COLS for _ in range(ROWS)]
        return frame(self.text, step % scroll_steps(self.text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.display.emulator",
                                     description="Show a text on the emulated 8x13 LED matrix.")
    parser.add_argument("text")
    parser.add_argument("--png", help="write the whole text as a PNG strip to this file")
    parser.add_argument("--speed-ms", type=int, default=60)
    parser.add_argument("--no-animation", action="store_true", help="print the strip once instead of scrolling")
    args = parser.parse_args(argv)
    text = fold_text(args.text)
    if args.png:
        with open(args.png, "wb") as out:
            out.write(to_png(strip(text)))
    if args.no_animation:
        print(to_terminal(strip(text)))
        return 0
    for step in range(scroll_steps(text)):
        sys.stdout.write(("\x1b[9A" if step else "") + to_terminal(frame(text, step)) + "\n\n")
        sys.stdout.flush()
        time.sleep(args.speed_ms / 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
