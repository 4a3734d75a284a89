"""The serial line protocol between the display service and the matrix MCU (firmware/PROTOCOL.md).

One ASCII command per line, newline-terminated; the MCU answers each with `OK` or
`ERR <reason>`. This module builds the host's lines and parses them the way the firmware does
(the emulator is a Python MCU built on `parse_line`; firmware/src/protocol.cpp is the C++ twin).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

MAX_LINE = 128                 # bytes, without the newline
MAX_TEXT = MAX_LINE - len("TEXT:")
SPEED_RANGE = (10, 2000)       # milliseconds per one-column scroll step
MODES = ("normal", "syncing", "trade", "error")
LED_NUMBERS = (3, 4)           # the UNO Q's user RGB LEDs: 3 = sync, 4 = processing
HEARTBEAT_TIMEOUT_MS = 10_000  # the MCU shows its "no host" pattern after this long without a line

# The matrix font's character set: printable ASCII from space to underscore (upper case), and '|'.
CHARSET = frozenset(chr(c) for c in range(32, 96)) | {"|"}
_SYMBOLS = {"€": "EUR", "£": "GBP", "$": "USD", "¥": "JPY", "–": "-", "—": "-", "…": "...",
            "“": '"', "”": '"', "‘": "'", "’": "'", "·": "."}


def fold_text(text: str) -> str:
    """Text the matrix font can show: currency signs spelled out, accents dropped, upper case,
    anything else outside the character set replaced by '?', cut to one protocol line."""
    spelled = "".join(_SYMBOLS.get(ch, ch) for ch in " ".join(text.split()))
    plain = unicodedata.normalize("NFKD", spelled).encode("ascii", "ignore").decode().upper()
    return "".join(ch if ch in CHARSET else "?" for ch in plain)[:MAX_TEXT]


@dataclass(frozen=True)
class DeviceState:
    """What the matrix and LEDs should show."""

    text: str = ""
    speed_ms: int = 50
    brightness: int = 128
    mode: str = "normal"

    def leds(self) -> dict[int, tuple[int, int, int]]:
        """LED 3 tells sync state, LED 4 processing; both red on error."""
        red, blue, green, off = (255, 0, 0), (0, 0, 255), (0, 255, 0), (0, 0, 0)
        return {
            "normal": {3: off, 4: off},
            "syncing": {3: blue, 4: off},
            "trade": {3: off, 4: green},
            "error": {3: red, 4: red},
        }[self.mode]


def commands(state: DeviceState, sent: DeviceState | None) -> list[str]:
    """The lines that bring a device showing `sent` (None: unknown, send all) to `state`."""
    lines = []
    if sent is None or sent.brightness != state.brightness:
        lines.append(f"BRIGHTNESS:{state.brightness}")
    if sent is None or sent.speed_ms != state.speed_ms:
        lines.append(f"SPEED:{state.speed_ms}")
    if sent is None or sent.mode != state.mode:
        lines.append(f"MODE:{state.mode}")
        old = {} if sent is None else sent.leds()
        lines += [f"LED:{n}:{r},{g},{b}" for n, (r, g, b) in state.leds().items() if old.get(n) != (r, g, b)]
    if sent is None or sent.text != state.text:
        lines.append(f"TEXT:{fold_text(state.text)}")
    return lines


# --- parsing, as the MCU does it ---

@dataclass(frozen=True)
class Command:
    name: str                # TEXT, SPEED, BRIGHTNESS, MODE, LED, HEARTBEAT
    value: str = ""
    number: int = 0
    led: int = 0
    rgb: tuple[int, int, int] = (0, 0, 0)


class ProtocolError(ValueError):
    """The reason goes back to the host as `ERR <reason>`."""


def _integer(text: str, low: int, high: int) -> int:
    if not text.isdigit() or len(text) > 5:
        raise ProtocolError("bad number")
    value = int(text)
    if not low <= value <= high:
        raise ProtocolError("out of range")
    return value


def parse_line(line: str) -> Command:
    if len(line) > MAX_LINE:
        raise ProtocolError("line too long")
    if line == "HEARTBEAT":
        return Command("HEARTBEAT")
    name, sep, value = line.partition(":")
    if not sep:
        raise ProtocolError("unknown command")
    if name == "TEXT":
        if any(ch not in CHARSET for ch in value):
            raise ProtocolError("unsupported character")
        return Command("TEXT", value=value)
    if name == "SPEED":
        return Command("SPEED", number=_integer(value, *SPEED_RANGE))
    if name == "BRIGHTNESS":
        return Command("BRIGHTNESS", number=_integer(value, 0, 255))
    if name == "MODE":
        if value not in MODES:
            raise ProtocolError("unknown mode")
        return Command("MODE", value=value)
    if name == "LED":
        led, sep, rgb = value.partition(":")
        parts = rgb.split(",")
        if not sep or len(parts) != 3:
            raise ProtocolError("bad led")
        number = _integer(led, 0, 9)
        if number not in LED_NUMBERS:
            raise ProtocolError("unknown led")
        return Command("LED", led=number, rgb=tuple(_integer(p, 0, 255) for p in parts))
    raise ProtocolError("unknown command")
