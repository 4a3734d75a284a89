"""Planner storage: computed plans, keyed by portfolio state hash and day."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.migrations import Schema


class Base(DeclarativeBase):
    pass


class PlanRow(Base):
    __tablename__ = "plans"
    portfolio_hash: Mapped[str] = mapped_column(String(16), primary_key=True)
    as_of_date: Mapped[str] = mapped_column(String(10), primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # JSON: steps, target weights, method
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


SCHEMA = Schema("planner", (Base.metadata,), Path(__file__).with_name("migrations") / "versions",
                legacy_version=1)


def open_database(url: str) -> Database:
    return Database(url, SCHEMA)


def find_plan(session: Session, portfolio_hash: str, as_of_date: str) -> tuple[str, dict] | None:
    row = session.get(PlanRow, (portfolio_hash, as_of_date))
    return None if row is None else (row.plan_id, json.loads(row.payload))


def save_plan(session: Session, portfolio_hash: str, as_of_date: str, plan_id: str, payload: dict,
              created_at: datetime) -> None:
    session.merge(PlanRow(portfolio_hash=portfolio_hash, as_of_date=as_of_date, plan_id=plan_id,
                          payload=json.dumps(payload, sort_keys=True), created_at=created_at))
