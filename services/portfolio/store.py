"""Portfolio storage: positions and cash as last reported by the broker, cash flows, sync time."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from sqlalchemy import BigInteger, Date, Float, Integer, String, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.migrations import Schema
from services.portfolio.migrations import LEGACY_STEPS
from services.portfolio.valuation import Holding


class Base(DeclarativeBase):
    pass


class PositionRow(Base):
    __tablename__ = "positions"
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)  # int64 in the contract
    average_cost: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))


class CashRow(Base):
    __tablename__ = "cash_balances"
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    amount: Mapped[float] = mapped_column(Float)


class CashFlowRow(Base):
    __tablename__ = "cash_flows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str] = mapped_column(String(128), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SyncStateRow(Base):
    __tablename__ = "broker_sync"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # single row, id 1
    synced_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SnapshotRow(Base):
    """One per day, in the base currency: positions value, cash and their total (decision 5)."""

    __tablename__ = "snapshots"
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    positions_value_base: Mapped[float] = mapped_column(Float)
    cash_base: Mapped[float] = mapped_column(Float)
    total_value_base: Mapped[float] = mapped_column(Float)
    base_currency: Mapped[str] = mapped_column(String(3))
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime())


SCHEMA = Schema("portfolio", (Base.metadata,), Path(__file__).with_name("migrations") / "versions",
                legacy_version=2, legacy_steps=LEGACY_STEPS)


def open_database(url: str) -> Database:
    return Database(url, SCHEMA)


def save_snapshot(session: Session, row: SnapshotRow) -> None:
    session.merge(row)


def snapshots(session: Session, before: date | None, limit: int) -> list[SnapshotRow]:
    query = select(SnapshotRow).order_by(SnapshotRow.date.desc()).limit(limit)
    if before is not None:
        query = query.where(SnapshotRow.date < before)
    return list(session.scalars(query))


def holdings(session: Session) -> list[Holding]:
    rows = session.scalars(select(PositionRow).order_by(PositionRow.symbol))
    return [Holding(r.symbol, r.quantity, r.average_cost, r.currency) for r in rows]


def cash(session: Session) -> dict[str, float]:
    return {r.currency: r.amount for r in session.scalars(select(CashRow))}


def broker_synced_at(session: Session) -> datetime | None:
    row = session.get(SyncStateRow, 1)
    return row.synced_at if row else None


def replace_broker_state(session: Session, new_holdings: list[Holding], new_cash: dict[str, float],
                         synced_at: datetime) -> None:
    session.execute(delete(PositionRow))
    session.execute(delete(CashRow))
    session.add_all(PositionRow(symbol=h.symbol, quantity=h.quantity, average_cost=h.average_cost,
                                currency=h.currency) for h in new_holdings)
    session.add_all(CashRow(currency=c, amount=a) for c, a in new_cash.items())
    session.merge(SyncStateRow(id=1, synced_at=synced_at))


def find_cash_flow(session: Session, reference: str) -> CashFlowRow | None:
    return session.scalars(select(CashFlowRow).where(CashFlowRow.reference == reference)).first()


def add_cash_flow(session: Session, kind: str, amount: float, currency: str, reference: str,
                  occurred_at: datetime) -> CashFlowRow:
    row = CashFlowRow(kind=kind, amount=amount, currency=currency, reference=reference, occurred_at=occurred_at)
    session.add(row)
    session.flush()
    return row


def cash_flows(session: Session, limit: int) -> list[CashFlowRow]:
    return list(session.scalars(select(CashFlowRow).order_by(CashFlowRow.id.desc()).limit(limit)))
