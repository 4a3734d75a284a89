"""Display storage: the current message of each pool (state survives a restart)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database
from services.display.pools import Message

SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    pass


class MessageRow(Base):
    __tablename__ = "messages"
    pool: Mapped[str] = mapped_column(String(16), primary_key=True)
    text: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def open_database(url: str) -> Database:
    return Database(url, Base.metadata, "display", SCHEMA_VERSION)


def messages(session: Session) -> list[Message]:
    return [Message(r.pool, r.text, r.expires_at if r.expires_at is None or r.expires_at.tzinfo
                    else r.expires_at.replace(tzinfo=UTC))
            for r in session.scalars(select(MessageRow))]


def put(session: Session, message: Message) -> None:
    session.merge(MessageRow(pool=message.pool, text=message.text, expires_at=message.expires_at))


def clear(session: Session, pool: str) -> None:
    session.execute(delete(MessageRow).where(MessageRow.pool == pool))
