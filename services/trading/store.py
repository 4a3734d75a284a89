"""Trading ledger: orders with every state change, and trades deduplicated by broker trade id."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, Row, String, bindparam, case, func, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.logs import event
from services.common.migrations import Schema
from services.trading import orders as life_cycle
from services.trading.adapters.broker import Execution
from services.trading.adapters.paper_broker import PaperBase
from services.trading.migrations import LEGACY_STEPS
from services.trading.orders import OrderIntent, broker_reference

log = logging.getLogger("trader.trading.store")
OPEN_STATES = life_cycle.OPEN_STATES


class Base(DeclarativeBase):
    pass


class OrderRow(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(BigInteger)  # int64 in the contract
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(300))
    fill_price: Mapped[float] = mapped_column(Float, default=0.0)
    commission: Mapped[float] = mapped_column(Float, default=0.0)
    filled_quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    broker_reference: Mapped[str] = mapped_column(String(20), default="", index=True)
    limit_price: Mapped[float] = mapped_column(Float, default=0.0)
    realized_pnl: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    bucket: Mapped[str] = mapped_column(String(32), server_default="core")  # the security's bucket at submission


class OrderEventRow(Base):
    """Every state change of an order, with its time and reason."""

    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class TradeRow(Base):
    __tablename__ = "trades"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broker_trade_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), nullable=True)
    client_order_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    commission: Mapped[float] = mapped_column(Float)
    executed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    realized_pnl: Mapped[float | None] = mapped_column(Float, nullable=True)  # SELLs only
    bucket: Mapped[str] = mapped_column(String(32), server_default="core")  # its order's; core without one


class SettingsRow(Base):
    __tablename__ = "risk_settings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # single row, id 1
    values: Mapped[str] = mapped_column(String(2000))  # JSON of RiskSettings fields
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AdjustmentRow(Base):
    """Broker positions the owner accepted as they are (e.g. bought outside this system)."""

    __tablename__ = "position_adjustments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class CashMovementRow(Base):
    """Money in or out of the broker account other than trades, imported once per broker id."""

    __tablename__ = "cash_movements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broker_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    amount: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    description: Mapped[str] = mapped_column(String(300))
    symbol: Mapped[str] = mapped_column(String(32), server_default="")      # of a dividend, coupon, tax
    reference: Mapped[str] = mapped_column(String(128), server_default="")  # a deposit's or conversion's


def record_cash_movements(session: Session, movements: list) -> int:
    """Add the movements not known yet (by broker id, one query for all); returns how many."""
    ids = [m.broker_id for m in movements]
    known = set(session.scalars(select(CashMovementRow.broker_id).where(CashMovementRow.broker_id.in_(ids)))) \
        if ids else set()
    new = []
    for movement in movements:
        if movement.broker_id not in known:
            known.add(movement.broker_id)
            new.append(_movement_values(movement))
    if new:  # one plain statement for all, in their order (the ids follow it)
        session.execute(_INSERT_CASH_MOVEMENT, new)
    return len(new)


def _movement_values(movement) -> dict:
    """A movement's columns (record_cash_movement's)."""
    return {"broker_id": movement.broker_id, "kind": movement.kind, "amount": movement.amount,
            "currency": movement.currency, "at": movement.at, "description": movement.description[:300],
            "symbol": movement.symbol[:32], "reference": movement.reference[:128]}


_INSERT_CASH_MOVEMENT = insert(CashMovementRow.__table__)


def known_movement_ids(session: Session, broker_ids: list[str]) -> frozenset[str]:
    """Those of the broker ids that a recorded cash movement has."""
    return frozenset(session.scalars(select(CashMovementRow.broker_id).where(CashMovementRow.broker_id.in_(
        broker_ids)))) if broker_ids else frozenset()


def known_trade_ids(session: Session, broker_trade_ids: list[str]) -> frozenset[str]:
    """Those of the broker trade ids that a recorded trade has."""
    return frozenset(session.scalars(select(TradeRow.broker_trade_id).where(TradeRow.broker_trade_id.in_(
        broker_trade_ids)))) if broker_trade_ids else frozenset()


def ledger_end(session: Session) -> tuple[int, int]:
    """(the id of the last trade, of the last cash movement), 0 without any."""
    return (session.scalar(select(func.max(TradeRow.id))) or 0,
            session.scalar(select(func.max(CashMovementRow.id))) or 0)


def latest_cash_movement_at(session: Session) -> datetime | None:
    return session.scalar(select(func.max(CashMovementRow.at)))


def latest_fill_at(session: Session) -> datetime | None:
    return session.scalar(select(func.max(TradeRow.executed_at)))


def record_cash_movement(session: Session, movement) -> bool:
    """Add a movement once (keyed by its broker id); False when it is known."""
    if session.scalars(select(CashMovementRow.id).where(CashMovementRow.broker_id == movement.broker_id)).first():
        return False
    session.add(CashMovementRow(**_movement_values(movement)))
    return True


# How many ledger entries of each kind one SyncBroker returns at most.
LEDGER_PAGE = 1000


def ledger_after(session: Session, trade_id: int,
                 movement_id: int) -> tuple[list[TradeRow], list[CashMovementRow], tuple[int, int], bool]:
    """The trades and cash movements after a ledger position, oldest first (at most `limit` of
    each), the position after them, and whether more wait. A position beyond the ledger's end
    (a newer database than the caller's cursor) starts again from the beginning: the caller
    books every entry once by its broker id, so nothing is counted twice and nothing is lost."""
    limit = LEDGER_PAGE
    last_trade = session.scalar(_LAST_TRADE) or 0
    last_movement = session.scalar(_LAST_MOVEMENT) or 0
    if trade_id > last_trade or movement_id > last_movement:
        trade_id = movement_id = 0
    trades = list(session.scalars(_TRADES_AFTER, {"after": trade_id}))
    movements = list(session.scalars(_MOVEMENTS_AFTER, {"after": movement_id}))
    more = len(trades) > limit or len(movements) > limit
    trades, movements = trades[:limit], movements[:limit]
    cursor = (trades[-1].id if trades else trade_id, movements[-1].id if movements else movement_id)
    return trades, movements, cursor, more


# Built once, with bound parameters: a sync after a trade runs them (building one costs more than
# running it on a small table).
_LAST_TRADE = select(func.max(TradeRow.id))
_LAST_MOVEMENT = select(func.max(CashMovementRow.id))
_TRADES_AFTER = select(TradeRow).where(TradeRow.id > bindparam("after")).order_by(TradeRow.id).limit(LEDGER_PAGE + 1)
_MOVEMENTS_AFTER = select(CashMovementRow).where(CashMovementRow.id > bindparam("after")).order_by(
    CashMovementRow.id).limit(LEDGER_PAGE + 1)


# The paper broker keeps its simulated account in the same database: one schema, one history.
SCHEMA = Schema("trading", (Base.metadata, PaperBase.metadata), Path(__file__).with_name("migrations") / "versions",
                legacy_version=4, legacy_steps=LEGACY_STEPS)


def open_database(url: str) -> Database:
    return Database(url, SCHEMA)


def find_order(session: Session, client_order_id: str) -> OrderRow | None:
    """By client order id, or by the numeric reference a broker reports it under."""
    return session.scalars(select(OrderRow).where(OrderRow.client_order_id == client_order_id)).first() or \
        session.scalars(select(OrderRow).where(OrderRow.broker_reference == client_order_id,
                                               OrderRow.broker_reference != "")).first()


def add_order(session: Session, intent: OrderIntent, currency: str, now: datetime, bucket: str = "core") -> OrderRow:
    row = OrderRow(client_order_id=intent.client_order_id, symbol=intent.symbol, side=intent.side,
                   quantity=intent.quantity, currency=currency, state=life_cycle.NEW, reason=intent.reason,
                   broker_reference=broker_reference(intent.client_order_id), created_at=now, updated_at=now,
                   bucket=bucket or "core")
    session.add(row)
    session.flush()
    session.add(OrderEventRow(order_id=row.id, state=life_cycle.NEW, reason=intent.reason, at=now))
    return row


def set_state(session: Session, order_id: int, state: str, reason: str, now: datetime) -> OrderRow:
    """Move an order to `state`, recording the event; IllegalTransition (nothing changed) for a
    move the life cycle does not allow (orders.TRANSITIONS)."""
    row = session.get(OrderRow, order_id)
    row.state = life_cycle.transition(row.state, state)
    if reason:
        row.reason = reason[:300]
    row.updated_at = now
    session.add(OrderEventRow(order_id=order_id, state=state, reason=reason[:300], at=now))
    return row


def record_execution(session: Session, execution: Execution, now: datetime) -> bool:
    """Add the trade once (keyed by broker trade id) and move its order by all of its fills:
    PARTIALLY_FILLED while some of it is still to fill, FILLED when all is. False if known."""
    known = session.scalars(
        select(TradeRow.id).where(TradeRow.broker_trade_id == execution.broker_trade_id)
    ).first()
    if known is not None:
        return False
    order = find_order(session, execution.client_order_id)
    realized = None
    if execution.side == "SELL":
        cost = average_cost(session, execution.symbol)
        realized = None if cost is None else (execution.price - cost) * execution.quantity - execution.commission
    session.add(TradeRow(
        broker_trade_id=execution.broker_trade_id, order_id=order.id if order else None,
        client_order_id=order.client_order_id if order else execution.client_order_id, symbol=execution.symbol,
        side=execution.side, quantity=execution.quantity, price=execution.price, currency=execution.currency,
        commission=execution.commission, executed_at=execution.executed_at, realized_pnl=realized,
        bucket=order.bucket if order is not None and order.bucket else "core",
    ))
    session.flush()
    if order is not None:
        _apply_fills(session, order, now)
    return True


def _apply_fills(session: Session, order: OrderRow, now: datetime) -> None:
    """The order's fill summary from all of its trades (so a fill counts once however often it
    is imported), and the state they put it in."""
    fills = list(session.execute(select(TradeRow.quantity, TradeRow.price, TradeRow.commission,
                                        TradeRow.realized_pnl).where(TradeRow.order_id == order.id)))
    filled = sum(q for q, *_ in fills)
    order.filled_quantity = filled
    order.fill_price = sum(q * p for q, p, *_ in fills) / filled if filled else 0.0
    order.commission = sum(c for _, _, c, _ in fills)
    order.realized_pnl = sum(r or 0.0 for *_, r in fills)
    if order.state in life_cycle.FINAL_STATES:
        event(log, "a fill arrived for a final order: the trade is recorded, the state kept", logging.ERROR,
              order=order.client_order_id, state=order.state)
        return
    if order.state == life_cycle.NEW:  # a fill proves the broker had it: it was sent
        set_state(session, order.id, life_cycle.SUBMITTED, "found at the broker", now)
    state = life_cycle.fill_state(order.quantity, filled)
    set_state(session, order.id, state, "" if state == life_cycle.FILLED else f"{filled} of {order.quantity} filled",
              now)


def orders(session: Session, limit: int, before_id: int = 0) -> list[OrderRow]:
    query = select(OrderRow).order_by(OrderRow.id.desc()).limit(limit)
    return list(session.scalars(query.where(OrderRow.id < before_id) if before_id else query))


def trades(session: Session, limit: int | None, before_id: int = 0, since: datetime | None = None) -> list[Row]:
    """The newest `limit` trades (None: all) before `before_id`, executed at or after `since`,
    newest first: rows of TradeRow's columns, read without building ORM objects (ListTrades)."""
    query = select(*TradeRow.__table__.columns).order_by(TradeRow.id.desc()).limit(limit)
    if before_id:
        query = query.where(TradeRow.id < before_id)
    if since is not None:
        query = query.where(TradeRow.executed_at >= since)
    return list(session.execute(query))


def average_cost(session: Session, symbol: str) -> float | None:
    """Average cost per share of the current holding from the ledger (average-cost method:
    BUYs raise it, SELLs leave it). None when nothing is held."""
    quantity, cost = 0, 0.0
    for side, qty, price in session.execute(select(TradeRow.side, TradeRow.quantity, TradeRow.price).where(
            TradeRow.symbol == symbol).order_by(TradeRow.executed_at, TradeRow.id)):
        if side == "BUY":
            cost += qty * price
            quantity += qty
        elif quantity:
            cost -= cost / quantity * min(qty, quantity)
            quantity = max(0, quantity - qty)
    return cost / quantity if quantity > 0 else None


def last_trade_at(session: Session, symbol: str, side: str, now: datetime) -> datetime | None:
    """The latest fill of a symbol and side at or before `now` (a replay never sees its future)."""
    return session.scalar(_LAST_TRADE_AT, {"symbol": symbol, "side": side, "now": now})


def trade_times_between(session: Session, since: datetime, now: datetime) -> list[datetime]:
    return list(session.scalars(_TRADE_TIMES, {"since": since, "now": now}))


def open_orders(session: Session) -> list[OrderRow]:
    return list(session.scalars(_OPEN_ORDERS))


# An order's checks run these: built once, with bound parameters.
_LAST_TRADE_AT = select(func.max(TradeRow.executed_at)).where(
    TradeRow.symbol == bindparam("symbol"), TradeRow.side == bindparam("side"),
    TradeRow.executed_at <= bindparam("now"))
_TRADE_TIMES = select(TradeRow.executed_at).where(TradeRow.executed_at >= bindparam("since"),
                                                  TradeRow.executed_at <= bindparam("now"))
_OPEN_ORDERS = select(OrderRow).where(OrderRow.state.in_(OPEN_STATES))


def ledger_positions(session: Session) -> dict[str, int]:
    """symbol -> quantity from every recorded fill plus the accepted adjustments."""
    positions: dict[str, int] = {}
    signed = case((TradeRow.side == "BUY", TradeRow.quantity), else_=-TradeRow.quantity)
    for symbol, quantity in session.execute(select(TradeRow.symbol, func.sum(signed)).group_by(TradeRow.symbol)):
        positions[symbol] = int(quantity)
    for symbol, quantity in session.execute(select(AdjustmentRow.symbol, AdjustmentRow.quantity)):
        positions[symbol] = positions.get(symbol, 0) + quantity
    return {s: q for s, q in positions.items() if q != 0}


def add_adjustment(session: Session, symbol: str, quantity: int, reason: str, now: datetime) -> None:
    session.add(AdjustmentRow(symbol=symbol, quantity=quantity, reason=reason, at=now))


def order_events(session: Session, order_id: int) -> list[OrderEventRow]:
    return list(session.scalars(select(OrderEventRow).where(OrderEventRow.order_id == order_id)
                                .order_by(OrderEventRow.id)))


def find_order_by_id(session: Session, order_id: int) -> OrderRow | None:
    return session.get(OrderRow, order_id)


def load_settings(session: Session) -> dict:
    row = session.get(SettingsRow, 1)
    return {} if row is None else json.loads(row.values)


def save_settings(session: Session, values: dict, now: datetime) -> None:
    session.merge(SettingsRow(id=1, values=json.dumps(values, sort_keys=True), updated_at=now))


# Retention (services/common/maintenance.py): none. Orders with their events, trades and cash
# movements are the ledger, kept for ever (the paper broker's account with them).
RETENTION_RULES = ()
