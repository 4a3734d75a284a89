"""Planner storage: computed plans, keyed by portfolio state hash and day; security scores."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Boolean, Date, Float, Integer, String, Text, select
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


class ScoreRow(Base):
    """A security's latest score (planner.md section 1): the groups with their components and
    computation times (JSON), the total, the planner's quality, and what it was computed from."""

    __tablename__ = "scores"
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    scored_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(Integer)
    scored: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(40))       # why not scored; empty when scored
    detail: Mapped[str] = mapped_column(Text)
    total: Mapped[float | None] = mapped_column(Float, nullable=True)
    quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    groups: Mapped[str] = mapped_column(Text)              # JSON: group -> score, components, computed_at
    inputs_as_of: Mapped[date | None] = mapped_column(Date, nullable=True)        # last daily bar used
    fundamentals_as_of: Mapped[date | None] = mapped_column(Date, nullable=True)  # latest observation used
    price_date: Mapped[date | None] = mapped_column(Date, nullable=True)  # the latest close seen (change check)
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    fundamentals_key: Mapped[str] = mapped_column(String(16))


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


def load_scores(session: Session, symbols: list[str] | None = None) -> dict[str, ScoreRow]:
    """symbol -> its stored score (every stored score when `symbols` is None)."""
    query = select(ScoreRow).order_by(ScoreRow.symbol)
    if symbols is not None:
        query = query.where(ScoreRow.symbol.in_(symbols))
    return {row.symbol: row for row in session.scalars(query)}


def save_score(session: Session, row: ScoreRow) -> None:
    session.merge(row)
