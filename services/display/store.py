"""Display storage: the current message of each source in each pool, and the display settings
(they survive a restart)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, delete, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.display.pools import Message

SCHEMA_VERSION = 3
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


def _v1_to_v2(connection) -> None:
    connection.execute(text("ALTER TABLE messages ADD COLUMN mode VARCHAR(16) NOT NULL DEFAULT 'normal'"))


_V2_POSTED_AT = datetime(1970, 1, 1, tzinfo=UTC)  # v2 kept no post time: older than any new post


def _v2_to_v3(connection) -> None:
    """Messages keyed by (pool, source) with their post time. A v2 message (one per pool) keeps
    its text, expiry and mode under the default source "". The table is rebuilt (a primary key
    cannot be altered in SQLite); the new one is created first so PostgreSQL's constraint names
    never clash."""
    Table("messages_v3", MetaData(),
          Column("pool", String(16), primary_key=True), Column("source", String(64), primary_key=True),
          Column("text", String(256), nullable=False), Column("expires_at", UtcDateTime(), nullable=True),
          Column("mode", String(16), nullable=False), Column("posted_at", UtcDateTime(), nullable=False),
          ).create(connection)
    connection.execute(
        text("INSERT INTO messages_v3 (pool, source, text, expires_at, mode, posted_at) "
             "SELECT pool, '', text, expires_at, mode, :posted_at FROM messages")
        .bindparams(bindparam("posted_at", type_=UtcDateTime())),
        {"posted_at": _V2_POSTED_AT},
    )
    connection.execute(text("DROP TABLE messages"))
    connection.execute(text("ALTER TABLE messages_v3 RENAME TO messages"))


def open_database(url: str) -> Database:
    return Database(url, Base.metadata, "display", SCHEMA_VERSION, migrations={1: _v1_to_v2, 2: _v2_to_v3})


def messages(session: Session) -> list[Message]:
    return [Message(r.pool, r.text, r.expires_at, r.mode, r.source, r.posted_at)
            for r in session.scalars(select(MessageRow))]


def put(session: Session, message: Message) -> None:
    """Stores the message, replacing the one of the same pool and source."""
    session.merge(MessageRow(pool=message.pool, source=message.source, text=message.text,
                             expires_at=message.expires_at, mode=message.mode, posted_at=message.posted_at))


def clear(session: Session, pool: str, source: str) -> None:
    """Removes the message of this source from the pool; the other sources' stay."""
    session.execute(delete(MessageRow).where(MessageRow.pool == pool, MessageRow.source == source))


def settings(session: Session) -> tuple[int, int]:
    """(brightness, speed_ms)."""
    row = session.get(SettingsRow, 1)
    return (DEFAULT_BRIGHTNESS, DEFAULT_SPEED_MS) if row is None else (row.brightness, row.speed_ms)


def save_settings(session: Session, brightness: int, speed_ms: int) -> None:
    session.merge(SettingsRow(id=1, brightness=brightness, speed_ms=speed_ms))
