"""The paper broker: a simulated brokerage account kept in the trading database.

It behaves like a real broker toward the trading service: it holds multi-currency cash and
positions, refuses orders the account cannot carry, fills market orders at the reference price
(the as-of close in replay) and charges the broker's fee, and it answers "what happened to
order X?" by client order id, so a lost reply is resolved by lookup, never by resending.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from sqlalchemy import BigInteger, Float, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import Database, UtcDateTime
from services.trading.adapters.broker import (
    Account,
    BrokerPosition,
    BrokerRejected,
    CashMovement,
    DividendPerShare,
    Execution,
    MarketOrder,
)


class PaperBase(DeclarativeBase):
    """The simulated account's tables: part of the trading schema (services/trading/migrations)."""


class PaperCash(PaperBase):
    __tablename__ = "paper_cash"
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    amount: Mapped[float] = mapped_column(Float)


class PaperPosition(PaperBase):
    __tablename__ = "paper_positions"
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    average_cost: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))


class PaperExecution(PaperBase):
    __tablename__ = "paper_executions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    commission: Mapped[float] = mapped_column(Float)
    executed_at: Mapped[datetime] = mapped_column(UtcDateTime())

    def to_execution(self) -> Execution:
        return Execution(f"PAPER-{self.id}", self.client_order_id, self.symbol, self.side, self.quantity,
                         self.price, self.currency, self.commission, self.executed_at)


class PaperTransfer(PaperBase):
    """Money in (deposits, dividends) and currency conversions, each once per reference."""

    __tablename__ = "paper_transfers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # deposit | conversion | dividend
    symbol: Mapped[str] = mapped_column(String(32), server_default="")  # a dividend's security
    from_currency: Mapped[str] = mapped_column(String(3))
    from_amount: Mapped[float] = mapped_column(Float)
    to_currency: Mapped[str] = mapped_column(String(3))
    to_amount: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


ORDER_FAULTS = ("reject", "disconnect", "timeout_after_accept", "partial_fill", "crash_after_accept",
                "crash_before_send")
CONVERSION_FAULTS = ("reject_conversion", "disconnect_conversion")
FAULTS = ORDER_FAULTS + CONVERSION_FAULTS


class PaperBroker:
    """Faults (tests only) make the next orders or conversions misbehave, each fault once, in
    order. An order: reject (refused), disconnect (nothing reaches the broker),
    timeout_after_accept (executed, but the reply is lost), partial_fill (half is filled, the
    rest cancelled by the broker), crash_after_accept (executed, then the whole process dies, as
    a power cut would), crash_before_send (the process dies as the order is handed over, before
    the broker has it). A currency conversion: reject_conversion (refused), disconnect_conversion
    (nothing reaches the broker)."""

    name = "paper"
    converts_currency = True  # the engine may convert a foreign BUY's missing amount first
    takes_deposits = True
    pays_dividends = True  # from the market data's dividend history (none for adjusted-only histories)

    def __init__(self, db: Database, fee: Callable[[float, str], float], slippage: float = 0.0,
                 faults: list[str] | None = None):
        """`fee(value, currency)` is the commission charged on an order, in its currency;
        `slippage` moves fills against the order (0.001 = 0.1%), never past its limit."""
        self._db = db
        self._fee = fee
        self._slippage = slippage
        self.faults = list(faults or [])
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown paper broker faults: {', '.join(unknown)}")
        self._lock = threading.Lock()

    def _next_fault(self, kinds: tuple[str, ...]) -> str | None:
        """The first queued fault of these kinds, taken off the queue."""
        for index, fault in enumerate(self.faults):
            if fault in kinds:
                return self.faults.pop(index)
        return None

    def account(self) -> Account:
        with self._db.transaction() as session:
            positions = [BrokerPosition(p.symbol, p.quantity, p.average_cost, p.currency)
                         for p in session.scalars(select(PaperPosition).order_by(PaperPosition.symbol))
                         if p.quantity > 0]
            cash = {c.currency: c.amount for c in session.scalars(select(PaperCash))}
        return Account(positions, cash)

    def deposit(self, amount: float, currency: str, reference: str, now: datetime) -> bool:
        """Credit money arriving in the account; False (and no change) for a seen reference."""
        with self._lock, self._db.transaction() as session:
            if session.scalars(select(PaperTransfer).where(PaperTransfer.reference == reference)).first():
                return False
            session.add(PaperTransfer(reference=reference, kind="deposit", from_currency=currency,
                                      from_amount=amount, to_currency=currency, to_amount=amount, at=now))
            _credit(session, currency, amount)
        return True

    def pay_dividends(self, per_share: list[DividendPerShare], now: datetime) -> int:
        """Pay each dividend (ex-date at or before `now`) once, for the shares held before its
        ex-date, in the security's currency, rounded to cents. Returns how many were paid."""
        paid = 0
        with self._lock, self._db.transaction() as session:
            for dividend in sorted(per_share, key=lambda d: (d.ex_date, d.symbol)):
                reference = f"dividend:{dividend.symbol}:{dividend.ex_date.isoformat()}"
                if dividend.ex_date > now.date() or dividend.amount <= 0 or session.scalars(
                        select(PaperTransfer.id).where(PaperTransfer.reference == reference)).first():
                    continue
                held, currency = 0, ""
                for side, quantity, traded_in, at in session.execute(
                        select(PaperExecution.side, PaperExecution.quantity, PaperExecution.currency,
                               PaperExecution.executed_at).where(PaperExecution.symbol == dividend.symbol)):
                    if at.date() < dividend.ex_date:
                        held += quantity if side == "BUY" else -quantity
                        currency = traded_in
                amount = round(held * dividend.amount, 2)
                if held <= 0 or amount <= 0:
                    continue
                session.add(PaperTransfer(reference=reference, kind="dividend", symbol=dividend.symbol,
                                          from_currency=currency, from_amount=dividend.amount, to_currency=currency,
                                          to_amount=amount, at=now))
                _credit(session, currency, amount)
                paid += 1
        return paid

    def convert(self, from_currency: str, from_amount: float, to_currency: str, to_amount: float,
                reference: str, now: datetime) -> None:
        """Exchange currency at the given amounts (the caller prices it with its FX rate)."""
        fault = self._next_fault(CONVERSION_FAULTS)
        if fault == "disconnect_conversion":
            raise ConnectionError("paper broker: connection lost before the conversion was sent")
        if fault == "reject_conversion":
            raise BrokerRejected("paper broker: conversion rejected (injected)")
        with self._lock, self._db.transaction() as session:
            if session.scalars(select(PaperTransfer).where(PaperTransfer.reference == reference)).first():
                return
            if _balance(session, from_currency) < from_amount:
                raise BrokerRejected(f"insufficient {from_currency} for conversion")
            session.add(PaperTransfer(reference=reference, kind="conversion", from_currency=from_currency,
                                      from_amount=from_amount, to_currency=to_currency, to_amount=to_amount,
                                      at=now))
            _credit(session, from_currency, -from_amount)
            _credit(session, to_currency, to_amount)

    def place_market_order(self, order: MarketOrder, now: datetime) -> Execution:
        fault = self._next_fault(ORDER_FAULTS)
        if fault == "crash_before_send":
            os._exit(17)  # the process dies after storing the order as sent, before the broker has it
        if fault == "disconnect":
            raise ConnectionError("paper broker: connection lost before the order was sent")
        if fault == "reject":
            raise BrokerRejected("paper broker: order rejected (injected)")
        execution = self._execute(order, now, partial=fault == "partial_fill")
        if fault == "timeout_after_accept":
            raise TimeoutError("paper broker: no reply (the order was executed)")
        if fault == "crash_after_accept":
            os._exit(17)  # the process dies between the broker's execution and our record of it
        return execution

    def open_order_ids(self) -> set[str]:
        return set()  # paper orders fill or fail at once: none stays open

    def cancel(self, client_order_id: str) -> bool:
        return False  # nothing is ever open to cancel

    def _execute(self, order: MarketOrder, now: datetime, partial: bool) -> Execution:
        with self._lock, self._db.transaction() as session:
            seen = session.scalars(
                select(PaperExecution).where(PaperExecution.client_order_id == order.client_order_id)
            ).first()
            if seen is not None:
                return seen.to_execution()  # a broker never executes one user_order_id twice
            direction = 1 if order.side == "BUY" else -1
            price = order.reference_price * (1 + direction * self._slippage)
            price = min(price, order.limit_price) if order.side == "BUY" else max(price, order.limit_price)
            quantity = max(1, order.quantity // 2) if partial else order.quantity
            order = replace(order, quantity=quantity)
            value = order.quantity * price
            fee = self._fee(value, order.currency)
            position = session.get(PaperPosition, order.symbol)
            if order.side == "BUY":
                if _balance(session, order.currency) < value + fee:
                    raise BrokerRejected(f"insufficient {order.currency} funds")
                if position is None:
                    position = PaperPosition(symbol=order.symbol, quantity=0, average_cost=0.0,
                                             currency=order.currency)
                    session.add(position)
                held = position.quantity
                position.average_cost = (held * position.average_cost + value) / (held + order.quantity)
                position.quantity = held + order.quantity
                _credit(session, order.currency, -(value + fee))
            else:
                if position is None or position.quantity < order.quantity:
                    raise BrokerRejected(f"SELL {order.quantity} exceeds the position in {order.symbol}")
                position.quantity -= order.quantity
                _credit(session, order.currency, value - fee)
            row = PaperExecution(client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                                 quantity=order.quantity, price=price, currency=order.currency,
                                 commission=fee, executed_at=now)
            session.add(row)
            session.flush()
            return row.to_execution()

    def find_execution(self, client_order_id: str) -> Execution | None:
        with self._db.transaction() as session:
            row = session.scalars(
                select(PaperExecution).where(PaperExecution.client_order_id == client_order_id)
            ).first()
            return None if row is None else row.to_execution()

    def cash_movements(self) -> list[CashMovement]:
        movements = []
        with self._db.transaction() as session:
            for t in session.scalars(select(PaperTransfer).order_by(PaperTransfer.id)):
                at = t.at
                if t.kind == "deposit":
                    movements.append(CashMovement(f"PAPER-T{t.id}", "deposit", t.to_amount, t.to_currency, at,
                                                  t.reference, reference=t.reference))
                elif t.kind == "dividend":  # from_amount holds the amount per share
                    movements.append(CashMovement(f"PAPER-T{t.id}", "dividend", t.to_amount, t.to_currency, at,
                                                  f"dividend {t.symbol}: {t.from_amount:g} per share", t.symbol,
                                                  t.reference))
                else:
                    movements.append(CashMovement(f"PAPER-T{t.id}-out", "conversion_out", -t.from_amount,
                                                  t.from_currency, at, t.reference, reference=t.reference))
                    movements.append(CashMovement(f"PAPER-T{t.id}-in", "conversion_in", t.to_amount, t.to_currency,
                                                  at, t.reference, reference=t.reference))
        return movements

    def executions(self) -> list[Execution]:
        with self._db.transaction() as session:
            return [r.to_execution() for r in session.scalars(select(PaperExecution).order_by(PaperExecution.id))]


def _balance(session, currency: str) -> float:
    row = session.get(PaperCash, currency)
    return row.amount if row else 0.0


def _credit(session, currency: str, amount: float) -> None:
    row = session.get(PaperCash, currency)
    if row is None:
        session.add(PaperCash(currency=currency, amount=amount))
    else:
        row.amount += amount
