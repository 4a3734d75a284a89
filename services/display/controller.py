"""The display's live state: computed from the stored pools and settings, pushed to the device,
and announced to watchers whenever it changes (a post, a clear, a setting, an expiry).

Message lifetimes are real time: the owner reads the matrix on the wall clock, so expiry uses
the wall clock even when a replay sends a simulated as-of time.

The stored messages and settings are read once (at the first refresh) and kept: the display is
the only writer of its database (as every service of its own), each change is written and, once
committed, applied to the kept copy. So a call or a tick computes what is shown without a query,
and a change writes only what it changes (a clear of a message that is not there writes nothing).
The one other change to the table, retention, deletes only messages that expired long ago: they
are never shown again, whether kept or not.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.common import clock
from services.common.db import Database
from services.display import pools, store
from services.display.protocol import DeviceState, fold_text

NOT_CONFIGURED, CONNECTED, MISSING = "not_configured", "connected", "missing"


class Device(Protocol):
    def show(self, state: DeviceState) -> None: ...

    def status(self) -> tuple[str, str]: ...


@dataclass(frozen=True)
class Post:
    """Store `message`, replacing its source's message in its pool."""

    message: pools.Message


@dataclass(frozen=True)
class Clear:
    """Remove the message of `source` from `pool` (the other sources' stay)."""

    pool: str
    source: str


@dataclass(frozen=True)
class Settings:
    """Change the brightness and/or the scroll speed (None: keep it)."""

    brightness: int | None = None
    speed_ms: int | None = None


Change = Post | Clear | Settings


@dataclass
class _Stored:
    """What the database holds: the messages by (pool, source), and (brightness, speed_ms)."""

    messages: dict[tuple[str, str], pools.Message]
    settings: tuple[int, int]


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
        self._stored: _Stored | None = None  # read at the first refresh, then kept (see the module)
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

    def _compute(self, stored: _Stored) -> Shown:
        message = pools.shown(list(stored.messages.values()), clock.wall_now())
        brightness, speed_ms = stored.settings
        status, detail = self._device.status() if self._device else (NOT_CONFIGURED, "TRADER_DISPLAY_SERIAL unset")
        return Shown(message.text if message else "", message.pool if message else None,
                     message.expires_at if message else None, brightness, speed_ms,
                     message.mode if message else "normal", status, detail, message.source if message else "")

    def _load(self) -> _Stored:
        with self._db.transaction() as session:
            return _Stored({(m.pool, m.source): m for m in store.messages(session)}, store.settings(session))

    def refresh(self, changes: Sequence[Change] = ()) -> Shown:
        """Store `changes` (in order, in one transaction) and recompute what is shown; once they
        are committed, on a change push it to the device and wake the watchers. One refresh at a
        time, so a later one never publishes an older state."""
        with self._refreshing:
            if self._stored is None:
                self._stored = self._load()
            if changes:
                self._stored = self._write(self._stored, changes)
            shown = self._compute(self._stored)
            self._publish(shown)
        return shown

    def _write(self, stored: _Stored, changes: Sequence[Change]) -> _Stored:
        """`stored` with `changes`, written to the database (only what differs); a failed write
        raises and leaves `stored` as it was."""
        messages, settings = dict(stored.messages), stored.settings
        with self._db.transaction() as session:
            for change in changes:
                if isinstance(change, Post):
                    key = (change.message.pool, change.message.source)
                    store.put(session, change.message, exists=key in messages)
                    messages[key] = change.message
                elif isinstance(change, Clear):
                    if messages.pop((change.pool, change.source), None) is not None:
                        store.clear(session, change.pool, change.source)
                else:
                    settings = (settings[0] if change.brightness is None else change.brightness,
                                settings[1] if change.speed_ms is None else change.speed_ms)
                    store.save_settings(session, *settings)
        return _Stored(messages, settings)

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
