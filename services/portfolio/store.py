"""Portfolio storage: the broker's positions and cash as last reported, the books (cash flows,
fills, positions with history, dividends), snapshots, buckets, allocation targets."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import date, datetime
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.maintenance import RetentionRule
from services.common.migrations import Schema
from services.common.revisions import wrote
from services.portfolio.migrations import LEGACY_STEPS
from services.portfolio.valuation import Holding


class Base(DeclarativeBase):
    pass


class PositionRow(Base):
    """A position as the broker last reported it (the source of truth for quantities)."""

    __tablename__ = "positions"
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)  # int64 in the contract
    average_cost: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))


class CashRow(Base):
    """A broker balance as last reported."""

    __tablename__ = "cash_balances"
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    amount: Mapped[float] = mapped_column(Float)


class CashFlowRow(Base):
    """One change of cash, once: keyed by the broker's id, or by the manual entry's reference."""

    __tablename__ = "cash_flows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    amount: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    broker_id: Mapped[str | None] = mapped_column(String(80), unique=True, index=True, nullable=True)
    source: Mapped[str] = mapped_column(String(16), server_default="manual")
    amount_base: Mapped[float | None] = mapped_column(Float, nullable=True)
    symbol: Mapped[str] = mapped_column(String(32), server_default="")
    description: Mapped[str] = mapped_column(String(300), server_default="")
    broker_reference: Mapped[str] = mapped_column(String(128), server_default="")


class SyncStateRow(Base):
    __tablename__ = "broker_sync"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # single row, id 1
    synced_at: Mapped[datetime] = mapped_column(UtcDateTime())
    trade_cursor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cash_movement_cursor: Mapped[int] = mapped_column(BigInteger, server_default="0")


class FillRow(Base):
    """A fill from trading's ledger, once per broker trade id, with what a SELL realised."""

    __tablename__ = "fills"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broker_trade_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_order_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    commission: Mapped[float] = mapped_column(Float)
    executed_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    bucket: Mapped[str] = mapped_column(String(32))
    value_base: Mapped[float | None] = mapped_column(Float, nullable=True)
    realized_pnl: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost_basis: Mapped[float | None] = mapped_column(Float, nullable=True)


class PositionHistoryRow(Base):
    """What the books' fills add up to, per symbol (recomputed from them when they change)."""

    __tablename__ = "position_history"
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[float] = mapped_column(Float)
    realized_pnl: Mapped[float] = mapped_column(Float)
    first_bought_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_bought_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_sold_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    bucket: Mapped[str] = mapped_column(String(32))


class SnapshotRow(Base):
    """One per day, in the base currency: positions value, cash and their total (decision 5),
    and what the books knew that day (absent in rows from before the books kept it)."""

    __tablename__ = "snapshots"
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    positions_value_base: Mapped[float] = mapped_column(Float)
    cash_base: Mapped[float] = mapped_column(Float)
    total_value_base: Mapped[float] = mapped_column(Float)
    base_currency: Mapped[str] = mapped_column(String(3))
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime())
    invested_base: Mapped[float | None] = mapped_column(Float, nullable=True)
    net_deposits_base: Mapped[float | None] = mapped_column(Float, nullable=True)
    unrealized_pnl_base: Mapped[float | None] = mapped_column(Float, nullable=True)
    position_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    country_shares: Mapped[str | None] = mapped_column(Text, nullable=True)   # JSON object
    industry_shares: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON object
    annual_turnover: Mapped[float | None] = mapped_column(Float, nullable=True)


class SnapshotPositionRow(Base):
    """A position on a snapshot's day (for attribution and bucket values)."""

    __tablename__ = "snapshot_positions"
    date: Mapped[date] = mapped_column(Date, ForeignKey("snapshots.date", ondelete="CASCADE"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    value_base: Mapped[float] = mapped_column(Float)
    country: Mapped[str] = mapped_column(String(64))
    industry: Mapped[str] = mapped_column(String(100))
    bucket: Mapped[str] = mapped_column(String(32))


class SnapshotBucketRow(Base):
    """A bucket on a snapshot's day: value, external flows since the previous snapshot, and its
    growth index (time-weighted, external flows excluded)."""

    __tablename__ = "snapshot_buckets"
    date: Mapped[date] = mapped_column(Date, ForeignKey("snapshots.date", ondelete="CASCADE"), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(32), primary_key=True)
    value_base: Mapped[float] = mapped_column(Float)
    cash_base: Mapped[float] = mapped_column(Float)
    flows_base: Mapped[float] = mapped_column(Float)
    growth_index: Mapped[float | None] = mapped_column(Float, nullable=True)


class SnapshotRecord(NamedTuple):
    """A snapshot as take_snapshot stores it: SnapshotRow's columns, in their order, as a plain
    record (built once a cycle; a mapped entity costs far more to build and is never needed:
    plain statements write it)."""

    date: date
    positions_value_base: float
    cash_base: float
    total_value_base: float
    base_currency: str
    taken_at: datetime
    invested_base: float | None
    net_deposits_base: float | None
    unrealized_pnl_base: float | None
    position_count: int | None
    country_shares: str | None
    industry_shares: str | None
    annual_turnover: float | None


class SnapshotBucketRecord(NamedTuple):
    """A bucket on a snapshot as take_snapshot stores it: SnapshotBucketRow's columns, in their
    order, as a plain record (read by attribute, as the rows are)."""

    date: date
    bucket: str
    value_base: float
    cash_base: float
    flows_base: float
    growth_index: float | None


class DividendRow(Base):
    __tablename__ = "dividends"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cash_flow_id: Mapped[int] = mapped_column(ForeignKey("cash_flows.id"), unique=True)
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    amount: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    amount_base: Mapped[float | None] = mapped_column(Float, nullable=True)
    pay_date: Mapped[date] = mapped_column(Date)
    bucket: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)  # the open ones are read every day
    reinvest_client_order_id: Mapped[str] = mapped_column(String(64), server_default="", index=True)
    reinvested_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class BucketRow(Base):
    __tablename__ = "buckets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    target_share: Mapped[float] = mapped_column(Float)
    min_share: Mapped[float] = mapped_column(Float)
    max_share: Mapped[float] = mapped_column(Float)
    consecutive_losses: Mapped[int] = mapped_column(Integer, default=0)
    high_water_mark: Mapped[float | None] = mapped_column(Float, nullable=True)
    high_water_mark_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    loss_streak_paused_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    reawakening: Mapped[float] = mapped_column(Float, default=1.0)
    win_cooldown_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    dividend_handling: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BucketBalanceRow(Base):
    __tablename__ = "bucket_balances"
    bucket: Mapped[str] = mapped_column(ForeignKey("buckets.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    amount: Mapped[float] = mapped_column(Float)


class BucketTransactionRow(Base):
    """Every change of a bucket's balance."""

    __tablename__ = "bucket_transactions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[str] = mapped_column(ForeignKey("buckets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    amount_base: Mapped[float | None] = mapped_column(Float, nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    description: Mapped[str] = mapped_column(String(300))
    cash_flow_id: Mapped[int | None] = mapped_column(ForeignKey("cash_flows.id"), nullable=True)


class BucketTransferRow(Base):
    """A transfer between buckets, once per reference."""

    __tablename__ = "bucket_transfers"
    reference: Mapped[str] = mapped_column(String(128), primary_key=True)
    from_bucket: Mapped[str] = mapped_column(String(32))
    to_bucket: Mapped[str] = mapped_column(String(32))
    amount: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class SettingRow(Base):
    __tablename__ = "portfolio_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # JSON


class AllocationGroupRow(Base):
    """A group of the owner's mapping; a kind without groups uses the defaults."""

    __tablename__ = "allocation_groups"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)


class AllocationMemberRow(Base):
    """A country or industry in one of the owner's groups (each in one group only)."""

    __tablename__ = "allocation_group_members"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    member: Mapped[str] = mapped_column(String(100), primary_key=True)
    group: Mapped[str] = mapped_column(String(100))


class AllocationTargetRow(Base):
    __tablename__ = "allocation_targets"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    group: Mapped[str] = mapped_column(String(100), primary_key=True)
    share: Mapped[float] = mapped_column(Float)


SCHEMA = Schema("portfolio", (Base.metadata,), Path(__file__).with_name("migrations") / "versions",
                legacy_version=2, legacy_steps=LEGACY_STEPS)


def open_database(url: str) -> Database:
    """The portfolio's database; its transactions note the tables they write (`wrote`)."""
    db = Database(url, SCHEMA)
    db.revisions  # noqa: B018 -- start noting the tables each transaction writes (services/common/revisions.py)
    return db


# --- broker state ---

def holdings(session: Session) -> list[Holding]:
    rows = session.execute(select(PositionRow.symbol, PositionRow.quantity, PositionRow.average_cost,
                                  PositionRow.currency).order_by(PositionRow.symbol))
    return [Holding(*r) for r in rows]


def cash(session: Session) -> dict[str, float]:
    return {currency: amount for currency, amount in session.execute(select(CashRow.currency, CashRow.amount))}


def broker_synced_at(session: Session) -> datetime | None:
    return sync_state(session)[0]


def ledger_cursor(session: Session) -> tuple[int, int]:
    return sync_state(session)[1]


def sync_state(session: Session) -> tuple[datetime | None, tuple[int, int]]:
    """(when the broker was last synced, the ledger cursor): (None, (0, 0)) before the first sync."""
    table = SyncStateRow.__table__
    row = session.execute(select(table.c.synced_at, table.c.trade_cursor, table.c.cash_movement_cursor)
                          .where(table.c.id == 1)).first()
    return (row[0], (row[1] or 0, row[2] or 0)) if row else (None, (0, 0))


def replace_broker_state(session: Session, new_holdings: list[Holding], new_cash: dict[str, float],
                         synced_at: datetime, cursor: tuple[int, int] | None = None, changed: bool = True) -> None:
    """Store what the broker reported and when; `changed=False` (the caller compared them with
    what is stored) keeps the stored positions and cash rows as they are. Plain statements: a
    sync writes this every cycle."""
    if changed:
        session.execute(_DELETE_POSITIONS)
        session.execute(_DELETE_CASH)
        if new_holdings:
            session.execute(_INSERT_POSITION, [
                {"symbol": h.symbol, "quantity": h.quantity, "average_cost": h.average_cost, "currency": h.currency}
                for h in new_holdings])
        if new_cash:
            session.execute(_INSERT_CASH, [{"currency": c, "amount": a} for c, a in new_cash.items()])
    values: dict[str, object] = {"synced_at": synced_at}
    if cursor is not None:
        values["trade_cursor"], values["cash_movement_cursor"] = cursor
    if not session.execute(_UPDATE_SYNC, values).rowcount:
        session.execute(_INSERT_SYNC, {"id": 1, "trade_cursor": 0, "cash_movement_cursor": 0, **values})


_DELETE_POSITIONS, _DELETE_CASH = delete(PositionRow.__table__), delete(CashRow.__table__)
_INSERT_POSITION, _INSERT_CASH = insert(PositionRow.__table__), insert(CashRow.__table__)
_UPDATE_SYNC = update(SyncStateRow.__table__).where(SyncStateRow.__table__.c.id == 1)
_INSERT_SYNC = insert(SyncStateRow.__table__)


# --- cash flows ---

def find_cash_flow(session: Session, reference: str) -> CashFlowRow | None:
    return session.scalars(select(CashFlowRow).where(CashFlowRow.reference == reference)).first()


def add_cash_flow(session: Session, kind: str, amount: float, currency: str, reference: str | None,
                  occurred_at: datetime, *, broker_id: str | None = None, source: str = "manual",
                  amount_base: float | None = None, symbol: str = "", description: str = "",
                  broker_reference: str = "") -> CashFlowRow:
    """Book a cash flow; returns a plain record of it (with its id; never in a session)."""
    values = dict(kind=kind, amount=amount, currency=currency, reference=reference, occurred_at=occurred_at,
                  broker_id=broker_id, source=source, amount_base=amount_base, symbol=symbol,
                  description=description[:300], broker_reference=broker_reference[:128])
    return CashFlowRow(id=session.execute(_INSERT_CASH_FLOW, values).scalar_one(), **values)


_INSERT_CASH_FLOW = insert(CashFlowRow.__table__).returning(CashFlowRow.__table__.c.id)


def known_broker_ids(session: Session, ids: Iterable[str]) -> set[str]:
    ids = list(ids)
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        found |= set(session.scalars(_KNOWN_BROKER_IDS, {"ids": ids[start:start + 500]}))
    return found


_KNOWN_BROKER_IDS = select(CashFlowRow.__table__.c.broker_id).where(
    CashFlowRow.__table__.c.broker_id.in_(bindparam("ids", expanding=True)))


def _flow_filter(query, kinds, currency, start, end):
    if kinds:
        query = query.where(CashFlowRow.kind.in_(kinds))
    if currency:
        query = query.where(CashFlowRow.currency == currency)
    if start is not None:
        query = query.where(CashFlowRow.occurred_at >= start)
    if end is not None:
        query = query.where(CashFlowRow.occurred_at < end)
    return query


def cash_flows(session: Session, limit: int, kinds: list[str] | None = None, currency: str | None = None,
               start: datetime | None = None, end: datetime | None = None) -> list[CashFlowRow]:
    """Newest first; `start` inclusive and `end` exclusive instants."""
    query = _flow_filter(select(CashFlowRow), kinds, currency, start, end)
    return list(session.scalars(query.order_by(CashFlowRow.occurred_at.desc(), CashFlowRow.id.desc()).limit(limit)))


def cash_flow_totals(session: Session, kinds: list[str] | None = None, currency: str | None = None,
                     start: datetime | None = None, end: datetime | None = None) -> list[tuple]:
    """(kind, currency, amount, amount_base or None when one is missing, count) per kind and currency."""
    query = select(CashFlowRow.kind, CashFlowRow.currency, func.sum(CashFlowRow.amount),
                   func.sum(CashFlowRow.amount_base), func.count(CashFlowRow.id),
                   func.count(CashFlowRow.amount_base))
    rows = session.execute(_flow_filter(query, kinds, currency, start, end)
                           .group_by(CashFlowRow.kind, CashFlowRow.currency)
                           .order_by(CashFlowRow.kind, CashFlowRow.currency))
    return [(k, c, a, b if n == nb else None, n) for k, c, a, b, n, nb in rows]


def book_cash(session: Session) -> dict[str, float]:
    """The cash flows per currency: what the books say each balance is (all of them summed by
    the database; BookCash keeps the same figure without reading the whole ledger each time)."""
    return {c: a for c, a in session.execute(select(CashFlowRow.currency, func.sum(CashFlowRow.amount))
                                             .group_by(CashFlowRow.currency))}


class BookCash:
    """The cash flows per currency, kept between reads so that a read costs the rows booked
    since the previous one, not the whole ledger (which grows with every fill and dividend).

    Sound because the cash-flow ledger only grows: rows are added (with increasing ids) and never
    removed or changed in amount or currency. Each read fetches the rows after the highest id
    kept. What a read saw is kept only when its transaction wrote nothing (so every row it saw
    is committed: `wrote`) and no other read moved the mark meanwhile; the book's writers run one at a
    time (the engine's lock), so no row with a lower id can commit after a higher one was seen.
    The sums are exact (fractions: one rounding per currency at the end): the figure does not
    depend on how the ledger was read in parts, nor on when the process started."""

    def __init__(self):
        self._lock = threading.Lock()
        self._through = 0  # the highest cash-flow id summed
        self._sums: dict[str, Fraction] = {}

    def read(self, session: Session) -> dict[str, float]:
        with self._lock:
            through, sums = self._through, dict(self._sums)
        rows = session.execute(select(CashFlowRow.id, CashFlowRow.currency, CashFlowRow.amount)
                               .where(CashFlowRow.id > through).order_by(CashFlowRow.id)).all()
        for _, currency, amount in rows:
            sums[currency] = sums.get(currency, Fraction(0)) + Fraction(amount)
        if rows and not wrote(session):
            with self._lock:
                if self._through == through:
                    self._through, self._sums = rows[-1][0], sums
        return {c: float(s) for c, s in sums.items()}


# The statements a cycle runs are built once, with bound parameters: building a statement
# (and its cache key) costs several times what running it on a small table does.
_FLOWS = CashFlowRow.__table__
_EXTERNAL_FLOWS = select(_FLOWS.c.occurred_at, _FLOWS.c.amount_base).where(
    _FLOWS.c.kind.in_(("deposit", "withdrawal")), _FLOWS.c.occurred_at <= bindparam("until")).order_by(
    _FLOWS.c.occurred_at)
_EXTERNAL_FLOWS_AFTER = _EXTERNAL_FLOWS.where(_FLOWS.c.occurred_at > bindparam("after"))
_FLOW_TOTAL = select(func.coalesce(func.sum(_FLOWS.c.amount_base), 0.0)).where(
    _FLOWS.c.kind.in_(bindparam("kinds", expanding=True)), _FLOWS.c.occurred_at <= bindparam("end"))
_FLOW_TOTAL_AFTER = _FLOW_TOTAL.where(_FLOWS.c.occurred_at > bindparam("start"))
_LATEST_FLOW = select(func.max(_FLOWS.c.occurred_at)).where(_FLOWS.c.kind.in_(bindparam("kinds", expanding=True)))


def external_flows_base(session: Session, after: datetime | None,
                        until: datetime) -> list[tuple[datetime, float | None]]:
    """(time, base amount) of every deposit and withdrawal in (after, until]."""
    if after is None:
        return list(session.execute(_EXTERNAL_FLOWS, {"until": until}))
    return list(session.execute(_EXTERNAL_FLOWS_AFTER, {"until": until, "after": after}))


def latest_flow_at(session: Session, kinds: tuple[str, ...]) -> datetime | None:
    """When the latest cash flow of `kinds` occurred (None without one)."""
    return session.execute(_LATEST_FLOW, {"kinds": list(kinds)}).scalar()


def flow_totals_base(session: Session, kinds: tuple[str, ...], start: datetime | None, end: datetime) -> float:
    if start is None:
        return float(session.execute(_FLOW_TOTAL, {"kinds": list(kinds), "end": end}).scalar())
    return float(session.execute(_FLOW_TOTAL_AFTER, {"kinds": list(kinds), "end": end, "start": start}).scalar())


# --- fills and positions with history ---

def known_fills(session: Session, ids: Iterable[str]) -> set[str]:
    ids = list(ids)
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        found |= set(session.scalars(_KNOWN_FILLS, {"ids": ids[start:start + 500]}))
    return found


_KNOWN_FILLS = select(FillRow.__table__.c.broker_trade_id).where(
    FillRow.__table__.c.broker_trade_id.in_(bindparam("ids", expanding=True)))


def fills(session: Session, limit: int | None, symbol: str = "", bucket: str = "", start: datetime | None = None,
          end: datetime | None = None, side: str = "") -> list[FillRow]:
    query = select(FillRow)
    if symbol:
        query = query.where(FillRow.symbol == symbol)
    if bucket:
        query = query.where(FillRow.bucket == bucket)
    if side:
        query = query.where(FillRow.side == side)
    if start is not None:
        query = query.where(FillRow.executed_at >= start)
    if end is not None:
        query = query.where(FillRow.executed_at < end)
    query = query.order_by(FillRow.executed_at.desc(), FillRow.id.desc())
    return list(session.scalars(query if limit is None else query.limit(limit)))


def fill_bucket(session: Session, client_order_id: str) -> str | None:
    """The bucket of the fill of an order (None: no fill of it)."""
    return session.execute(_FILL_BUCKET, {"client_order_id": client_order_id}).scalar()


_FILL_BUCKET = select(FillRow.__table__.c.bucket).where(
    FillRow.__table__.c.client_order_id == bindparam("client_order_id")).order_by(FillRow.__table__.c.id).limit(1)


_FILLS = FillRow.__table__
_TRADED = select(func.coalesce(func.sum(_FILLS.c.value_base), 0.0)).where(
    _FILLS.c.executed_at > bindparam("since"), _FILLS.c.executed_at <= bindparam("until"))


def traded_value_base(session: Session, since: datetime, until: datetime) -> float:
    return float(session.execute(_TRADED, {"since": since, "until": until}).scalar())


def fill_times_after(session: Session, after: datetime) -> tuple[datetime, ...]:
    """When each fill later than `after` executed, in order."""
    return tuple(session.scalars(_FILL_TIMES_AFTER, {"after": after}))


_FILL_TIMES_AFTER = select(_FILLS.c.executed_at).where(_FILLS.c.executed_at > bindparam("after")).order_by(
    _FILLS.c.executed_at)


_HISTORY = PositionHistoryRow.__table__
_POSITION_HISTORIES = select(*_HISTORY.columns)
_UPDATE_HISTORY = update(_HISTORY).where(_HISTORY.c.symbol == bindparam("the_symbol"))
_INSERT_HISTORY = insert(_HISTORY)


def position_histories(session: Session) -> dict[str, Row]:
    """symbol -> its row, as plain rows (with PositionHistoryRow's attributes): plain
    statements write them (save_position_history), which would leave entities stale."""
    return {r.symbol: r for r in session.execute(_POSITION_HISTORIES)}


def save_position_history(session: Session, values: dict) -> None:
    """Write a symbol's position with history (`values`: every column of position_history)."""
    if not session.execute(_UPDATE_HISTORY, {"the_symbol": values["symbol"], **values}).rowcount:
        session.execute(_INSERT_HISTORY, values)


_FILL_RECORDS = select(_FILLS.c.broker_trade_id, _FILLS.c.symbol, _FILLS.c.side, _FILLS.c.quantity, _FILLS.c.price,
                       _FILLS.c.currency, _FILLS.c.commission, _FILLS.c.executed_at, _FILLS.c.bucket,
                       _FILLS.c.client_order_id, _FILLS.c.realized_pnl, _FILLS.c.cost_basis).where(
    _FILLS.c.symbol == bindparam("the_symbol")).order_by(_FILLS.c.id)
_SET_SELL_RESULT = update(_FILLS).where(_FILLS.c.broker_trade_id == bindparam("the_trade_id"))
_INSERT_FILL = insert(_FILLS)


def fill_rows_of(session: Session, symbol: str) -> list[Row]:
    """A symbol's fills in the order they were booked (the ledger's), as plain rows: the
    FillRecord fields, then realized_pnl and cost_basis."""
    return list(session.execute(_FILL_RECORDS, {"the_symbol": symbol}))


def set_sell_results(session: Session, results: list[tuple[str, float | None, float | None]]) -> None:
    """(broker trade id, realized P&L, cost basis) of SELLs whose figures changed."""
    if results:
        session.execute(_SET_SELL_RESULT, [{"the_trade_id": t, "realized_pnl": r, "cost_basis": c}
                                           for t, r, c in results])


def add_fill(session: Session, values: dict) -> None:
    session.execute(_INSERT_FILL, values)


# --- snapshots ---

def snapshots(session: Session, before: date | None, limit: int) -> list[SnapshotRow]:
    query = select(SnapshotRow).order_by(SnapshotRow.date.desc()).limit(limit)
    if before is not None:
        query = query.where(SnapshotRow.date < before)
    return list(session.scalars(query))


def snapshots_between(session: Session, start: date | None, end: date | None) -> list[SnapshotRow]:
    query = select(SnapshotRow).order_by(SnapshotRow.date)
    if start is not None:
        query = query.where(SnapshotRow.date >= start)
    if end is not None:
        query = query.where(SnapshotRow.date <= end)
    return list(session.scalars(query))


def snapshot_days(session: Session) -> list[tuple[date, float, datetime]]:
    """(date, total value, taken at) of every snapshot, by date."""
    table = SnapshotRow.__table__
    return [tuple(r) for r in session.execute(select(table.c.date, table.c.total_value_base, table.c.taken_at)
                                              .order_by(table.c.date))]


def _values(row, table) -> dict:
    """The column values of a row given as a dict, a plain record (SnapshotRecord, ...) or an entity."""
    if isinstance(row, dict):
        return row
    if isinstance(row, tuple):
        return row._asdict()
    return {c.key: getattr(row, c.key) for c in table.columns}


def save_snapshot(session: Session, row: SnapshotRow | SnapshotRecord, positions: list[SnapshotPositionRow | dict],
                  buckets: list[SnapshotBucketRow | SnapshotBucketRecord | dict], exists: bool | None = None) -> None:
    """Store a day's snapshot with its positions and buckets (rows or their column values),
    replacing that day's if there is one (`exists`: whether there is, when the caller knows).
    `row` is not added to the session: plain statements write its values."""
    table = SnapshotRow.__table__
    if exists is None:
        exists = session.execute(select(table.c.date).where(table.c.date == row.date)).first() is not None
    values = _values(row, table)
    if exists:
        for model in (SnapshotPositionRow, SnapshotBucketRow):
            session.execute(delete(model.__table__).where(model.__table__.c.date == row.date))
        session.execute(update(table).where(table.c.date == row.date).values(values))
    else:
        session.execute(_INSERT_SNAPSHOT, values)
    for rows, model, statement in ((positions, SnapshotPositionRow, _INSERT_SNAPSHOT_POSITION),
                                   (buckets, SnapshotBucketRow, _INSERT_SNAPSHOT_BUCKET)):
        if rows:
            session.execute(statement, [_values(r, model.__table__) for r in rows])


_INSERT_SNAPSHOT = insert(SnapshotRow.__table__)
_INSERT_SNAPSHOT_POSITION, _INSERT_SNAPSHOT_BUCKET = insert(SnapshotPositionRow.__table__), insert(
    SnapshotBucketRow.__table__)


def delete_snapshots_before(session: Session, day: date) -> int:
    """Delete the snapshots dated before `day` with their positions and buckets; returns the rows deleted."""
    return sum(session.execute(delete(row).where(row.date < day)).rowcount or 0
               for row in (SnapshotPositionRow, SnapshotBucketRow, SnapshotRow))


def snapshot_positions(session: Session, start: date | None, end: date | None) -> list:
    """Rows (date, symbol, quantity, value_base, country, industry, bucket): plain rows, not
    entities, since ten years of them are read at once."""
    table = SnapshotPositionRow.__table__
    query = select(table.c.date, table.c.symbol, table.c.quantity, table.c.value_base, table.c.country,
                   table.c.industry, table.c.bucket)
    if start is not None:
        query = query.where(table.c.date >= start)
    if end is not None:
        query = query.where(table.c.date <= end)
    return list(session.execute(query))


def latest_snapshot_positions(session: Session) -> list[SnapshotPositionRow]:
    latest = session.scalar(select(func.max(SnapshotPositionRow.date)))
    if latest is None:
        return []
    return list(session.scalars(select(SnapshotPositionRow).where(SnapshotPositionRow.date == latest)))


def snapshot_buckets(session: Session, bucket: str, start: date | None = None,
                     end: date | None = None) -> list[SnapshotBucketRow]:
    query = select(SnapshotBucketRow).where(SnapshotBucketRow.bucket == bucket).order_by(SnapshotBucketRow.date)
    if start is not None:
        query = query.where(SnapshotBucketRow.date >= start)
    if end is not None:
        query = query.where(SnapshotBucketRow.date <= end)
    return list(session.scalars(query))


def last_snapshot_buckets_before(session: Session, day: date) -> dict[str, SnapshotBucketRow]:
    latest = select(func.max(SnapshotBucketRow.date)).where(SnapshotBucketRow.date < day).scalar_subquery()
    return {r.bucket: r for r in session.scalars(select(SnapshotBucketRow).where(SnapshotBucketRow.date == latest))}


def decode_shares(text: str | None) -> dict[str, float]:
    return json.loads(text) if text else {}


# --- dividends ---

def dividends(session: Session, limit: int | None, symbol: str = "", status: str = "", start: date | None = None,
              end: date | None = None, statuses: tuple[str, ...] = ()) -> list[DividendRow]:
    query = select(DividendRow)
    if symbol:
        query = query.where(DividendRow.symbol == symbol)
    if status:
        query = query.where(DividendRow.status == status)
    if statuses:
        query = query.where(DividendRow.status.in_(statuses))
    if start is not None:
        query = query.where(DividendRow.pay_date >= start)
    if end is not None:
        query = query.where(DividendRow.pay_date <= end)
    query = query.order_by(DividendRow.pay_date.desc(), DividendRow.id.desc())
    return list(session.scalars(query if limit is None else query.limit(limit)))


def waiting_dividends(session: Session) -> list[DividendRow]:
    """The dividends waiting for a BUY to fill: assigned to one, or pooled for the next."""
    return list(session.scalars(_WAITING_DIVIDENDS))


_WAITING_DIVIDENDS = select(DividendRow).where(DividendRow.status.in_(("assigned", "pooled"))).order_by(DividendRow.id)


def mark_dividends(session: Session, marks: dict[int, tuple[str, str]]) -> None:
    """Set dividends' (status, reinvest client order id): id -> the pair."""
    table = DividendRow.__table__
    by_mark: dict[tuple[str, str], list[int]] = {}
    for dividend_id, mark in marks.items():
        by_mark.setdefault(mark, []).append(dividend_id)
    for (status, client_order_id), ids in sorted(by_mark.items()):
        for start in range(0, len(ids), 500):
            session.execute(update(table).where(table.c.id.in_(sorted(ids)[start:start + 500]))
                            .values(status=status, reinvest_client_order_id=client_order_id))


# --- buckets ---

def buckets(session: Session, include_retired: bool = True) -> list[BucketRow]:
    query = select(BucketRow).order_by(BucketRow.kind, BucketRow.id)
    if not include_retired:
        query = query.where(BucketRow.status != "retired")
    return list(session.scalars(query))


def bucket_balances(session: Session) -> dict[str, dict[str, float]]:
    """bucket -> currency -> amount."""
    result: dict[str, dict[str, float]] = {}
    for bucket, currency, amount in session.execute(_BALANCES):
        result.setdefault(bucket, {})[currency] = amount
    return result


def book_to_bucket(session: Session, bucket: str, kind: str, amount: float, currency: str, amount_base: float | None,
                   at: datetime, description: str, cash_flow_id: int | None = None) -> None:
    """Change a bucket's balance and record the transaction, together (plain statements: the
    balances are only ever read as plain rows, never as entities a statement could leave stale)."""
    if not session.execute(_ADD_TO_BALANCE, {"the_bucket": bucket, "the_currency": currency,
                                              "delta": amount}).rowcount:
        session.execute(_INSERT_BALANCE, {"bucket": bucket, "currency": currency, "amount": amount})
    session.execute(_INSERT_BUCKET_TRANSACTION, {
        "bucket": bucket, "kind": kind, "amount": amount, "currency": currency, "amount_base": amount_base, "at": at,
        "description": description[:300], "cash_flow_id": cash_flow_id})


_BALANCE_TABLE = BucketBalanceRow.__table__
_BALANCES = select(_BALANCE_TABLE.c.bucket, _BALANCE_TABLE.c.currency, _BALANCE_TABLE.c.amount)
_ADD_TO_BALANCE = update(_BALANCE_TABLE).where(
    _BALANCE_TABLE.c.bucket == bindparam("the_bucket"), _BALANCE_TABLE.c.currency == bindparam("the_currency")
).values(amount=_BALANCE_TABLE.c.amount + bindparam("delta"))
_INSERT_BALANCE = insert(_BALANCE_TABLE)
_INSERT_BUCKET_TRANSACTION = insert(BucketTransactionRow.__table__)


def bucket_transactions(session: Session, bucket: str, limit: int) -> list[BucketTransactionRow]:
    query = select(BucketTransactionRow).order_by(BucketTransactionRow.id.desc()).limit(limit)
    if bucket:
        query = query.where(BucketTransactionRow.bucket == bucket)
    return list(session.scalars(query))


def any_bucket_transaction(session: Session) -> bool:
    return session.scalar(select(BucketTransactionRow.id).limit(1)) is not None


_BUCKET_MOVES = BucketTransactionRow.__table__
_BUCKET_FLOWS = select(_BUCKET_MOVES.c.bucket, func.coalesce(func.sum(_BUCKET_MOVES.c.amount_base), 0.0)).where(
    _BUCKET_MOVES.c.kind.in_(bindparam("kinds", expanding=True)), _BUCKET_MOVES.c.at <= bindparam("until"))
_BUCKET_FLOWS_AFTER = _BUCKET_FLOWS.where(_BUCKET_MOVES.c.at > bindparam("after")).group_by(_BUCKET_MOVES.c.bucket)
_BUCKET_FLOWS = _BUCKET_FLOWS.group_by(_BUCKET_MOVES.c.bucket)


def latest_bucket_transaction_at(session: Session, kinds: frozenset[str]) -> datetime | None:
    """When the latest bucket transaction of `kinds` occurred (None without one)."""
    return session.execute(_LATEST_BUCKET_MOVE, {"kinds": sorted(kinds)}).scalar()


_LATEST_BUCKET_MOVE = select(func.max(_BUCKET_MOVES.c.at)).where(
    _BUCKET_MOVES.c.kind.in_(bindparam("kinds", expanding=True)))


def bucket_flows_base(session: Session, kinds: frozenset[str], after: datetime | None,
                      until: datetime) -> dict[str, float]:
    """bucket -> sum of base amounts of transactions of `kinds` in (after, until]."""
    if after is None:
        return dict(session.execute(_BUCKET_FLOWS, {"kinds": sorted(kinds), "until": until}).all())
    return dict(session.execute(_BUCKET_FLOWS_AFTER, {"kinds": sorted(kinds), "until": until, "after": after}).all())


# --- settings and allocation targets ---

def setting(session: Session, key: str) -> object | None:
    row = session.get(SettingRow, key)
    return None if row is None else json.loads(row.value)


def save_setting(session: Session, key: str, value: object) -> None:
    session.merge(SettingRow(key=key, value=json.dumps(value, sort_keys=True)))


def allocation_groups(session: Session) -> dict[str, dict[str, tuple[str, ...]]]:
    """kind -> group -> its members, groups by name and members in order (kinds without groups
    are absent)."""
    groups: dict[str, dict[str, list[str]]] = {}
    for kind, name in session.execute(select(AllocationGroupRow.kind, AllocationGroupRow.name)
                                      .order_by(AllocationGroupRow.kind, AllocationGroupRow.name)):
        groups.setdefault(kind, {})[name] = []
    for kind, member, group in session.execute(
            select(AllocationMemberRow.kind, AllocationMemberRow.member, AllocationMemberRow.group)
            .order_by(AllocationMemberRow.kind, AllocationMemberRow.member)):
        groups.setdefault(kind, {}).setdefault(group, []).append(member)
    return {k: {g: tuple(m) for g, m in kind_groups.items()} for k, kind_groups in groups.items()}


def replace_allocation_groups(session: Session, kind: str, groups: dict[str, tuple[str, ...]]) -> None:
    session.execute(delete(AllocationMemberRow).where(AllocationMemberRow.kind == kind))
    session.execute(delete(AllocationGroupRow).where(AllocationGroupRow.kind == kind))
    session.add_all(AllocationGroupRow(kind=kind, name=name) for name in groups)
    session.add_all(AllocationMemberRow(kind=kind, member=m, group=name) for name, members in groups.items()
                    for m in members)


def allocation_targets(session: Session) -> dict[str, dict[str, float]]:
    """kind -> group -> target share (kinds without targets are absent)."""
    targets: dict[str, dict[str, float]] = {}
    for kind, group, share in session.execute(select(AllocationTargetRow.kind, AllocationTargetRow.group,
                                                     AllocationTargetRow.share)):
        targets.setdefault(kind, {})[group] = share
    return targets


def replace_allocation_targets(session: Session, targets: dict[str, dict[str, float]]) -> None:
    session.execute(delete(AllocationTargetRow))
    for kind, shares in targets.items():
        session.add_all(AllocationTargetRow(kind=kind, group=g, share=s) for g, s in shares.items())


# --- retention (services/common/maintenance.py) ---

RETENTION_RULES = (
    RetentionRule("snapshots", "daily snapshots with their positions and buckets (performance reads them)",
                  "TRADER_SNAPSHOT_RETENTION_DAYS", 0, delete_snapshots_before, by_day=True),
)
