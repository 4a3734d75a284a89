"""Planner storage: computed plans, keyed by portfolio state hash and day; security scores;
recommendations, keyed by state (services/planner/recommendations.py); the incremental
batches (one batch per state and day: its candidate sequences, their evaluations and the best
result; a new batch discards the others); planner configurations with their history."""

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
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    insert,
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


class TargetsRow(Base):
    """The optimiser's targets of a state (a cache, reused for TARGETS_TTL_HOURS while the
    state and `cache_key` stay the same): weights, method, fallback, exclusions, notes (JSON)."""

    __tablename__ = "optimizer_targets"
    state_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    cache_key: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    payload: Mapped[str] = mapped_column(Text)


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


class BatchRow(Base):
    """One batch: the candidate sequences of one state and day, what they are evaluated from
    (`inputs`, JSON: the books as arrays, the mandatory steps, the plan's context), the progress
    and the best result (the original's best_result table)."""

    __tablename__ = "planner_batches"
    batch_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    state_key: Mapped[str] = mapped_column(String(32))
    as_of_date: Mapped[str] = mapped_column(String(10))
    mode: Mapped[str] = mapped_column(String(16))         # incremental or full
    inputs: Mapped[str] = mapped_column(Text)
    generated: Mapped[int] = mapped_column(Integer)       # sequences stored
    evaluated: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer)         # full mode: left once the beam search stopped
    plateau: Mapped[int] = mapped_column(Integer)         # full mode: chunks in a row that changed no beam score
    beam: Mapped[str] = mapped_column(Text)               # full mode: JSON list of the best scores so far
    current_score: Mapped[float] = mapped_column(Float)   # doing nothing, 0..1
    best_sequence_hash: Mapped[str | None] = mapped_column(String(32), nullable=True)
    best_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class SequenceRow(Base):
    __tablename__ = "planner_sequences"
    __table_args__ = (Index("ix_planner_sequences_pending", "batch_key", "completed", "position"),)
    batch_key: Mapped[str] = mapped_column(ForeignKey("planner_batches.batch_key", ondelete="CASCADE"),
                                           primary_key=True)
    sequence_hash: Mapped[str] = mapped_column(String(32), primary_key=True)  # MD5 of [symbol, side, quantity]s
    position: Mapped[int] = mapped_column(Integer)        # evaluation order: total priority, highest first
    priority: Mapped[float] = mapped_column(Float)        # the sum of its actions' priorities
    depth: Mapped[int] = mapped_column(Integer)
    pattern_type: Mapped[str] = mapped_column(String(16))  # single_best, mixed_strategy, multi_sell, multi_buy
    generator: Mapped[str] = mapped_column(String(32))    # the pattern or generator that made it
    steps: Mapped[str] = mapped_column(Text)              # JSON: the actions
    completed: Mapped[bool] = mapped_column(Boolean)      # evaluated, or skipped by the beam search


class EvaluationRow(Base):
    __tablename__ = "planner_evaluations"
    batch_key: Mapped[str] = mapped_column(ForeignKey("planner_batches.batch_key", ondelete="CASCADE"),
                                           primary_key=True)
    sequence_hash: Mapped[str] = mapped_column(String(32), primary_key=True)
    score: Mapped[float] = mapped_column(Float)           # 0..1, in the configuration's evaluation mode
    end_score: Mapped[float] = mapped_column(Float)       # the end-state score before the cost penalty (prices now)
    end_cash_base: Mapped[float] = mapped_column(Float)
    cost_base: Mapped[float] = mapped_column(Float)
    evaluated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PlannerConfigRow(Base):
    """A planner configuration: a template (no bucket) or the one configuration of a bucket."""

    __tablename__ = "planner_configs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    bucket_id: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    toml: Mapped[str] = mapped_column(Text)
    sliders: Mapped[str] = mapped_column(Text)            # JSON: risk, hold, spread, profit (0..1), set ones only
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PlannerConfigHistoryRow(Base):
    """A configuration as it was before an update."""

    __tablename__ = "planner_config_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    config_id: Mapped[str] = mapped_column(ForeignKey("planner_configs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    bucket_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    toml: Mapped[str] = mapped_column(Text)
    sliders: Mapped[str] = mapped_column(Text)
    saved_at: Mapped[datetime] = mapped_column(UtcDateTime())


SCHEMA = Schema("planner", (Base.metadata,), Path(__file__).with_name("migrations") / "versions",
                legacy_version=1)


def open_database(url: str) -> Database:
    return Database(url, SCHEMA)


# --- plans (a cache) ---

def find_plan(session: Session, portfolio_hash: str, as_of_date: str) -> tuple[str, dict] | None:
    row = session.execute(_FIND_PLAN, {"hash": portfolio_hash, "day": as_of_date}).first()
    return None if row is None else (row.plan_id, json.loads(row.payload))


def save_plan(session: Session, portfolio_hash: str, as_of_date: str, plan_id: str, payload: dict,
              created_at: datetime) -> None:
    """Store the plan of a portfolio hash and day, replacing the one stored."""
    session.execute(_FORGET_PLAN, {"hash": portfolio_hash, "day": as_of_date})
    session.execute(_INSERT_PLAN, {"portfolio_hash": portfolio_hash, "as_of_date": as_of_date, "plan_id": plan_id,
                                   "payload": json.dumps(payload, sort_keys=True), "created_at": created_at})


_PLANS = PlanRow.__table__
_FIND_PLAN = select(_PLANS.c.plan_id, _PLANS.c.payload).where(
    _PLANS.c.portfolio_hash == bindparam("hash"), _PLANS.c.as_of_date == bindparam("day"))
_FORGET_PLAN = delete(_PLANS).where(_PLANS.c.portfolio_hash == bindparam("hash"),
                                    _PLANS.c.as_of_date == bindparam("day"))
_INSERT_PLAN = insert(_PLANS)


def forget_plans(session: Session, portfolio_hash: str) -> None:
    """Drop the cached plans of a portfolio hash (every day), so the next request recomputes."""
    session.execute(delete(PlanRow).where(PlanRow.portfolio_hash == portfolio_hash))


# --- optimiser targets (a cache) ---

def find_targets(session: Session, state_key: str, cache_key: str, since: datetime,
                 until: datetime) -> tuple[datetime, dict] | None:
    """(computed_at, payload) of the state's targets when computed under `cache_key` between
    `since` and `until` (a later computation is never seen: no lookahead)."""
    row = session.execute(_FIND_TARGETS, {"key": state_key}).first()
    if row is None or row.cache_key != cache_key or not since <= row.computed_at <= until:
        return None
    return row.computed_at, json.loads(row.payload)


def save_targets(session: Session, state_key: str, cache_key: str, payload: dict, computed_at: datetime) -> str:
    """Store the targets of a state, replacing the ones stored; returns the payload as stored
    (JSON)."""
    text = json.dumps(payload, sort_keys=True)
    session.execute(_FORGET_TARGETS, {"key": state_key})
    session.execute(_INSERT_TARGETS, {"state_key": state_key, "cache_key": cache_key, "computed_at": computed_at,
                                      "payload": text})
    return text


def targets_index(session: Session) -> dict[str, tuple[str, datetime]]:
    """state key -> (cache key, computed_at) of every stored optimiser targets (not their payload)."""
    return {row.state_key: (row.cache_key, row.computed_at) for row in session.execute(_TARGETS_INDEX)}


_TARGETS = TargetsRow.__table__
_FIND_TARGETS = select(_TARGETS.c.cache_key, _TARGETS.c.computed_at, _TARGETS.c.payload).where(
    _TARGETS.c.state_key == bindparam("key"))
_TARGETS_INDEX = select(_TARGETS.c.state_key, _TARGETS.c.cache_key, _TARGETS.c.computed_at)
_FORGET_TARGETS = delete(_TARGETS).where(_TARGETS.c.state_key == bindparam("key"))
_INSERT_TARGETS = insert(_TARGETS)


# --- scores ---

def load_scores(session: Session, symbols: list[str] | None = None) -> dict[str, ScoreRow]:
    """symbol -> its stored score (every stored score when `symbols` is None)."""
    query = select(ScoreRow).order_by(ScoreRow.symbol)
    if symbols is not None:
        query = query.where(ScoreRow.symbol.in_(symbols))
    return {row.symbol: row for row in session.scalars(query)}


def save_scores(session: Session, rows: list[dict]) -> None:
    """Store many scores (one per symbol, each a dict of every ScoreRow column), replacing the
    stored ones: one DELETE of their symbols and one INSERT, statements built once."""
    if not rows:
        return
    session.execute(_DELETE_SCORES, {"symbols": [row["symbol"] for row in rows]})
    session.execute(_INSERT_SCORES, rows)


_DELETE_SCORES = delete(ScoreRow.__table__).where(ScoreRow.__table__.c.symbol.in_(bindparam("symbols", expanding=True)))
_INSERT_SCORES = insert(ScoreRow.__table__)


# --- recommendations ---

def find_recommendation(session: Session, uuid: str) -> RecommendationRow | None:
    return session.get(RecommendationRow, uuid)


def recommendations_of(session: Session, state_key: str, status: str | None = None) -> list[Recommendation]:
    """The recommendations of a state (with `status` only, unless None), by symbol and side."""
    if status is not None:
        rows = session.execute(_RECOMMENDATIONS_WITH, {"state": state_key, "status": status})
    else:
        rows = session.execute(_RECOMMENDATIONS_OF, {"state": state_key})
    return [Recommendation(**row._mapping) for row in rows]


_RECOMMENDATIONS = RecommendationRow.__table__
_RECOMMENDATIONS_OF = select(*(_RECOMMENDATIONS.c[f.name] for f in fields(Recommendation))).where(
    _RECOMMENDATIONS.c.state_key == bindparam("state")).order_by(_RECOMMENDATIONS.c.symbol, _RECOMMENDATIONS.c.side)
_RECOMMENDATIONS_WITH = _RECOMMENDATIONS_OF.where(_RECOMMENDATIONS.c.status == bindparam("status"))


def upsert_recommendation(session: Session, step: Recommendation, client_order_id: str | None,
                          now: datetime) -> Recommendation | None:
    """Store a planned step by the upsert rules (recommendations.py); None when the step was
    dismissed for this state (it is then not planned)."""
    return upsert_recommendations(session, [(step, client_order_id)], now)[0]


def upsert_recommendations(session: Session, steps: list[tuple[Recommendation, str | None]],
                           now: datetime) -> list[Recommendation | None]:
    """Store planned steps (each with its client order id, or None) by the upsert rules
    (recommendations.py), in order, as upsert_recommendation one after the other would; each
    step's row after it, None for a step dismissed for its state. One query reads the stored
    rows, one INSERT and one UPDATE statement write them."""
    if not steps:
        return []
    found = session.execute(_RECOMMENDATIONS_AT, {"states": sorted({step.state_key for step, _ in steps})})
    rows = {(row.state_key, row.symbol, row.side): dict(row._mapping) for row in found}
    new: dict[tuple[str, str, str], None] = {}      # keys inserted, in order
    changed: dict[tuple[str, str, str], None] = {}  # keys of stored rows updated, in order
    results: list[Recommendation | None] = []
    for step, client_order_id in steps:
        key = (step.state_key, step.symbol, step.side)
        row = rows.get(key)
        if upsert_action(None if row is None else row["status"]) == SUPPRESS:
            results.append(None)
            continue
        if row is None:
            row = rows[key] = {"uuid": step.uuid, "state_key": step.state_key, "symbol": step.symbol,
                               "side": step.side, "created_at": now, "dismissed_at": None}
            new[key] = None
        elif key not in new:
            changed[key] = None
        row.update({name: getattr(step, name) for name in _PLANNED}, client_order_id=client_order_id,
                   status=PENDING, updated_at=now, executed_at=None)
        results.append(Recommendation(**{name: row[name] for name in _DOMAIN}))
    if new:
        session.execute(_INSERT_RECOMMENDATION, [rows[key] for key in new])
    if changed:
        session.execute(_UPDATE_RECOMMENDATION, [{"key": rows[key]["uuid"], **{name: rows[key][name] for name in _SET}}
                                                 for key in changed])
        uuids = {rows[key]["uuid"] for key in changed}
        for held in list(session.identity_map.values()):  # rows the session holds: read anew when used
            if isinstance(held, RecommendationRow) and held.uuid in uuids:
                session.expire(held)
    return results


# The fields a planned step sets on its row; those of the domain's Recommendation.
_PLANNED = ("quantity", "estimated_price", "currency", "estimated_value_base", "reason", "plan_id", "step")
_DOMAIN = tuple(f.name for f in fields(Recommendation))
_RECOMMENDATIONS_AT = select(*_RECOMMENDATIONS.columns).where(
    _RECOMMENDATIONS.c.state_key.in_(bindparam("states", expanding=True)))
_INSERT_RECOMMENDATION = insert(_RECOMMENDATIONS)
_SET = (*_PLANNED, "client_order_id", "status", "updated_at", "executed_at")
_UPDATE_RECOMMENDATION = update(_RECOMMENDATIONS).where(_RECOMMENDATIONS.c.uuid == bindparam("key")).values(
    {name: bindparam(name) for name in _SET})


def dismiss(session: Session, row: RecommendationRow, now: datetime) -> Recommendation:
    if row.status != DISMISSED:
        row.status, row.dismissed_at, row.updated_at = DISMISSED, now, now
        session.flush()
    return row.to_domain()


def mark_executed(session: Session, fills: Mapping[str, datetime]) -> int:
    """Pending steps whose client order id trading has filled (client order id -> fill time)
    become executed; returns how many. One query finds them, one update statement marks them."""
    matched = _pending_client_order_ids(session, fills)
    if matched:
        session.execute(_MARK_EXECUTED, [{"id": client_order_id, "at": fills[client_order_id]}
                                         for client_order_id in sorted(matched)])
    return len(matched)


def _pending_client_order_ids(session: Session, candidates: Iterable[str]) -> set[str]:
    ids = list(candidates)
    if not ids:
        return set()
    return set(session.scalars(_PENDING_ORDER_IDS, {"ids": ids}))


_MARK_EXECUTED = update(_RECOMMENDATIONS).where(
    _RECOMMENDATIONS.c.client_order_id == bindparam("id"), _RECOMMENDATIONS.c.status == PENDING,
).values(status=EXECUTED, executed_at=bindparam("at"), updated_at=bindparam("at"))
_PENDING_ORDER_IDS = select(_RECOMMENDATIONS.c.client_order_id).where(
    _RECOMMENDATIONS.c.client_order_id.in_(bindparam("ids", expanding=True)), _RECOMMENDATIONS.c.status == PENDING)


# --- incremental batches ---

def stored_batch(session: Session, batch_key: str) -> BatchRow | None:
    """The batch stored under `batch_key` as a row in no session (its column values), or None."""
    row = session.execute(_FIND_BATCH, {"key": batch_key}).first()
    return None if row is None else BatchRow(**row._mapping)


def latest_batch(session: Session) -> BatchRow | None:
    return session.scalars(select(BatchRow).order_by(BatchRow.updated_at.desc()).limit(1)).first()


def forget_batches(session: Session, keep: str | None = None) -> None:
    """Delete every batch but `keep` (None: all), with their sequences and evaluations."""
    if keep is None:
        for statement in _FORGET_ALL:
            session.execute(statement)
        return
    for table in (EvaluationRow, SequenceRow, BatchRow):
        session.execute(delete(table).where(table.batch_key != keep))


def add_batch(session: Session, batch: BatchRow, sequences: list[dict]) -> None:
    """Store a new batch (`batch` stays out of the session) and its sequences (one insert for
    all of them)."""
    session.execute(_INSERT_BATCH, {column.key: getattr(batch, column.key) for column in _BATCHES.columns})
    if sequences:
        session.execute(_INSERT_SEQUENCES, [{**row, "batch_key": batch.batch_key} for row in sequences])


def pending_sequences(session: Session, batch_key: str, limit: int) -> list[SequenceRow]:
    """The next `limit` sequences not yet completed, in evaluation order."""
    return list(session.scalars(select(SequenceRow).where(
        SequenceRow.batch_key == batch_key, SequenceRow.completed.is_(False)).order_by(SequenceRow.position)
        .limit(limit)))


def record_evaluations(session: Session, batch_key: str, rows: list[dict], completed: list[str]) -> None:
    """Store evaluations and mark `completed` sequences (evaluated or skipped) done."""
    if rows:
        session.execute(_INSERT_EVALUATIONS, [{**row, "batch_key": batch_key} for row in rows])
    for start in range(0, len(completed), 500):
        session.execute(_COMPLETE_SEQUENCES, {"key": batch_key, "hashes": completed[start:start + 500]})


def update_progress(session: Session, batch: BatchRow) -> None:
    """Store `batch`'s progress (the columns an evaluation changes) under its key."""
    session.execute(_UPDATE_PROGRESS, {"key": batch.batch_key, **{name: getattr(batch, name) for name in PROGRESS}})


# The columns of a batch an evaluation changes.
PROGRESS = ("evaluated", "skipped", "plateau", "beam", "best_sequence_hash", "best_score", "updated_at",
            "completed_at")
_BATCHES, _SEQUENCES = BatchRow.__table__, SequenceRow.__table__
_FORGET_ALL = tuple(delete(table.__table__) for table in (EvaluationRow, SequenceRow, BatchRow))
_INSERT_BATCH = insert(_BATCHES)
_FIND_BATCH = select(*_BATCHES.columns).where(_BATCHES.c.batch_key == bindparam("key"))
_INSERT_SEQUENCES = insert(_SEQUENCES)
_INSERT_EVALUATIONS = insert(EvaluationRow.__table__)
_COMPLETE_SEQUENCES = update(_SEQUENCES).where(
    _SEQUENCES.c.batch_key == bindparam("key"), _SEQUENCES.c.sequence_hash.in_(bindparam("hashes", expanding=True)),
).values(completed=True)
_UPDATE_PROGRESS = update(_BATCHES).where(_BATCHES.c.batch_key == bindparam("key")).values(
    {name: bindparam(name) for name in PROGRESS})


def skip_pending(session: Session, batch_key: str) -> int:
    """Mark every sequence not yet completed as completed without evaluation; returns how many."""
    return session.execute(update(SequenceRow).where(SequenceRow.batch_key == batch_key,
                                                     SequenceRow.completed.is_(False))
                           .values(completed=True)).rowcount


def find_sequence(session: Session, batch_key: str, sequence_hash: str) -> SequenceRow | None:
    return session.get(SequenceRow, (batch_key, sequence_hash))


def count_rows(session: Session, table: type[Base]) -> int:
    return session.scalar(select(func.count()).select_from(table))


# --- planner configurations ---

def configs(session: Session) -> list[PlannerConfigRow]:
    """Bucket configurations first (by bucket), then the templates (by name)."""
    rows = session.scalars(select(PlannerConfigRow))
    return sorted(rows, key=lambda r: (r.bucket_id is None, r.bucket_id or "", r.name))


def find_config(session: Session, config_id: str) -> PlannerConfigRow | None:
    return session.get(PlannerConfigRow, config_id)


def find_config_by(session: Session, *, name: str | None = None,
                   bucket_id: str | None = None) -> PlannerConfigRow | None:
    query = select(PlannerConfigRow)
    query = query.where(PlannerConfigRow.name == name) if name is not None else \
        query.where(PlannerConfigRow.bucket_id == bucket_id)
    return session.scalars(query).first()


def save_config(session: Session, row: PlannerConfigRow, now: datetime) -> PlannerConfigRow:
    """Insert `row`, or keep the stored version in the history and update it."""
    stored = session.get(PlannerConfigRow, row.id)
    if stored is None:
        session.add(row)
        session.flush()
        return row
    session.add(PlannerConfigHistoryRow(config_id=stored.id, name=stored.name, bucket_id=stored.bucket_id,
                                        toml=stored.toml, sliders=stored.sliders, saved_at=now))
    stored.name, stored.bucket_id, stored.toml, stored.sliders, stored.updated_at = (
        row.name, row.bucket_id, row.toml, row.sliders, now)
    session.flush()
    return stored


def config_history(session: Session, config_id: str, limit: int) -> list[PlannerConfigHistoryRow]:
    """Newest first."""
    return list(session.scalars(select(PlannerConfigHistoryRow).where(PlannerConfigHistoryRow.config_id == config_id)
                                .order_by(PlannerConfigHistoryRow.id.desc()).limit(limit)))


# --- retention (services/common/maintenance.py) ---

def delete_plans_created_before(session: Session, cutoff: datetime) -> int:
    """Cached plans created, and cached optimiser targets computed, before `cutoff` (both are
    caches: a plan serves its own day, targets at most TARGETS_TTL_HOURS)."""
    plans = session.execute(delete(PlanRow).where(PlanRow.created_at < cutoff)).rowcount or 0
    return plans + (session.execute(delete(TargetsRow).where(TargetsRow.computed_at < cutoff)).rowcount or 0)


# A cached plan serves its day only (find_plan); scores and recommendations (with what became of
# them) are kept.
RETENTION_RULES = (
    RetentionRule("plans", "cached plans and optimiser targets computed before the cutoff (a plan serves its "
                  "own day only, targets 48 hours at most)",
                  "TRADER_PLAN_RETENTION_DAYS", 30, delete_plans_created_before),
)
