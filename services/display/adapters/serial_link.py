"""The link to the matrix MCU over a serial line (pyserial), kept alive in a background thread.

RPCs never touch the port: they hand the wanted `DeviceState` to `show()` and return at once.
The thread sends only what changed, waits for each line's OK/ERR, sends a heartbeat when idle,
and when the device goes away (write/read timeout, I/O error) it closes the port, retries the
open every `retry_s`, and after reconnecting sends the whole state again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial

from services.common.logs import event
from services.display.controller import CONNECTED, MISSING
from services.display.protocol import DeviceState, commands

log = logging.getLogger("trader.display.serial")


class DeviceGone(Exception):
    pass


class SerialLink:
    def __init__(self, url: str, *, open_port: Callable[..., serial.SerialBase] = serial.serial_for_url,
                 baudrate: int = 115200, ack_timeout_s: float = 1.0, write_timeout_s: float = 1.0,
                 heartbeat_s: float = 2.0, retry_s: float = 1.0):
        self.url = url
        self._open_port = open_port
        self._baudrate = baudrate
        self._ack_timeout_s = ack_timeout_s
        self._write_timeout_s = write_timeout_s
        self._heartbeat_s = heartbeat_s
        self._retry_s = retry_s
        self._wanted: DeviceState | None = None  # nothing is sent before the service says what to show
        self._sent: DeviceState | None = None
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._port: serial.SerialBase | None = None
        self._status = MISSING
        self._detail = "not opened yet"
        self._thread = threading.Thread(target=self._run, name="serial-link", daemon=True)
        self.refusals: list[tuple[str, str]] = []  # (line, ERR reason) the device answered

    # --- used by the service ---

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout=5)
        self._close()

    def show(self, state: DeviceState) -> None:
        with self._lock:
            self._wanted = state
        self._changed.set()

    def status(self) -> tuple[str, str]:
        return self._status, self._detail

    # --- the thread ---

    def _run(self) -> None:
        last_line = 0.0
        while not self._stop.is_set():
            if self._port is None and not self._connect():
                self._stop.wait(self._retry_s)
                continue
            try:
                with self._lock:
                    wanted = self._wanted
                if wanted is None:
                    self._changed.wait(self._heartbeat_s)
                    self._changed.clear()
                    continue
                lines = commands(wanted, self._sent)
                if not lines and time.monotonic() - last_line >= self._heartbeat_s:
                    lines = ["HEARTBEAT"]
                for line in lines:
                    self._send(line)
                    last_line = time.monotonic()
                self._sent = wanted
            except DeviceGone as exc:
                self._lost(str(exc))
                self._stop.wait(self._retry_s)
                continue
            self._changed.wait(max(0.0, self._heartbeat_s - (time.monotonic() - last_line)))
            self._changed.clear()

    def _connect(self) -> bool:
        try:
            self._port = self._open_port(self.url, baudrate=self._baudrate, timeout=self._ack_timeout_s,
                                         write_timeout=self._write_timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            if self._detail != str(exc):
                event(log, "display device missing", logging.WARNING, url=self.url, reason=str(exc))
            self._status, self._detail = MISSING, str(exc)
            return False
        self._sent = None  # unknown device state: everything goes out again
        self._port.reset_input_buffer()
        self._detail = f"{self.url} opened, waiting for the device to answer"
        return True

    def _send(self, line: str) -> None:
        try:
            self._port.write(line.encode("ascii") + b"\n")
            reply = self._port.readline()
        except (serial.SerialException, OSError) as exc:
            raise DeviceGone(f"I/O error: {exc}") from exc
        if not reply.endswith(b"\n"):
            raise DeviceGone(f"no reply to {line.split(':')[0]} within {self._ack_timeout_s} s")
        answer = reply.decode("ascii", "replace").strip()
        if self._status != CONNECTED:  # any answer proves the device is there
            self._status, self._detail = CONNECTED, self.url
            event(log, "display device connected", url=self.url)
        if answer == "OK" or answer == line:  # loop:// echoes each line back: taken as an acknowledgement
            return
        reason = answer[4:] if answer.startswith("ERR ") else f"unexpected reply {answer!r}"
        self.refusals.append((line, reason))
        event(log, "display device refused a line", logging.WARNING, line=line[:40], reason=reason)

    def _lost(self, reason: str) -> None:
        if self._status == CONNECTED or self._detail != reason:
            event(log, "display device lost", logging.WARNING, url=self.url, reason=reason)
        self._status, self._detail = MISSING, reason
        self._close()

    def _close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except (serial.SerialException, OSError):
                pass
            self._port = None
