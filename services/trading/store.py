"""Trading ledger: orders with every state change, and trades deduplicated by broker trade id."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database
from services.trading.adapters.broker import Execution
from services.trading.orders import OrderIntent

SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    pass


class OrderRow(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(300))
    fill_price: Mapped[float] = mapped_column(Float, default=0.0)
    commission: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OrderEventRow(Base):
    """Every state change of an order, with its time and reason."""

    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TradeRow(Base):
    __tablename__ = "trades"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broker_trade_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), nullable=True)
    client_order_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    commission: Mapped[float] = mapped_column(Float)
    executed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def open_database(url: str) -> Database:
    return Database(url, Base.metadata, "trading", SCHEMA_VERSION)


def utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def find_order(session: Session, client_order_id: str) -> OrderRow | None:
    return session.scalars(select(OrderRow).where(OrderRow.client_order_id == client_order_id)).first()


def add_order(session: Session, intent: OrderIntent, currency: str, now: datetime) -> OrderRow:
    row = OrderRow(client_order_id=intent.client_order_id, symbol=intent.symbol, side=intent.side,
                   quantity=intent.quantity, currency=currency, state="NEW", reason=intent.reason,
                   created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    session.add(OrderEventRow(order_id=row.id, state="NEW", reason=intent.reason, at=now))
    return row


def set_state(session: Session, order_id: int, state: str, reason: str, now: datetime) -> OrderRow:
    row = session.get(OrderRow, order_id)
    row.state = state
    if reason:
        row.reason = reason[:300]
    row.updated_at = now
    session.add(OrderEventRow(order_id=order_id, state=state, reason=reason[:300], at=now))
    return row


def record_execution(session: Session, execution: Execution, now: datetime) -> bool:
    """Add the trade once (keyed by broker trade id) and mark its order filled. False if known."""
    known = session.scalars(
        select(TradeRow.id).where(TradeRow.broker_trade_id == execution.broker_trade_id)
    ).first()
    if known is not None:
        return False
    order = find_order(session, execution.client_order_id)
    session.add(TradeRow(
        broker_trade_id=execution.broker_trade_id, order_id=order.id if order else None,
        client_order_id=execution.client_order_id, symbol=execution.symbol, side=execution.side,
        quantity=execution.quantity, price=execution.price, currency=execution.currency,
        commission=execution.commission, executed_at=execution.executed_at,
    ))
    if order is not None and order.state != "FILLED":
        order.fill_price = execution.price
        order.commission = execution.commission
        set_state(session, order.id, "FILLED", "", now)
    return True


def orders(session: Session, limit: int) -> list[OrderRow]:
    return list(session.scalars(select(OrderRow).order_by(OrderRow.id.desc()).limit(limit)))


def trades(session: Session, limit: int) -> list[TradeRow]:
    return list(session.scalars(select(TradeRow).order_by(TradeRow.id.desc()).limit(limit)))
