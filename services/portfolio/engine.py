"""The portfolio's use cases: the book of money, positions with history, valuation, snapshots,
the daily P&L, performance and dividends. Buckets and allocation targets are in bucket_book.py
and allocation_book.py; each gathers what it needs (the store, the peers), calls the pure
modules and writes the result in one transaction. `now` is always passed in.
"""

from __future__ import annotations

import json
import logging
import threading
from bisect import bisect_right
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.logs import event
from services.common.money import to_base
from services.portfolio import buckets as bucket_rules
from services.portfolio import cash_flows, dividends, performance, positions, snapshots, store
from services.portfolio.adapters.peers import Peers, Rates, Security, in_background
from services.portfolio.bucket_book import BucketBook, serialized
from services.portfolio.hashing import UniverseEntry, portfolio_hash
from services.portfolio.kept import KeptState, written_tables
from services.portfolio.positions import FillRecord, PositionHistory
from services.portfolio.valuation import Holding, Quote, ValuedPosition, value_portfolio

log = logging.getLogger("trader.portfolio.engine")


@dataclass(frozen=True)
class BrokerState:
    """What trading's SyncBroker reported, as ApplyBrokerState hands it on."""

    positions: list[Holding]
    cash: dict[str, float]
    synced_at: datetime
    fills: list[FillRecord]
    movements: list[cash_flows.Movement]
    cursor: tuple[int, int] | None  # the ledger position after these entries; None = unchanged
    after: tuple[int, int] | None = None  # the position the entries follow, checked; None = unchecked


@dataclass(frozen=True)
class PositionView:
    valued: ValuedPosition
    bucket: str
    average_cost: float
    book_quantity: int
    history: PositionHistory | None
    unrealized_pnl: float
    unrealized_pnl_base: float

    @property
    def cost_basis(self) -> float:
        return self.valued.holding.quantity * self.average_cost


@dataclass(frozen=True)
class PortfolioView:
    base_currency: str
    positions: list[PositionView]
    cash: list[tuple[str, float, float]]
    positions_value_base: float
    cash_base: float
    portfolio_hash: str
    synced_at: datetime | None
    position_differences: list[tuple[str, int, int]]
    cash_differences: list[tuple[str, float, float]]
    rates: Rates

    @property
    def total_value_base(self) -> float:
        return self.positions_value_base + self.cash_base

    @property
    def invested_base(self) -> float:
        return sum(to_base(p.cost_basis, p.valued.holding.currency, self.base_currency, self.rates.rates)
                   for p in self.positions)

    @property
    def unrealized_pnl_base(self) -> float:
        return sum(p.unrealized_pnl_base for p in self.positions)


@dataclass(frozen=True)
class ApplyResult:
    changed: bool
    portfolio_hash: str
    fills_applied: int
    flows_applied: int
    position_differences: list[tuple[str, int, int]]
    cash_differences: list[tuple[str, float, float]]
    cursor: tuple[int, int]


@dataclass(frozen=True)
class DailyPnl:
    armed: bool
    pnl: float | None = None
    baseline_date: date | None = None
    baseline_total: float = 0.0
    current_total: float = 0.0
    flows: float = 0.0


@dataclass(frozen=True)
class PerformanceReport:
    """GetPerformance's figures (performance.py); None where not computable, never 0."""

    start: str
    end: str
    bucket: str
    base_currency: str
    days: int
    time_weighted_return: float | None
    money_weighted_return: float | None
    cagr: float | None
    volatility: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    calmar: float | None
    turnover: float | None
    fees_paid_base: float
    dividends_received_base: float
    net_deposits_base: float
    start_value_base: float
    end_value_base: float
    attribution: performance.Attribution
    trades: performance.TradeMetrics
    notes: list[str]


@dataclass(frozen=True)
class CashFlowFilter:
    kinds: list[str]
    currency: str | None
    start: date | None
    end: date | None


@dataclass(frozen=True)
class _Book:
    """What a valuation reads from the store: the broker's positions and cash as last reported,
    the books' positions with history and cash per currency, the ledger cursor. Shared between
    calls: never changed."""

    holdings: list[Holding]
    cash: dict[str, float]
    synced_at: datetime | None
    cursor: tuple[int, int]  # the ledger cursor (the trading ledger's entries booked up to)
    histories: dict[str, PositionHistory]
    cash_flows: dict[str, float]  # the book's cash per currency (the cash flows summed)


_BOOK_TABLES = (store.PositionRow.__tablename__, store.CashRow.__tablename__, store.SyncStateRow.__tablename__,
                store.PositionHistoryRow.__tablename__, store.CashFlowRow.__tablename__)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_after(day: date) -> datetime | None:
    """The instant a day ends (exclusive); None (no bound) for the last representable day."""
    return None if day == date.max else day_start(day) + timedelta(days=1)


def base_amount(amount: float, currency: str, rates: Rates) -> float | None:
    rate = rates.rate(currency)
    return None if rate is None else amount / rate


class PortfolioEngine:
    def __init__(self, db, peers: Peers, base_currency: str, snapshot_retention_days: int, started_at: datetime):
        self._db = db
        self.peers = peers
        self._base = base_currency
        self._retention_days = snapshot_retention_days
        self._book_cash = store.BookCash()
        # the book as its tables hold it, read once or handed forward by the sync that wrote it
        self._kept_book: KeptState[_Book] = KeptState(db.revisions, _BOOK_TABLES)
        self._kept_open: KeptState[list[_OpenRow]] = KeptState(db.revisions, (store.DividendRow.__tablename__,))
        # the latest snapshot's positions: symbol -> value (base)
        self._kept_held: KeptState[dict[str, float]] = KeptState(db.revisions,
                                                                 (store.SnapshotPositionRow.__tablename__,))
        self._last_valuation: tuple[tuple, PortfolioView] | None = None  # ((book, quotes, rates, securities), view)
        self._last_hash: tuple[tuple, str] | None = None  # ((holdings, cash, universe), portfolio hash)
        self._kept_days: KeptState[snapshots.SnapshotDays] = KeptState(db.revisions, (store.SnapshotRow.__tablename__,))
        # the deposits less withdrawals up to an instant, when the latest of them occurred, that instant
        self._kept_net: KeptState[tuple[float, datetime | None, datetime]] = KeptState(
            db.revisions, (store.CashFlowRow.__tablename__,))
        # the fills' times after an instant (kept until the fills change), and the last traded
        # value with the fills it summed ((kept times, (first, end) of those summed), value)
        self._kept_fill_times: KeptState[tuple[datetime, tuple[datetime, ...]]] = KeptState(
            db.revisions, (store.FillRow.__tablename__,))
        self._last_traded: tuple[tuple, tuple[int, int], float] | None = None
        self.lock = threading.RLock()
        self.buckets = BucketBook(db, peers, base_currency, self.lock, broker=self._broker,
                                  kept_broker=self._kept_broker)
        self.buckets.ensure_core(started_at)

    # --- valuation ---

    def portfolio(self) -> PortfolioView:
        securities, rates = in_background(self.peers.securities), in_background(self.peers.rates)
        with self._db.transaction() as session:
            book, quotes = self._book(session)
        return self._value(book, quotes.result(), rates.result(), securities.result())

    def _book(self, session) -> tuple[_Book, Future[dict[str, Quote]]]:
        """What a valuation reads from the store, and the holdings' quotes (asked in the
        background). Kept until one of its tables is written (the sync that writes them hands
        its result forward): a cycle values the account for the snapshot, the planner and the
        loss breaker with nothing booked in between."""
        book = self._kept_book.read(session, self._read_book)
        return book, in_background(self.peers.quotes, [h.symbol for h in book.holdings])

    def _read_book(self, session) -> _Book:
        synced_at, cursor = store.sync_state(session)
        return _Book(store.holdings(session), store.cash(session), synced_at, cursor, self._histories(session),
                     self._book_cash.read(session))

    @staticmethod
    def _histories(session) -> dict[str, PositionHistory]:
        return {s: _history(r) for s, r in store.position_histories(session).items()}

    def _value(self, book: _Book, quotes: dict[str, Quote], rates: Rates,
               securities: list[Security] | None) -> PortfolioView:
        """The valuation of `book` at `quotes` and `rates`; without `securities` (the universe)
        no portfolio hash. The last one is kept with everything it was computed from (the book
        as one kept object: a new one once a table of it is written): a cycle values the same
        book at the same quotes and rates for the snapshot, the planner and the loss breaker.
        Without `securities` the last valuation with a hash serves too (only the hash needs them)."""
        inputs = (book, quotes, rates, securities)
        last = self._last_valuation
        if last is not None and last[0][0] is book and last[0][1:3] == inputs[1:3] and (
                securities is None or last[0][3] == securities):
            return last[1]
        view = self._valued(book, quotes, rates, securities)
        self._last_valuation = (inputs, view)
        return view

    def _valued(self, book: _Book, quotes: dict[str, Quote], rates: Rates,
                securities: list[Security] | None) -> PortfolioView:
        valuation = value_portfolio(book.holdings, book.cash, quotes, rates.base, rates.rates)
        known = {s.symbol: s for s in securities or ()}
        views = [self._position(p, book.histories.get(p.holding.symbol), known.get(p.holding.symbol), rates)
                 for p in valuation.positions]
        book_quantities = {s: h.quantity for s, h in book.histories.items() if h.quantity}
        return PortfolioView(
            base_currency=rates.base, positions=views, cash=valuation.cash,
            positions_value_base=valuation.positions_value_base, cash_base=valuation.cash_base,
            portfolio_hash=self._hash(book.holdings, book.cash, securities) if securities is not None else "",
            synced_at=book.synced_at,
            position_differences=positions.quantity_differences(book_quantities,
                                                                {h.symbol: h.quantity for h in book.holdings}),
            cash_differences=cash_flows.cash_differences(book.cash_flows, book.cash)
            if book.synced_at is not None else [],
            rates=rates,
        )

    def _hash(self, holdings: list[Holding], cash: dict[str, float], universe: list[Security]) -> str:
        """portfolio_hash, kept with its inputs (the universe by identity: Peers.securities
        answers an unchanged universe with the same list): a cycle's sync and snapshot hash the
        same quantities, cash and universe."""
        inputs = (tuple(holdings), dict(cash), universe)
        last = self._last_hash
        if last is not None and last[0][2] is universe and last[0][:2] == inputs[:2]:
            return last[1]
        value = portfolio_hash(holdings, cash, [_universe_entry(s) for s in universe])
        self._last_hash = (inputs, value)
        return value

    def _position(self, valued: ValuedPosition, history: PositionHistory | None, security: Security | None,
                  rates: Rates) -> PositionView:
        holding = valued.holding
        agrees = history is not None and history.quantity == holding.quantity and history.average_cost is not None
        average = history.average_cost if agrees else holding.average_cost
        unrealized = valued.market_value - holding.quantity * average
        bucket = (history.bucket if history is not None and history.quantity > 0 else
                  security.bucket if security is not None else bucket_rules.CORE)
        return PositionView(valued, bucket, average, history.quantity if history else 0, history, unrealized,
                            to_base(unrealized, holding.currency, rates.base, rates.rates))

    def _broker(self, session) -> tuple[datetime | None, dict[str, float]]:
        """When the broker was last synced and its cash, from the (kept) book."""
        book = self._kept_book.read(session, self._read_book)
        return book.synced_at, book.cash

    def _kept_broker(self) -> tuple[datetime | None, dict[str, float]] | None:
        """`_broker` without a transaction while the book is kept; else None."""
        book = self._kept_book.current()
        return None if book is None else (book.synced_at, book.cash)

    # --- the book: broker state and ledger entries ---

    def ledger_cursor(self) -> tuple[int, int]:
        kept = self._kept_book.current()
        if kept is not None:
            return kept.cursor
        with self._db.transaction() as session:
            return self._kept_book.read(session, self._read_book).cursor

    @serialized
    def apply_broker_state(self, state: BrokerState, now: datetime) -> ApplyResult:
        """Take the broker's positions and cash, book every fill and cash movement not booked yet
        (by broker id) and move the ledger cursor, in one transaction: a failure books nothing
        and the next sync brings the same entries again."""
        securities = in_background(self.peers.securities)
        # the rates value what is booked: read only when there are entries (maybe booked already)
        pending_rates = in_background(self.peers.rates) if state.fills or state.movements else None
        revisions = self._kept_book.revisions()
        with self._db.transaction() as session:
            book = self._kept_book.read(session, self._read_book)
            if state.after is not None and state.after != book.cursor:
                raise FailedPrecondition("ledger_cursor_moved", f"the books are at ledger cursor {book.cursor}, "
                                         f"not {state.after}: sync again from the books' cursor")
            before = (book.holdings, book.cash)
            changed = before != (state.positions, state.cash)
            cursor = state.cursor or book.cursor
            store.replace_broker_state(session, state.positions, state.cash, state.synced_at, cursor, changed=changed)
            rates = pending_rates.result() if pending_rates is not None else None
            fills_applied, fill_flows = self._book_fills(session, state.fills, rates, now)
            movement_flows = self._book_movements(session, state.movements, rates, now)
            written = written_tables(session)
            booked = bool(written & {store.PositionHistoryRow.__tablename__, store.CashFlowRow.__tablename__})
            histories = self._histories(session) if booked else book.histories
            book_cash = self._book_cash.read(session) if booked else book.cash_flows
            universe = securities.result()  # inside: without the universe nothing is booked
        # what the book's tables hold now, for the snapshot and the valuations that follow
        self._kept_book.handed_forward(revisions, written, _Book(
            sorted(state.positions, key=lambda h: h.symbol) if changed else book.holdings,
            dict(state.cash) if changed else book.cash, state.synced_at.astimezone(UTC), cursor, histories, book_cash))
        book_quantities = {s: h.quantity for s, h in histories.items() if h.quantity}
        differences = positions.quantity_differences(book_quantities, {h.symbol: h.quantity for h in state.positions})
        cash_differences = cash_flows.cash_differences(book_cash, state.cash)
        if differences or cash_differences:
            event(log, "the books and the broker disagree (the broker is right)", logging.WARNING,
                  positions=differences, cash=cash_differences)
        return ApplyResult(before != (state.positions, state.cash),
                           self._hash(state.positions, state.cash, universe),
                           fills_applied, fill_flows + movement_flows, differences, cash_differences, cursor)

    def _book_fills(self, session, fills: list[FillRecord], rates: Rates, now: datetime) -> tuple[int, int]:
        known = store.known_fills(session, (f.broker_trade_id for f in fills))
        new: dict[str, FillRecord] = {}
        for fill in fills:
            if fill.broker_trade_id not in known:
                new.setdefault(fill.broker_trade_id, fill)
        flows = 0
        buckets = {f.broker_trade_id: self.buckets.trading_bucket(session, f.bucket) for f in new.values()}
        for fill in sorted(new.values(), key=positions.fill_order):
            bucket = buckets[fill.broker_trade_id]
            store.add_fill(session, dict(
                broker_trade_id=fill.broker_trade_id, client_order_id=fill.client_order_id, symbol=fill.symbol,
                side=fill.side, quantity=fill.quantity, price=fill.price, currency=fill.currency,
                commission=fill.commission, executed_at=fill.executed_at, bucket=bucket,
                value_base=base_amount(fill.quantity * fill.price, fill.currency, rates)))
            for flow in cash_flows.flows_of_fill(fill):
                row = self._add_flow(session, flow, rates)
                self.buckets.book(session, bucket, flow.kind, flow.amount, flow.currency, rates, flow.occurred_at,
                                  flow.description, row.id)
                flows += 1
        session.flush()
        sells = self._replay_positions(session, {f.symbol for f in new.values()})
        waiting = store.waiting_dividends(session) if any(f.side == positions.BUY for f in new.values()) else []
        for fill in sorted(new.values(), key=positions.fill_order):
            result = sells.get(fill.broker_trade_id)
            if result is not None and result.realized_pnl is not None:
                self.buckets.after_sell(session, buckets[fill.broker_trade_id], result.realized_pnl, result.cost_basis,
                                        fill.executed_at)
            self._mark_reinvested(fill, waiting)
        return len(new), flows

    def _replay_positions(self, session, symbols: Iterable[str]) -> dict[str, positions.SellResult]:
        """Recompute the touched symbols' positions from all their fills (a late fill with an
        earlier time changes what later SELLs realised, so every SELL is written again)."""
        results: dict[str, positions.SellResult] = {}
        for symbol in sorted(symbols):
            rows = store.fill_rows_of(session, symbol)
            history, sells = positions.replay(symbol, [FillRecord(*r[:10]) for r in rows])
            store.set_sell_results(session, [
                (r.broker_trade_id, sold.realized_pnl, sold.cost_basis) for r in rows
                if (sold := sells.get(r.broker_trade_id)) is not None
                and (r.realized_pnl, r.cost_basis) != (sold.realized_pnl, sold.cost_basis)])
            store.save_position_history(session, dict(
                symbol=symbol, currency=history.currency, quantity=history.quantity, cost=history.cost,
                realized_pnl=history.realized_pnl, first_bought_at=history.first_bought_at,
                last_bought_at=history.last_bought_at, last_sold_at=history.last_sold_at, bucket=history.bucket))
            results.update(sells)
        return results

    @staticmethod
    def _mark_reinvested(fill: FillRecord, waiting: list[store.DividendRow]) -> None:
        """A dividend is reinvested once a BUY fills: its own BUY (by client order id), or for
        pooled dividends the next BUY of anything. `waiting`: the assigned and pooled dividends
        (read once for all the fills; marking changes their status)."""
        if fill.side != positions.BUY:
            return
        assigned = [d for d in waiting if d.status == dividends.ASSIGNED
                    and d.reinvest_client_order_id == fill.client_order_id] if fill.client_order_id else []
        for dividend in assigned or [d for d in waiting if d.status == dividends.POOLED]:
            if dividend.pay_date <= fill.executed_at.date():
                dividend.status, dividend.reinvested_at = dividends.REINVESTED, fill.executed_at
                dividend.reinvest_client_order_id = fill.client_order_id

    def _book_movements(self, session, movements: list[cash_flows.Movement], rates: Rates, now: datetime) -> int:
        known = store.known_broker_ids(session, (cash_flows.movement_key(m.broker_id) for m in movements))
        booked = 0
        for movement in sorted(movements, key=lambda m: m.at):  # stable: the ledger's order within an instant
            flow = cash_flows.flow_of_movement(movement)
            if flow.broker_id in known:
                continue
            known.add(flow.broker_id)
            if flow.kind == cash_flows.DEPOSIT and movement.reference and self._match_manual(session, movement, flow):
                continue
            reference = movement.reference if (flow.kind == cash_flows.DEPOSIT and movement.reference
                                               and store.find_cash_flow(session, movement.reference) is None) else None
            row = self._add_flow(session, flow, rates, reference)
            self._route(session, row, flow, rates)
            booked += 1
        return booked

    def _match_manual(self, session, movement: cash_flows.Movement, flow: cash_flows.Flow) -> bool:
        """A broker deposit carrying a manual entry's reference is that entry (True): booked once."""
        manual = store.find_cash_flow(session, movement.reference)
        if manual is None or manual.broker_id is not None or manual.kind != cash_flows.DEPOSIT:
            return False
        if not cash_flows.same_deposit(manual.amount, manual.currency, movement):
            event(log, "a broker deposit has a manual entry's reference but another amount: booked apart",
                  logging.WARNING, reference=movement.reference, manual=manual.amount, broker=movement.amount)
            return False
        manual.broker_id, manual.source = flow.broker_id, cash_flows.MANUAL_AND_BROKER
        return True

    def _add_flow(self, session, flow: cash_flows.Flow, rates: Rates, reference: str | None = None,
                  source: str = cash_flows.BROKER) -> store.CashFlowRow:
        return store.add_cash_flow(session, flow.kind, flow.amount, flow.currency, reference, flow.occurred_at,
                                   broker_id=flow.broker_id, source=source,
                                   amount_base=base_amount(flow.amount, flow.currency, rates), symbol=flow.symbol,
                                   description=flow.description, broker_reference=flow.broker_reference)

    def _route(self, session, row: store.CashFlowRow, flow: cash_flows.Flow, rates: Rates) -> None:
        """Book a broker cash flow into the buckets (a dividend also gets its record)."""
        if flow.kind == cash_flows.DEPOSIT and flow.amount > 0:
            self.buckets.allocate_deposit(session, row, rates)
        elif flow.kind == cash_flows.WITHDRAWAL and flow.amount < 0:
            self.buckets.withdraw(session, row, rates)
        elif flow.kind == cash_flows.DIVIDEND:
            self._record_dividend(session, row, rates)
        elif flow.kind == cash_flows.FX_CONVERSION:
            self.buckets.book(session, self._conversion_bucket(session, flow.broker_reference), flow.kind,
                              flow.amount, flow.currency, rates, flow.occurred_at, flow.description, row.id)
        else:
            self.buckets.book(session, bucket_rules.CORE, flow.kind, flow.amount, flow.currency, rates,
                              flow.occurred_at, flow.description, row.id)

    def _conversion_bucket(self, session, reference: str) -> str:
        """A conversion made for an order (reference fx:<client order id>) belongs to the bucket
        of that order's fill; any other to core."""
        prefix, _, client_order_id = reference.partition(":")
        bucket = store.fill_bucket(session, client_order_id) if prefix == "fx" and client_order_id else None
        return self.buckets.trading_bucket(session, bucket) if bucket is not None else bucket_rules.CORE

    def _record_dividend(self, session, row: store.CashFlowRow, rates: Rates) -> None:
        history = store.position_histories(session).get(row.symbol) if row.symbol else None
        owner = history.bucket if history is not None else bucket_rules.CORE
        bucket = self.buckets.dividend_bucket(session, owner)
        session.add(store.DividendRow(cash_flow_id=row.id, symbol=row.symbol or "UNKNOWN", amount=row.amount,
                                      currency=row.currency, amount_base=row.amount_base,
                                      pay_date=row.occurred_at.date(), bucket=bucket, status=dividends.RECEIVED))
        self.buckets.book(session, bucket, cash_flows.DIVIDEND, row.amount, row.currency, rates, row.occurred_at,
                          f"dividend {row.symbol}", row.id)

    # --- manual entries and listings ---

    @serialized
    def record_deposit(self, amount: float, currency: str, reference: str, now: datetime) -> store.CashFlowRow:
        """A deposit entered by hand, once per reference; money in a currency without a rate is
        refused (it could never be valued)."""
        rates = self.peers.rates()
        if rates.rate(currency) is None:
            raise FailedPrecondition("fx_rate_missing", f"no {rates.base}{currency} rate: {currency} could never be "
                                                        "valued")
        with self._db.transaction() as session:
            row = store.find_cash_flow(session, reference)
            if row is not None:
                same = (row.kind, row.currency) == (cash_flows.DEPOSIT, currency)
                if not same or abs(row.amount - amount) >= cash_flows.CENT:
                    raise AlreadyExists(f"reference {reference!r} is already used by another cash flow")
                if row.source == cash_flows.BROKER:
                    row.source = cash_flows.MANUAL_AND_BROKER
                return row
            flow = cash_flows.Flow(cash_flows.DEPOSIT, amount, currency, now, None, description="recorded by hand")
            row = self._add_flow(session, flow, rates, reference, cash_flows.MANUAL)
            self.buckets.allocate_deposit(session, row, rates)
            return row

    def cash_flows(self, limit: int, flt: CashFlowFilter) -> tuple[list[store.CashFlowRow], list[tuple]]:
        start = day_start(flt.start) if flt.start else None
        end = day_after(flt.end) if flt.end else None
        with self._db.transaction() as session:
            rows = store.cash_flows(session, limit, flt.kinds, flt.currency, start, end)
            totals = store.cash_flow_totals(session, flt.kinds, flt.currency, start, end)
        return rows, totals

    def fills(self, limit: int, symbol: str, bucket: str, start: date | None,
              end: date | None) -> tuple[list[store.FillRow], list[tuple[str, float, float | None]]]:
        """Fills newest first, and the realised P&L per currency (and in base) over all that match."""
        with self._db.transaction() as session:
            matching = store.fills(session, None, symbol, bucket, day_start(start) if start else None,
                                   day_after(end) if end else None)
        totals: dict[str, list] = {}
        for row in matching:
            if row.realized_pnl is None:
                continue
            total = totals.setdefault(row.currency, [0.0, 0.0])
            total[0] += row.realized_pnl
            factor = _base_factor(row)
            total[1] = None if factor is None or total[1] is None else total[1] + row.realized_pnl * factor
        return matching[:limit], [(c, a, b) for c, (a, b) in sorted(totals.items())]

    # --- snapshots and the daily P&L ---

    @serialized
    def take_snapshot(self, now: datetime) -> tuple[store.SnapshotRecord, PortfolioView]:
        """Value the portfolio and store today's snapshot (replacing an earlier one of today),
        with its positions and buckets; delete snapshots beyond the retention. The other
        services are asked while the store is read."""
        securities, rates = in_background(self.peers.securities), in_background(self.peers.rates)
        today = now.date()
        revisions, bucket_revisions = self._kept_days.revisions(), self.buckets.snapshot_revisions()
        held_revisions = self._kept_held.revisions()
        with self._db.transaction() as session:
            book, quotes = self._book(session)
            days = self._kept_days.read(session, _snapshot_days)
            last_year = days.between(today - snapshots.TURNOVER_WINDOW, today - timedelta(days=1))
            totals = [d.total_value_base for d in last_year]
            previous = last_year[-1].taken_at if last_year else _taken_at(days.last_before(today))
            net = self._net_deposits(session, now)
            traded = self._traded(session, now - snapshots.TURNOVER_WINDOW, now)
            buckets = self.buckets.snapshot_inputs(session, today, previous, now)
            universe = securities.result()
            view = self._value(book, quotes.result(), rates.result(), universe)
            known = {s.symbol: s for s in universe}
            held = [(p, known.get(p.valued.holding.symbol)) for p in view.positions]
            figures = snapshots.SnapshotFigures(
                today, view.base_currency, view.positions_value_base, view.cash_base, view.invested_base, net,
                view.unrealized_pnl_base, len(view.positions),
                snapshots.shares((s.country if s else "", p.valued.market_value_base) for p, s in held),
                snapshots.shares((s.industry if s else "", p.valued.market_value_base) for p, s in held),
                snapshots.annual_turnover(traded, [*totals, view.total_value_base]) if traded else None)
            row = _snapshot_row(figures, now)
            position_rows = [dict(
                date=today, symbol=p.valued.holding.symbol, quantity=p.valued.holding.quantity,
                value_base=p.valued.market_value_base, country=(s.country if s else "")[:64],
                industry=(s.industry if s else "")[:100], bucket=p.bucket) for p, s in held]
            bucket_rows = self.buckets.snapshot_rows(buckets, today, view, view.rates)
            store.save_snapshot(session, row, position_rows, bucket_rows, exists=today in days)
            cutoff = snapshots.retention_cutoff(today, self._retention_days)
            if cutoff is not None:
                store.delete_snapshots_before(session, cutoff)
            written = written_tables(session)
        self._kept_days.handed_forward(revisions, written, days.with_day(
            snapshots.StoredDay(today, row.total_value_base, now.astimezone(UTC)), cutoff))
        latest = days.none_after(today)
        self.buckets.snapshot_taken(bucket_revisions, written, today, bucket_rows, latest)
        if position_rows and latest:  # without rows the latest positions are an earlier day's
            self._kept_held.handed_forward(held_revisions, written,
                                           {p["symbol"]: p["value_base"] for p in position_rows})
        return row, view  # `row` is a plain record of what was stored (never in a session)

    def _traded(self, session, since: datetime, until: datetime) -> float:
        """store.traded_value_base over (since, until]: the last figure while the fills are
        unchanged and the window holds the same ones (most days no fill enters or leaves it):
        the same rows give the same sum."""
        kept = self._kept_fill_times.read(session, lambda s: (since, store.fill_times_after(s, since)))
        after, times = kept
        if since < after:  # earlier than the times kept: they cannot tell
            return store.traded_value_base(session, since, until)
        summed = (bisect_right(times, since), bisect_right(times, until))
        last = self._last_traded
        if last is not None and last[0] is kept and last[1] == summed:
            return last[2]
        value = store.traded_value_base(session, since, until)
        self._last_traded = (kept, summed, value)
        return value

    def _net_deposits(self, session, now: datetime) -> float:
        """The deposits less withdrawals up to `now` (base): a snapshot's net deposits. Kept until
        the cash flows change: while none is later than `now`, the sum up to `now` is the sum of
        them all (the same rows, so the same figure as the query at `now`)."""
        kinds = tuple(sorted(cash_flows.EXTERNAL_KINDS))
        total, latest, read_at = self._kept_net.read(session, lambda s: (
            store.flow_totals_base(s, kinds, None, now), store.latest_flow_at(s, kinds), now))
        if latest is None or (latest <= read_at and latest <= now):
            return total
        return store.flow_totals_base(session, kinds, None, now)

    def snapshots(self, before: date | None, limit: int) -> list[store.SnapshotRow]:
        with self._db.transaction() as session:
            return store.snapshots(session, before, limit)

    def daily_pnl(self, as_of: date, now: datetime) -> DailyPnl:
        """The breaker's number: (value now - deposits and withdrawals since the baseline) /
        the baseline - 1, the baseline being the last snapshot before `as_of`. Not armed without
        one; armed but unknown (None) when it cannot be computed, so trading refuses."""
        with self._db.transaction() as session:
            baseline = self._kept_days.read(session, _snapshot_days).last_before(as_of)
            if baseline is None:
                return DailyPnl(False)
            rates = in_background(self.peers.rates)
            flows = store.external_flows_base(session, baseline.taken_at, now)
            base_date, base_total = baseline.day, baseline.total_value_base
            book, quotes = self._book(session)
        view = self._value(book, quotes.result(), rates.result(), None)
        if any(amount is None for _, amount in flows):
            return DailyPnl(True, None, base_date, base_total, view.total_value_base)
        moved = sum(amount for _, amount in flows)
        pnl = (view.total_value_base - moved) / base_total - 1 if base_total > 0 else None
        return DailyPnl(True, pnl, base_date, base_total, view.total_value_base, moved)

    # --- performance ---

    def performance(self, start: date | None, end: date | None, bucket: str) -> PerformanceReport:
        """See performance.py for every figure; `bucket` narrows it to one bucket's value,
        external flows (deposits, transfers) and trades."""
        if start is not None and end is not None and start > end:
            raise InvalidArgument("start", f"{start} is after end {end}")
        with self._db.transaction() as session:
            if bucket and session.get(store.BucketRow, bucket) is None:
                raise NotFound(f"no bucket {bucket!r}")
            rows = store.snapshots_between(session, start, end)
            notes: list[str] = []
            if bucket:
                points, values = self.buckets.performance_points(session, bucket, start, end)
            else:
                points, values = self._account_points(session, rows, notes)
            first = rows[0] if rows else None
            last = rows[-1] if rows else None
            window = (first.taken_at if first else None, last.taken_at if last else None)
            figures = self._window_figures(session, window, bucket, notes)
            held = store.snapshot_positions(session, first.date if first else None, last.date if last else None)
            if bucket:
                held = [h for h in held if h[6] == bucket]  # (date, symbol, quantity, value, country, industry, bucket)
        return _performance(points, values, held, rows, figures, bucket, notes, self._base)

    def _account_points(self, session, rows: list[store.SnapshotRow],
                        notes: list[str]) -> tuple[list[performance.Point], dict[date, float]]:
        if not rows:
            return [], {}
        flows = store.external_flows_base(session, rows[0].taken_at, rows[-1].taken_at)
        if any(a is None for _, a in flows):
            notes.append("a deposit or withdrawal has no base amount (no FX rate): returns are not computed")
            return [], {}
        points, index = [], 0
        for row in rows:
            moved = 0.0
            while index < len(flows) and flows[index][0] <= row.taken_at:
                moved += flows[index][1]
                index += 1
            points.append(performance.Point(row.date, row.total_value_base, moved))
        return points, {r.date: r.total_value_base for r in rows}

    def _window_figures(self, session, window: tuple[datetime | None, datetime | None], bucket: str,
                        notes: list[str]) -> dict:
        start, end = window
        if end is None:
            return {"fees": 0.0, "dividends": 0.0, "deposits": 0.0, "traded": 0.0, "sells": []}
        fills = store.fills(session, None, bucket=bucket, start=start, end=end + timedelta(microseconds=1))
        fills = [f for f in fills if start is None or f.executed_at > start]
        if bucket:
            flows = self.buckets.window_flows(session, bucket, start, end)
        else:
            flows = {kind: store.flow_totals_base(session, kinds, start, end) for kind, kinds in
                     (("fees", (cash_flows.TRADING_FEE, cash_flows.FEE)), ("dividends", tuple(cash_flows.INCOME_KINDS)),
                      ("deposits", tuple(cash_flows.EXTERNAL_KINDS)))}
        sells = [performance.Sell(f.executed_at, f.realized_pnl * factor, f.realized_pnl / f.cost_basis
                                  if f.cost_basis else None)
                 for f in fills if f.side == positions.SELL and f.realized_pnl is not None
                 and (factor := _base_factor(f)) is not None]
        if any(f.value_base is None for f in fills):
            notes.append("a fill has no base value (no FX rate): turnover leaves it out")
        return {**flows, "traded": sum(f.value_base or 0.0 for f in fills), "sells": sells}

    # --- dividends ---

    def dividends(self, limit: int, symbol: str, status: str, start: date | None,
                  end: date | None) -> tuple[list[store.DividendRow], float]:
        with self._db.transaction() as session:
            matching = store.dividends(session, None, symbol, status, start, end)
        return matching[:limit], sum(d.amount_base or 0.0 for d in matching)

    @serialized
    def plan_reinvestment(self, now: datetime) -> dividends.Plan:
        """The reinvestment rule over every plannable dividend; assigns the BUYs' client order
        ids and marks bonuses and pooled dividends (only the fill marks them reinvested). The
        market is asked only about the symbols whose dividends add up to a trade."""
        open_rows = self._kept_open.current()
        held = self._kept_held.current() if open_rows else {}
        if open_rows is None or held is None:  # not kept, or changed since: read (and keep) them
            with self._db.transaction() as session:
                open_rows = self._kept_open.read(session, _open_dividends)
                held = self._kept_held.read(session, _latest_held) if open_rows else {}
        priced = [dividends.OpenDividend(d.id, d.symbol, d.amount_base) for d in open_rows
                  if d.amount_base is not None]
        market = sorted(dividends.trade_sized(priced))
        facts = self._reinvestment_facts(market, now, held) if market else {}
        for symbol in {d.symbol for d in open_rows} - set(facts):  # below a trade only the value is read
            facts[symbol] = dividends.SecurityFacts(None, "", 1, None, held.get(symbol), None)
        unpriced = [d.symbol for d in open_rows if d.amount_base is None]
        plan = dividends.plan(priced, facts)
        plan.notes += [f"{s}: a dividend without a base amount (no FX rate) waits" for s in sorted(set(unpriced))]
        marks = {i: (dividends.ASSIGNED, buy.client_order_id) for buy in plan.buys for i in buy.dividend_ids}
        for ids, status in ((plan.pooled_ids, dividends.POOLED), (plan.bonus_ids, dividends.BONUS)):
            marks.update((i, (status, "")) for i in ids)
        marked = {d.id: (d.status, d.reinvest_client_order_id) for d in open_rows}
        changes = {i: mark for i, mark in marks.items() if marked.get(i) != mark}
        if changes:
            with self._db.transaction() as session:
                store.mark_dividends(session, changes)
        return plan

    def _reinvestment_facts(self, symbols: list[str], now: datetime,
                            held: dict[str, float]) -> dict[str, dividends.SecurityFacts]:
        """`held`: symbol -> its value (base) on the latest snapshot."""
        securities = {s.symbol: s for s in self.peers.securities()}
        quotes = self.peers.quotes([s for s in symbols if s in securities])
        rates = self.peers.rates()
        per_share = self.peers.dividends([s for s in symbols if s in securities], now.date() - timedelta(days=365),
                                         now.date())
        facts = {}
        for symbol in symbols:
            security, quote = securities.get(symbol), quotes.get(symbol)
            currency = security.currency if security else (quote.currency if quote else "")
            price = quote.price if quote else None
            amounts = [(d.day, d.amount) for d in per_share if d.symbol == symbol]
            facts[symbol] = dividends.SecurityFacts(
                price, currency, security.lot_size if security else 1,
                dividends.trailing_yield(amounts, price, now.date()), held.get(symbol),
                rates.rate(currency) if currency else None)
        return facts

    def pending_bonuses(self, symbols: list[str]) -> list[dividends.Bonus]:
        with self._db.transaction() as session:
            rows = store.dividends(session, None, status=dividends.BONUS)
            held = {p.symbol: p.value_base for p in store.latest_snapshot_positions(session)}
        totals: dict[str, float] = {}
        for row in rows:
            if (not symbols or row.symbol in symbols) and row.amount_base is not None:
                totals[row.symbol] = totals.get(row.symbol, 0.0) + row.amount_base
        return [dividends.Bonus(s, a, dividends.bonus_of(a, held.get(s))) for s, a in sorted(totals.items())]


# --- helpers ---

def _history(row) -> PositionHistory:
    """From a position_history row (store.position_histories)."""
    return PositionHistory(row.symbol, row.currency, row.quantity, row.cost, row.realized_pnl, row.first_bought_at,
                           row.last_bought_at, row.last_sold_at, row.bucket)


class _OpenRow(NamedTuple):
    id: int
    symbol: str
    amount_base: float | None
    status: str
    reinvest_client_order_id: str


def _open_dividends(session) -> list[_OpenRow]:
    """The plannable dividends, newest first."""
    return [_OpenRow(d.id, d.symbol, d.amount_base, d.status, d.reinvest_client_order_id)
            for d in store.dividends(session, None, statuses=dividends.PLANNABLE)]


def _latest_held(session) -> dict[str, float]:
    return {p.symbol: p.value_base for p in store.latest_snapshot_positions(session)}


def _snapshot_days(session) -> snapshots.SnapshotDays:
    return snapshots.SnapshotDays(snapshots.StoredDay(*d) for d in store.snapshot_days(session))


def _taken_at(snapshot: snapshots.StoredDay | None) -> datetime | None:
    return snapshot.taken_at if snapshot is not None else None


def _base_factor(row: store.FillRow) -> float | None:
    """Base units per unit of the fill's currency, as booked."""
    value = row.quantity * row.price
    return None if row.value_base is None or not value else row.value_base / value


def _universe_entry(security: Security) -> UniverseEntry:
    return UniverseEntry(security.symbol, security.allow_buy, security.allow_sell, security.country,
                         security.industry, security.min_target, security.max_target)


def _snapshot_row(figures: snapshots.SnapshotFigures, now: datetime) -> store.SnapshotRecord:
    return store.SnapshotRecord(
        date=figures.day, positions_value_base=figures.positions_value_base, cash_base=figures.cash_base,
        total_value_base=figures.total_value_base, base_currency=figures.base_currency, taken_at=now,
        invested_base=figures.invested_base, net_deposits_base=figures.net_deposits_base,
        unrealized_pnl_base=figures.unrealized_pnl_base, position_count=figures.position_count,
        country_shares=json.dumps(figures.country_shares, sort_keys=True),
        industry_shares=json.dumps(figures.industry_shares, sort_keys=True), annual_turnover=figures.annual_turnover)


def _performance(points: list[performance.Point], values: dict[date, float], held: list[tuple],
                 rows: list[store.SnapshotRow], figures: dict, bucket: str, notes: list[str],
                 base: str) -> PerformanceReport:
    returns = performance.daily_returns(points)
    twr = performance.time_weighted_return(r for _, r in returns)
    first, last = (points[0], points[-1]) if points else (None, None)
    cagr = performance.cagr(twr, first.day, last.day) if first else None
    risk = performance.risk([r for _, r in returns])
    holdings: dict[date, dict[str, performance.HeldValue]] = {}
    for day, symbol, quantity, value, country, industry, _ in held:
        holdings.setdefault(day, {})[symbol] = performance.HeldValue(quantity, value, country, industry)
    days = [p.day for p in points]
    attribution = performance.attribution(days, values, holdings)
    mean_value = sum(p.value for p in points) / len(points) if points else None
    calendar_days = (last.day - first.day).days if first else 0
    if len(points) < 2:
        notes.append("fewer than two snapshots in the range: no returns")
    return PerformanceReport(
        start=first.day.isoformat() if first else "", end=last.day.isoformat() if last else "", bucket=bucket,
        base_currency=rows[0].base_currency if rows else base, days=len(returns), time_weighted_return=twr,
        money_weighted_return=performance.money_weighted_return(points), cagr=cagr, volatility=risk.volatility,
        sharpe=risk.sharpe, sortino=risk.sortino, max_drawdown=risk.max_drawdown,
        calmar=performance.calmar(cagr, risk.max_drawdown),
        turnover=performance.turnover(figures["traded"], mean_value, calendar_days or None),
        fees_paid_base=-figures["fees"], dividends_received_base=figures["dividends"],
        net_deposits_base=figures["deposits"], start_value_base=first.value if first else 0.0,
        end_value_base=last.value if last else 0.0, attribution=attribution,
        trades=performance.trade_metrics(figures["sells"], first.value if first else None, calendar_days),
        notes=notes)
