"""The display's live state: computed from the stored pools and settings, pushed to the device,
and announced to watchers whenever it changes (a post, a clear, a setting, an expiry).

Message lifetimes are real time: the owner reads the matrix on the wall clock, so expiry uses
the wall clock even when a replay sends a simulated as-of time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from services.common import clock
from services.common.db import Database
from services.display import pools, store
from services.display.protocol import DeviceState, fold_text

NOT_CONFIGURED, CONNECTED, MISSING = "not_configured", "connected", "missing"


class Device(Protocol):
    def show(self, state: DeviceState) -> None: ...

    def status(self) -> tuple[str, str]: ...


@dataclass(frozen=True)
class Shown:
    text: str
    pool: str | None
    expires_at: datetime | None
    brightness: int
    speed_ms: int
    mode: str
    device_status: str
    device_detail: str
    source: str = ""  # who posted the shown message

    @property
    def device_text(self) -> str:
        return fold_text(self.text)


class DisplayController:
    def __init__(self, db: Database, device: Device | None, tick_s: float = 0.5):
        self._db = db
        self._device = device
        self._tick_s = tick_s
        self._changed = threading.Condition()
        self._refreshing = threading.Lock()
        self._version = 0
        self._shown: Shown | None = None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="display-ticker", daemon=True)

    def start(self) -> None:
        self.refresh()
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=5)
        with self._changed:
            self._changed.notify_all()

    def compute(self, session) -> Shown:
        message = pools.shown(store.messages(session), clock.wall_now())
        brightness, speed_ms = store.settings(session)
        status, detail = self._device.status() if self._device else (NOT_CONFIGURED, "TRADER_DISPLAY_SERIAL unset")
        return Shown(message.text if message else "", message.pool if message else None,
                     message.expires_at if message else None, brightness, speed_ms,
                     message.mode if message else "normal", status, detail, message.source if message else "")

    def refresh(self, change: Callable[[Session], None] | None = None) -> Shown:
        """Apply `change` to the stored pools or settings (if given) and recompute in the same
        transaction; once it is committed, on a change push it to the device and wake the
        watchers. One refresh at a time, so a later one never publishes an older state."""
        with self._refreshing:
            with self._db.transaction() as session:
                if change is not None:
                    change(session)
                shown = self.compute(session)
            self._publish(shown)
        return shown

    def _publish(self, shown: Shown) -> None:
        with self._changed:
            if shown != self._shown:
                self._shown = shown
                self._version += 1
                if self._device is not None:
                    self._device.show(DeviceState(shown.text, shown.speed_ms, shown.brightness, shown.mode))
                self._changed.notify_all()

    def wait_for_change(self, seen_version: int, timeout_s: float) -> tuple[int, Shown]:
        with self._changed:
            if self._version == seen_version:
                self._changed.wait(timeout_s)
            return self._version, self._shown

    def _tick(self) -> None:
        # Expiries and device status changes happen without a call: look twice a second.
        while not self._stop.wait(self._tick_s):
            self.refresh()
