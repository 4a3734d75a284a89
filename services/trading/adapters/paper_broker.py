"""The paper broker: a simulated brokerage account kept in the trading database.

It behaves like a real broker toward the trading service: it holds multi-currency cash and
positions, refuses orders the account cannot carry, charges the broker's fee, and it answers
"what happened to order X?" by client order id, so a lost reply is resolved by lookup, never by
resending.

Fills (`fills`):
- "close" (the default in every mode): market-on-close. Every order trading sends carries a
  limit (the caller's, or the price band's edge for a market order), as orders to Tradernet do.
  The broker accepts it into the session it was placed in (the exchange's session at that
  moment, or the next one when the market is closed) and executes it at that session's closing
  price once the close is known: at the first `settle(now)` (trading's sync) at or after the
  session's close at which the data service shows the session's daily bar. It fills at the
  close (moved by `slippage` against the order, never past the limit) when the close is within
  the limit, and otherwise expires unfilled; so does an order the account cannot carry at the
  close, one whose session bar is missing or flagged (a later bar is visible but not that one),
  and one whose bar has not arrived within EXPIRY after the close. The fill is dated at the
  session's close. Until then the order is open: trading holds its cash and counts it.
- "quote": the order fills at once at the reference price it was checked against (the latest
  close): no waiting, for tests of the order path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import BigInteger, Boolean, Date, Float, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.revisions import KeptReads, KeptSince
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


class PaperOrder(PaperBase):
    """An order the broker holds until its session's close (fills "close")."""

    __tablename__ = "paper_orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    limit_price: Mapped[float] = mapped_column(Float)
    session_date: Mapped[date] = mapped_column(Date)
    session_close: Mapped[datetime] = mapped_column(UtcDateTime())
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(10), index=True)  # open | filled | expired | cancelled
    reason: Mapped[str] = mapped_column(String(300), default="")
    partial: Mapped[bool] = mapped_column(Boolean, default=False)  # fault partial_fill: half fills at the close


OPEN, FILLED, EXPIRED, CANCELLED = "open", "filled", "expired", "cancelled"
FILL_MODES = ("close", "quote")
EXPIRY = timedelta(days=7)  # an order whose session bar has not arrived this long after the close expires
# (symbols, first date) -> symbol -> [(date, close)] of its valid daily bars from that date on, as
# visible now; None when the market data cannot be read.
ClosesReader = Callable[[Sequence[str], date], "dict[str, list[tuple[date, float]]] | None"]


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
                 faults: list[str] | None = None, fills: str = "quote", closes: ClosesReader | None = None):
        """`fee(value, currency)` is the commission charged on an order, in its currency;
        `slippage` moves fills against the order (0.001 = 0.1%), never past its limit; `fills`
        "close" (market-on-close, reading each session's close through `closes`) or "quote"."""
        self._db = db
        self._fee = fee
        self._slippage = slippage
        self.faults = list(faults or [])
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown paper broker faults: {', '.join(unknown)}")
        if fills not in FILL_MODES or (fills == "close" and closes is None):
            raise ValueError(f"fills must be one of {FILL_MODES} ('close' needs a closes reader), got {fills!r}")
        self.fills = fills
        self._closes = closes
        self._lock = threading.Lock()
        # The account's reads (every sync asks them), kept until a write to their tables commits.
        self._kept = KeptReads(db.revisions)
        self._executions = KeptSince(db.revisions, ("paper_executions",))
        self._movements = KeptSince(db.revisions, ("paper_transfers",))

    def _read(self, tables: tuple[str, ...], key: str, read: Callable):
        return self._kept.current(self._db.transaction, tables, key, read)

    def _open_orders(self) -> tuple[tuple[int, str, str, date, datetime], ...]:
        """(id, client order id, symbol, session date, session close) of each open order, by id."""
        return self._read(("paper_orders",), "open", lambda session: tuple(tuple(row) for row in session.execute(
            select(PaperOrder.id, PaperOrder.client_order_id, PaperOrder.symbol, PaperOrder.session_date,
                   PaperOrder.session_close).where(PaperOrder.state == OPEN).order_by(PaperOrder.id))))

    def _next_fault(self, kinds: tuple[str, ...]) -> str | None:
        """The first queued fault of these kinds, taken off the queue."""
        for index, fault in enumerate(self.faults):
            if fault in kinds:
                return self.faults.pop(index)
        return None

    def account(self) -> Account:
        positions, cash = self._read(("paper_positions", "paper_cash"), "account", _account)
        return Account(list(positions), dict(cash))

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
        if not per_share:
            return 0
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

    def place_market_order(self, order: MarketOrder, now: datetime) -> Execution | None:
        """"quote": the execution. "close": None, the order held for its session's close
        (BrokerRejected when its exchange's session is unknown: no close to fill it at)."""
        fault = self._next_fault(ORDER_FAULTS)
        if fault == "crash_before_send":
            os._exit(17)  # the process dies after storing the order as sent, before the broker has it
        if fault == "disconnect":
            raise ConnectionError("paper broker: connection lost before the order was sent")
        if fault == "reject":
            raise BrokerRejected("paper broker: order rejected (injected)")
        if self.fills == "close":
            self._accept(order, now, partial=fault == "partial_fill")
            execution = None
        else:
            execution = self._execute(order, order.reference_price, now, partial=fault == "partial_fill")
        if fault == "timeout_after_accept":
            raise TimeoutError("paper broker: no reply (the order was accepted)")
        if fault == "crash_after_accept":
            os._exit(17)  # the process dies between the broker's acceptance and our record of it
        return execution

    def _accept(self, order: MarketOrder, now: datetime, partial: bool) -> None:
        if order.session_date is None or order.session_close is None:
            raise BrokerRejected(f"market-on-close: the session of {order.symbol}'s exchange is unknown")
        with self._lock, self._db.transaction() as session:
            if session.scalars(select(PaperOrder.id).where(
                    PaperOrder.client_order_id == order.client_order_id)).first() is not None:
                return  # a broker never takes one user_order_id twice
            session.add(PaperOrder(client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                                   quantity=order.quantity, currency=order.currency, limit_price=order.limit_price,
                                   session_date=order.session_date, session_close=order.session_close,
                                   placed_at=now, state=OPEN, reason="", partial=partial))

    def open_order_ids(self) -> set[str]:
        return {client_order_id for _, client_order_id, *_ in self._open_orders()}

    def cancel(self, client_order_id: str) -> bool:
        with self._lock, self._db.transaction() as session:
            row = session.scalars(select(PaperOrder).where(PaperOrder.client_order_id == client_order_id,
                                                           PaperOrder.state == OPEN)).first()
            if row is None:
                return False
            row.state, row.reason = CANCELLED, "cancelled by request"
            return True

    def closed_reason(self, client_order_id: str) -> str:
        with self._db.transaction() as session:
            row = session.scalars(select(PaperOrder).where(PaperOrder.client_order_id == client_order_id)).first()
            return f"{row.state}: {row.reason}" if row is not None and row.state in (EXPIRED, CANCELLED) else ""

    def settle(self, now: datetime) -> int:
        """Execute or expire the open orders whose session closed at or before `now` (see the
        module's docstring); an order whose close is not known yet stays open. Returns how many
        were executed. The closes are read in one call for all due orders."""
        due = [(order_id, symbol, day) for order_id, _, symbol, day, close in self._open_orders() if close <= now]
        if not due:
            return 0
        closes = self._closes(sorted({symbol for _, symbol, _ in due}), min(day for _, _, day in due))
        if closes is None:
            return 0  # the market data cannot be read now: the next sync tries again
        executed = 0
        for order_id, symbol, _ in due:
            executed += self._settle_one(order_id, dict(closes.get(symbol, [])), now)
        return executed

    def _settle_one(self, order_id: int, closes: dict[date, float], now: datetime) -> int:
        with self._lock, self._db.transaction() as session:
            row = session.get(PaperOrder, order_id)
            if row is None or row.state != OPEN:
                return 0
            close = closes.get(row.session_date)
            if close is None:
                if any(day > row.session_date for day in closes):
                    row.state, row.reason = EXPIRED, f"no valid close for the session of {row.session_date}"
                elif now - row.session_close > EXPIRY:
                    row.state = EXPIRED
                    row.reason = f"the close of {row.session_date} did not arrive in {EXPIRY.days} days"
                return 0
            beyond = close > row.limit_price if row.side == "BUY" else close < row.limit_price
            if beyond:
                row.state, row.reason = EXPIRED, f"the close {close:g} is beyond the limit {row.limit_price:g}"
                return 0
            order = MarketOrder(row.client_order_id, row.symbol, row.side, row.quantity, row.currency, close,
                                row.limit_price)
            try:
                self._fill(session, order, close, row.session_close, row.partial)
            except BrokerRejected as exc:
                row.state, row.reason = EXPIRED, f"at the close: {exc}"
                return 0
            row.state = FILLED
            return 1

    def _execute(self, order: MarketOrder, price: float, at: datetime, partial: bool) -> Execution:
        with self._lock, self._db.transaction() as session:
            return self._fill(session, order, price, at, partial)

    def _fill(self, session, order: MarketOrder, price: float, at: datetime, partial: bool) -> Execution:
        """Execute `order` at `price` (moved by the slippage, never past the limit) at `at`."""
        seen = session.scalars(
            select(PaperExecution).where(PaperExecution.client_order_id == order.client_order_id)
        ).first()
        if seen is not None:
            return seen.to_execution()  # a broker never executes one user_order_id twice
        direction = 1 if order.side == "BUY" else -1
        price = price * (1 + direction * self._slippage)
        price = min(price, order.limit_price) if order.side == "BUY" else max(price, order.limit_price)
        quantity = max(1, order.quantity // 2) if partial else order.quantity
        value = quantity * price
        fee = self._fee(value, order.currency)
        position = session.get(PaperPosition, order.symbol)
        if order.side == "BUY":
            if _balance(session, order.currency) < value + fee:
                raise BrokerRejected(f"insufficient {order.currency} funds")
            if position is None:
                position = PaperPosition(symbol=order.symbol, quantity=0, average_cost=0.0, currency=order.currency)
                session.add(position)
            held = position.quantity
            position.average_cost = (held * position.average_cost + value) / (held + quantity)
            position.quantity = held + quantity
            _credit(session, order.currency, -(value + fee))
        else:
            if position is None or position.quantity < quantity:
                raise BrokerRejected(f"SELL {quantity} exceeds the position in {order.symbol}")
            position.quantity -= quantity
            _credit(session, order.currency, value - fee)
        row = PaperExecution(client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                             quantity=quantity, price=price, currency=order.currency, commission=fee, executed_at=at)
        session.add(row)
        session.flush()
        return row.to_execution()

    def find_execution(self, client_order_id: str) -> Execution | None:
        with self._db.transaction() as session:
            row = session.scalars(
                select(PaperExecution).where(PaperExecution.client_order_id == client_order_id)
            ).first()
            return None if row is None else row.to_execution()

    def cash_movements(self, since: datetime | None = None) -> list[CashMovement]:
        """Every transfer's movements at or after `since` (all for None), by transfer id."""
        return self._movements.values(self._db.transaction, since, _cash_movements)

    def executions(self, since: datetime | None = None) -> list[Execution]:
        """The executions at or after `since` (all for None), by id."""
        return self._executions.values(self._db.transaction, since, _executions)


def _account(session) -> tuple[tuple[BrokerPosition, ...], tuple[tuple[str, float], ...]]:
    """(the positions held, by symbol; the cash per currency)."""
    positions = tuple(BrokerPosition(*row) for row in session.execute(
        select(PaperPosition.symbol, PaperPosition.quantity, PaperPosition.average_cost, PaperPosition.currency)
        .where(PaperPosition.quantity > 0).order_by(PaperPosition.symbol)))
    return positions, tuple((currency, amount) for currency, amount in session.execute(
        select(PaperCash.currency, PaperCash.amount)))


def _executions(session, since: datetime | None) -> list[tuple[datetime, Execution]]:
    """(executed at, execution) of the executions at or after `since` (None: all), by id."""
    query = select(PaperExecution.id, PaperExecution.client_order_id, PaperExecution.symbol, PaperExecution.side,
                   PaperExecution.quantity, PaperExecution.price, PaperExecution.currency, PaperExecution.commission,
                   PaperExecution.executed_at).order_by(PaperExecution.id)
    if since is not None:
        query = query.where(PaperExecution.executed_at >= since)
    return [(row[-1], Execution(f"PAPER-{row[0]}", *row[1:])) for row in session.execute(query)]


def _cash_movements(session, since: datetime | None) -> list[tuple[datetime, CashMovement]]:
    """(at, movement) of the transfers at or after `since` (None: all), by transfer id: a
    conversion is one movement out and one in."""
    query = select(PaperTransfer).order_by(PaperTransfer.id)
    if since is not None:
        query = query.where(PaperTransfer.at >= since)
    movements = []
    for t in session.scalars(query):
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
    return [(movement.at, movement) for movement in movements]


def _balance(session, currency: str) -> float:
    row = session.get(PaperCash, currency)
    return row.amount if row else 0.0


def _credit(session, currency: str, amount: float) -> None:
    row = session.get(PaperCash, currency)
    if row is None:
        session.add(PaperCash(currency=currency, amount=amount))
    else:
        row.amount += amount
