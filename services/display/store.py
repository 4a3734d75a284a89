"""Display storage: the current message of each source in each pool, and the display settings
(they survive a restart)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Integer, String, bindparam, delete, insert, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.maintenance import RetentionRule
from services.common.migrations import Schema
from services.display.migrations import LEGACY_STEPS
from services.display.pools import Message

DEFAULT_BRIGHTNESS = 128
DEFAULT_SPEED_MS = 50


class Base(DeclarativeBase):
    pass


class MessageRow(Base):
    __tablename__ = "messages"
    pool: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    mode: Mapped[str] = mapped_column(String(16), default="normal")
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SettingsRow(Base):
    __tablename__ = "display_settings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # single row, id 1
    brightness: Mapped[int] = mapped_column(Integer)
    speed_ms: Mapped[int] = mapped_column(Integer)


SCHEMA = Schema("display", (Base.metadata,), Path(__file__).with_name("migrations") / "versions",
                legacy_version=2, legacy_steps=LEGACY_STEPS)


def open_database(url: str) -> Database:
    return Database(url, SCHEMA)


def messages(session: Session) -> list[Message]:
    return [Message(r.pool, r.text, r.expires_at, r.mode, r.source, r.posted_at)
            for r in session.scalars(select(MessageRow))]


# A post's and a clear's statements: on the table, built once, the values given as parameters.
_MESSAGES = MessageRow.__table__
_THIS_MESSAGE = (_MESSAGES.c.pool == bindparam("key_pool")) & (_MESSAGES.c.source == bindparam("key_source"))
_UPDATE = update(_MESSAGES).where(_THIS_MESSAGE)
_INSERT = insert(_MESSAGES)
_DELETE = delete(_MESSAGES).where(_THIS_MESSAGE)


def put(session: Session, message: Message, exists: bool | None = None) -> None:
    """Stores the message, replacing the one of the same pool and source. `exists`: whether
    that source may have a message in the pool (None: not known); with False it is inserted
    at once, else updated (inserted when there was none)."""
    values = {"text": message.text, "expires_at": message.expires_at, "mode": message.mode,
              "posted_at": message.posted_at}
    if exists is not False:
        updated = session.execute(_UPDATE, {"key_pool": message.pool, "key_source": message.source, **values})
        if updated.rowcount:
            return
    session.execute(_INSERT, {"pool": message.pool, "source": message.source, **values})


def clear(session: Session, pool: str, source: str) -> None:
    """Removes the message of this source from the pool; the other sources' stay."""
    session.execute(_DELETE, {"key_pool": pool, "key_source": source})


def settings(session: Session) -> tuple[int, int]:
    """(brightness, speed_ms)."""
    row = session.get(SettingsRow, 1)
    return (DEFAULT_BRIGHTNESS, DEFAULT_SPEED_MS) if row is None else (row.brightness, row.speed_ms)


def save_settings(session: Session, brightness: int, speed_ms: int) -> None:
    session.merge(SettingsRow(id=1, brightness=brightness, speed_ms=speed_ms))


# --- retention (services/common/maintenance.py) ---

def delete_messages_expired_before(session: Session, cutoff: datetime) -> int:
    return session.execute(delete(MessageRow).where(MessageRow.expires_at < cutoff)).rowcount or 0


# An expired message is never shown again; messages without an expiry stay until replaced or cleared.
RETENTION_RULES = (
    RetentionRule("expired_messages", "messages that expired before the cutoff (never shown again)",
                  "TRADER_DISPLAY_MESSAGE_RETENTION_DAYS", 7, delete_messages_expired_before, wall_clock=True),
)
