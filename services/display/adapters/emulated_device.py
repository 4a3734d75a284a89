"""The emulator as a device: a `VirtualMcu` on the master side of a pseudo-terminal.

The serial link opens the slave side exactly like a USB serial port, so the emulator exercises
the whole protocol path. A render thread scrolls the text at the MCU's speed and keeps
<out_dir>/matrix.png (the current frame) and matrix.txt (the same as terminal text) up to date.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from pathlib import Path

from services.display.emulator import VirtualMcu, to_png, to_terminal


class EmulatedDevice:
    def __init__(self, out_dir: Path | None, write_every_s: float = 0.5):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.mcu = VirtualMcu()
        self._out_dir = out_dir
        self._write_every_s = write_every_s
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve, name="emulator-mcu", daemon=True),
                         threading.Thread(target=self._render, name="emulator-render", daemon=True)]

    def start(self) -> None:
        if self._out_dir is not None:
            self._out_dir.mkdir(parents=True, exist_ok=True)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for fd in (self._master, self._slave):
            os.close(fd)

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                buffer += os.read(self._master, 1024)
            except OSError:
                return
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                reply = self.mcu.handle(raw.decode("ascii", "replace").replace("\r", ""), time.monotonic() * 1000)
                if reply is not None:  # None: a device that has stopped answering
                    os.write(self._master, reply.encode() + b"\n")

    def _render(self) -> None:
        step, last_write = 0, 0.0
        while not self._stop.wait(self.mcu.speed_ms / 1000):
            step += 1
            if self._out_dir is not None and time.monotonic() - last_write >= self._write_every_s:
                grid = self.mcu.frame_at(step, time.monotonic() * 1000)
                _replace(self._out_dir / "matrix.png", to_png(grid, self.mcu.brightness))
                _replace(self._out_dir / "matrix.txt", (to_terminal(grid) + "\n").encode())
                last_write = time.monotonic()


def _replace(path: Path, content: bytes) -> None:
    """Write via a temporary file so a viewer never reads half an image."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)
