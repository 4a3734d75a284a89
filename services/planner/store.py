"""Planner storage: computed plans, keyed by portfolio state hash and day; security scores;
recommendations, keyed by state (services/planner/recommendations.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.maintenance import RetentionRule
from services.common.migrations import Schema
from services.planner.recommendations import DISMISSED, EXECUTED, PENDING, SUPPRESS, Recommendation, upsert_action


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


class RecommendationRow(Base):
    __tablename__ = "recommendations"
    __table_args__ = (UniqueConstraint("state_key", "symbol", "side", name="uq_recommendations_state_step"),)
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    state_key: Mapped[str] = mapped_column(String(32))  # portfolio:settings:allocations (the unique key indexes it)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(BigInteger)
    estimated_price: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    estimated_value_base: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    plan_id: Mapped[str] = mapped_column(String(32))
    step: Mapped[int] = mapped_column(Integer)
    # trading's client order id when the cycle executes this step (step 1 of its plan)
    client_order_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    executed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    dismissed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    def to_domain(self) -> Recommendation:
        return Recommendation(**{f.name: getattr(self, f.name) for f in fields(Recommendation)})


SCHEMA = Schema("planner", (Base.metadata,), Path(__file__).with_name("migrations") / "versions",
                legacy_version=1)


def open_database(url: str) -> Database:
    return Database(url, SCHEMA)


# --- plans (a cache) ---

def find_plan(session: Session, portfolio_hash: str, as_of_date: str) -> tuple[str, dict] | None:
    row = session.get(PlanRow, (portfolio_hash, as_of_date))
    return None if row is None else (row.plan_id, json.loads(row.payload))


def save_plan(session: Session, portfolio_hash: str, as_of_date: str, plan_id: str, payload: dict,
              created_at: datetime) -> None:
    session.merge(PlanRow(portfolio_hash=portfolio_hash, as_of_date=as_of_date, plan_id=plan_id,
                          payload=json.dumps(payload, sort_keys=True), created_at=created_at))


def forget_plans(session: Session, portfolio_hash: str) -> None:
    """Drop the cached plans of a portfolio hash (every day), so the next request recomputes."""
    session.execute(delete(PlanRow).where(PlanRow.portfolio_hash == portfolio_hash))


# --- scores ---

def load_scores(session: Session, symbols: list[str] | None = None) -> dict[str, ScoreRow]:
    """symbol -> its stored score (every stored score when `symbols` is None)."""
    query = select(ScoreRow).order_by(ScoreRow.symbol)
    if symbols is not None:
        query = query.where(ScoreRow.symbol.in_(symbols))
    return {row.symbol: row for row in session.scalars(query)}


def save_score(session: Session, row: ScoreRow) -> None:
    session.merge(row)


# --- recommendations ---

def find_recommendation(session: Session, uuid: str) -> RecommendationRow | None:
    return session.get(RecommendationRow, uuid)


def recommendations_of(session: Session, state_key: str, status: str | None = None) -> list[Recommendation]:
    query = select(RecommendationRow).where(RecommendationRow.state_key == state_key)
    if status is not None:
        query = query.where(RecommendationRow.status == status)
    return [row.to_domain() for row in session.scalars(query.order_by(RecommendationRow.symbol,
                                                                       RecommendationRow.side))]


def upsert_recommendation(session: Session, step: Recommendation, client_order_id: str | None,
                          now: datetime) -> Recommendation | None:
    """Store a planned step by the upsert rules (recommendations.py); None when the step was
    dismissed for this state (it is then not planned)."""
    row = session.scalars(select(RecommendationRow).where(
        RecommendationRow.state_key == step.state_key, RecommendationRow.symbol == step.symbol,
        RecommendationRow.side == step.side)).first()
    action = upsert_action(None if row is None else row.status)
    if action == SUPPRESS:
        return None
    if row is None:
        row = RecommendationRow(uuid=step.uuid, state_key=step.state_key, symbol=step.symbol, side=step.side,
                                created_at=now)
        session.add(row)
    for name in ("quantity", "estimated_price", "currency", "estimated_value_base", "reason", "plan_id", "step"):
        setattr(row, name, getattr(step, name))
    row.client_order_id, row.status, row.updated_at, row.executed_at = client_order_id, PENDING, now, None
    session.flush()
    return row.to_domain()


def dismiss(session: Session, row: RecommendationRow, now: datetime) -> Recommendation:
    if row.status != DISMISSED:
        row.status, row.dismissed_at, row.updated_at = DISMISSED, now, now
        session.flush()
    return row.to_domain()


def mark_executed(session: Session, fills: Mapping[str, datetime]) -> int:
    """Pending steps whose client order id trading has filled (client order id -> fill time)
    become executed; returns how many. One query finds them, one update each."""
    matched = _pending_client_order_ids(session, fills)
    for client_order_id in sorted(matched):
        session.execute(update(RecommendationRow).where(
            RecommendationRow.client_order_id == client_order_id, RecommendationRow.status == PENDING,
        ).values(status=EXECUTED, executed_at=fills[client_order_id], updated_at=fills[client_order_id]))
    return len(matched)


def _pending_client_order_ids(session: Session, candidates: Iterable[str]) -> set[str]:
    ids = list(candidates)
    if not ids:
        return set()
    return set(session.scalars(select(RecommendationRow.client_order_id).where(
        RecommendationRow.client_order_id.in_(ids), RecommendationRow.status == PENDING)))


# --- retention (services/common/maintenance.py) ---

def delete_plans_created_before(session: Session, cutoff: datetime) -> int:
    return session.execute(delete(PlanRow).where(PlanRow.created_at < cutoff)).rowcount or 0


# A cached plan serves its day only (find_plan); scores and recommendations (with what became of
# them) are kept.
RETENTION_RULES = (
    RetentionRule("plans", "cached plans computed before the cutoff (a plan serves its own day only)",
                  "TRADER_PLAN_RETENTION_DAYS", 30, delete_plans_created_before),
)
