"""The order engine: every order (plan step, manual, emergency) takes the same path.

validate -> refuse a repeated client order id -> gather facts -> store the intent (NEW) ->
risk check (REJECTED with the rule on refusal) -> currency conversion if needed -> SUBMITTED ->
broker -> record the fill (FILLED). A lost reply leaves UNKNOWN_OUTCOME, resolved later by
looking the order up at the broker by its client id, never by sending it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from services.common.background import ContextExecutor
from services.common.errors import AlreadyExists, DomainError, FailedPrecondition, NotFound, Unavailable
from services.common.logs import event
from services.common.money import from_base
from services.common.revisions import KeptReads
from services.trading import emergency, orders, risk, store
from services.trading.adapters.broker import Account, BrokerRejected, Execution, MarketOrder
from services.trading.adapters.services import MarketSession, ServiceReads

log = logging.getLogger("trader.trading.engine")
_READS = ContextExecutor(max_workers=4, thread_name_prefix="order-facts")
DIVIDEND_LOOKBACK = timedelta(days=400)


@dataclass(frozen=True)
class Reconciliation:
    reconciled: bool
    issues: list[str]


class OrderEngine:
    def __init__(self, mode: str, db, broker, reads: ServiceReads,
                 set_serving: Callable[[bool], None] = lambda _: None):
        self.mode = mode
        self._db = db
        self.broker = broker
        self._reads = reads
        self._set_serving = set_serving
        self._lock = threading.RLock()  # one order at a time: checks and fills see one account
        self._emergency_lock = threading.Lock()  # one emergency at a time: never a double sale
        self.reconciliation = Reconciliation(False, ["not reconciled yet"])
        # What every sync reads of the ledger, kept until a write to its tables commits.
        self._kept = KeptReads(db.revisions)
        self._last_settings: tuple[dict, risk.RiskSettings] | None = None  # (the stored values, as settings)

    def _read(self, tables: tuple[str, ...], key: str, read: Callable):
        return self._kept.current(self._db.transaction, tables, key, read)

    def _open_orders(self) -> tuple[tuple[int, str, str], ...]:
        """(id, client order id, state) of each open order."""
        return self._read(("orders",), "open", lambda session: tuple(
            (o.id, o.client_order_id, o.state) for o in store.open_orders(session)))

    def ledger_end(self) -> tuple[int, int]:
        """The ids of the last trade and the last cash movement (0 without any): a SyncBroker
        cursor there has nothing after it."""
        return self._read(("trades", "cash_movements"), "end", store.ledger_end)

    # --- settings ---

    def settings(self) -> risk.RiskSettings:
        """The stored settings; the same object while the stored ones are kept (unchanged)."""
        stored = self._read(("risk_settings",), "settings", store.load_settings)
        last = self._last_settings
        if last is not None and last[0] is stored:
            return last[1]
        known = {k: v for k, v in stored.items() if k in risk.RiskSettings.names()}
        settings = risk.RiskSettings(**known)
        self._last_settings = (stored, settings)
        return settings

    def update_settings(self, changes: dict, now: datetime) -> risk.RiskSettings:
        updated = replace(self.settings(), **changes).validated()
        with self._db.transaction() as session:
            store.save_settings(session, {k: v for k, v in asdict(updated).items()}, now)
        return updated

    # --- facts ---

    def _facts(self, intent: orders.OrderIntent, limit_price: float | None, now: datetime,
               emergency: bool) -> tuple[risk.OrderFacts, object]:
        security = self._reads.security(intent.symbol)  # NotFound: the caller's mistake, nothing stored
        # The other services' answers are independent: ask them at once (each in a copy of this
        # call's context, so the as-of time and the trace go along).
        asks = [self._reads.rates, lambda: self._reads.quote(intent.symbol),
                lambda: self._reads.market_session(security.exchange, now), lambda: self._reads.daily_pnl(now.date())]
        pending_reads = [_READS.submit(ask) for ask in asks]
        account = self.broker.account()
        held = next((p for p in account.positions if p.symbol == intent.symbol), None)
        ledger_known, last_buy, last_sell, times, pending, held_back = True, None, None, None, None, None
        try:
            with self._db.transaction() as session:
                last_buy = store.last_trade_at(session, intent.symbol, orders.BUY, now)
                last_sell = store.last_trade_at(session, intent.symbol, orders.SELL, now)
                open_orders = store.open_orders(session)
                # Fills, and orders working at the broker (market-on-close: they fill later), count.
                times = store.trade_times_between(session, now - timedelta(days=8), now) + [
                    o.created_at for o in open_orders
                    if o.state != orders.NEW and not o.filled_quantity and o.created_at <= now]
                pending = any(o.symbol == intent.symbol and o.side == intent.side for o in open_orders)
                held_back = _pending_buys(open_orders)
        except Exception:  # noqa: BLE001 - an unreadable ledger refuses the order
            ledger_known = False
            event(log, "ledger read failed", logging.ERROR, exc_info=True)
        (base, rates), quote, market, (armed, pnl) = (f.result() for f in pending_reads)
        settings = self.settings()
        pending_buys = (lambda currency: held_back.get(currency, 0.0)) if held_back is not None else self._pending_buys
        cash = account.cash.get(security.currency, 0.0) - pending_buys(security.currency)
        convertible = None
        if (intent.side == orders.BUY and security.currency != base and settings.auto_convert_currency
                and self.broker.converts_currency):
            convertible = account.cash.get(base, 0.0) - pending_buys(base)
        commission: float | None = 0.0
        if quote is not None:
            try:
                commission = orders.commission(intent.quantity * quote[0] * (1 + settings.price_band),
                                               security.currency, base, rates)
            except FailedPrecondition:  # no rate for the currency: the check refuses (fx_rate_missing)
                commission = None
        facts = risk.OrderFacts(
            symbol=intent.symbol, side=intent.side, quantity=intent.quantity, now=now, mode=self.mode,
            currency=security.currency, exchange=security.exchange, lot_size=max(1, security.lot_size),
            allow=(security.allow_buy if intent.side == orders.BUY else security.allow_sell)
            and security.kind == 1,  # EQUITY: an index is never traded
            market_open=market.open if market is not None else None,
            quote_price=quote[0] if quote else None, quote_date=quote[1] if quote else None,
            limit_price=limit_price, held_quantity=held.quantity if held else 0,
            average_cost=held.average_cost if held else None, last_buy_at=last_buy, last_sell_at=last_sell,
            ledger_known=ledger_known, trade_times=times, daily_pnl=pnl, daily_pnl_armed=armed,
            cash_available=cash, commission=commission, pending_same_side=pending,
            reconciled=self.reconciliation.reconciled, emergency=emergency,
            convertible_base_cash=convertible, base_currency=base, rates=rates,
        )
        return facts, security, market

    def _pending_buys(self, currency: str) -> float:
        """Cash the open BUYs in `currency` still hold: their unfilled rest at the limit price."""
        with self._db.transaction() as session:
            return _pending_buys(store.open_orders(session)).get(currency, 0)

    # --- the order path ---

    def check(self, intent: orders.OrderIntent, limit_price: float | None, now: datetime,
              whole_lots: bool = True) -> tuple[risk.Approval, str]:
        """The dry run: the same facts and rules, nothing stored, nothing sent."""
        with self._lock:
            facts, security, _ = self._facts(intent, limit_price, now, emergency=False)
            if whole_lots:
                orders.check_lot(intent.quantity, facts.lot_size)
            return risk.check(facts, self.settings()), security.currency

    def submit(self, intent: orders.OrderIntent, limit_price: float | None, now: datetime,
               emergency: bool = False, whole_lots: bool = True) -> store.OrderRow:
        """`whole_lots`: a quantity that is not a whole number of lots is bad input (manual
        orders); otherwise it is rounded down to whole lots (plans, the emergency path).

        Every order that is stored ends final or in a state a sync resolves: a refusal (by a rule
        or by the broker, at any stage) is REJECTED with its reason and answered
        FAILED_PRECONDITION naming the rule; a lost reply is UNKNOWN_OUTCOME (UNAVAILABLE)."""
        with self._lock:
            with self._db.transaction() as session:
                if store.find_order(session, intent.client_order_id) is not None:
                    raise AlreadyExists(f"client_order_id {intent.client_order_id!r} was used before")
            return self._submit_new(intent, limit_price, now, emergency, whole_lots)

    def _submit_new(self, intent: orders.OrderIntent, limit_price: float | None, now: datetime, emergency: bool,
                    whole_lots: bool) -> store.OrderRow:
        """`submit` of an order whose client order id no order has: the caller holds the lock
        and has looked it up since taking it."""
        facts, security, market = self._facts(intent, limit_price, now, emergency)
        if whole_lots:
            orders.check_lot(intent.quantity, facts.lot_size)
        with self._db.transaction() as session:
            order_id = store.add_order(session, intent, security.currency, now,  # the intent, first
                                       security.bucket or "core").id
        try:
            approval = risk.check(facts, self.settings())
            self._convert_if_needed(intent, facts, approval, now)
        except Exception as exc:  # noqa: BLE001 - nothing was sent: the order ends here, whatever failed
            answer = _refusal_before_sending(exc)
            self._set(order_id, orders.REJECTED, answer.message if answer is not None
                      else f"not sent: internal error: {type(exc).__name__}", now)
            if answer is None or answer is exc:
                raise
            raise answer from exc
        return self._place(order_id, intent, security.currency, approval, now, market)

    def _convert_if_needed(self, intent, facts: risk.OrderFacts, approval: risk.Approval, now) -> None:
        """Convert exactly the amount the check computed (whole cents of the base currency)."""
        if approval.conversion <= 0:
            return
        base, currency = facts.base_currency, facts.currency
        self.broker.convert(base, approval.conversion, currency, from_base(approval.conversion, currency, base,
                                                                           facts.rates),
                            f"fx:{intent.client_order_id}", now)
        event(log, "currency converted", amount=approval.conversion, currency=base, to=currency,
              order=intent.client_order_id)

    def _place(self, order_id: int, intent, currency: str, approval: risk.Approval, now,
               market: MarketSession | None) -> store.OrderRow:
        with self._db.transaction() as session:
            row = session.get(store.OrderRow, order_id)
            row.limit_price = approval.limit_price
            row.quantity = approval.quantity
            store.set_state(session, order_id, orders.SUBMITTED, "", now)
        order = MarketOrder(intent.client_order_id, intent.symbol, intent.side, approval.quantity, currency,
                            approval.reference_price, approval.limit_price,
                            market.session_date if market else None, market.close if market else None)
        try:
            execution = self.broker.place_market_order(order, now)
        except BrokerRejected as exc:
            self._set(order_id, orders.REJECTED, f"broker_rejected: {exc}", now)
            raise FailedPrecondition("broker_rejected", str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - the broker may or may not have it: only a lookup can tell
            self._set(order_id, orders.UNKNOWN_OUTCOME, f"broker call failed: {type(exc).__name__}: {exc}", now)
            self._mark_unreconciled([f"order {intent.client_order_id} has an unknown outcome"])
            raise Unavailable(f"broker outcome unknown for {intent.client_order_id}; "
                              "it is resolved by lookup at the next sync, never resent") from exc
        if execution is not None:  # a live broker accepts now and fills later (imported at sync)
            with self._db.transaction() as session:
                store.record_execution(session, execution, now)
                partial = session.get(store.OrderRow, order_id).state == orders.PARTIALLY_FILLED
            if partial:
                self._resolve_partial_fill(order_id, now)
        with self._db.transaction() as session:
            return session.get(store.OrderRow, order_id)

    def _resolve_partial_fill(self, order_id: int, now: datetime) -> None:
        """A part filled at once: the rest stays open while the broker works it, or is cancelled
        when the broker has closed the order."""
        try:
            still_open = self.broker.open_order_ids()
        except Exception:  # noqa: BLE001 - it stays PARTIALLY_FILLED; the next sync resolves it
            event(log, "open orders could not be read after a partial fill", logging.WARNING, exc_info=True)
            return
        self._resolve(order_id, still_open, now)

    def _set(self, order_id: int, state: str, reason: str, now) -> None:
        with self._db.transaction() as session:
            store.set_state(session, order_id, state, reason, now)

    # --- plans ---

    def execute_plan(self, plan_id: str, symbol: str, side: str, quantity: int, reason: str,
                     now: datetime) -> tuple[bool, store.OrderRow]:
        """(already executed before, order) for a plan's first step."""
        client_order_id = orders.plan_client_order_id(plan_id, 1, symbol, side)
        with self._lock:  # looked up once: no order can take the id before this one is stored
            with self._db.transaction() as session:
                existing = store.find_order(session, client_order_id)
                if existing is not None:
                    return True, existing
            intent = orders.validate_intent(client_order_id, symbol, side, quantity,
                                            reason or f"plan {plan_id} step 1")
            return False, self._submit_new(intent, None, now, emergency=False, whole_lots=False)

    # --- reconciliation ---

    def sync(self, now: datetime, settle: bool = True) -> tuple[int, int]:
        """Let the broker work its orders up to `now` (`settle`: the paper broker's
        market-on-close fills), import its fills and cash movements once, resolve every open
        order (NEW, SUBMITTED, PARTIALLY_FILLED, UNKNOWN_OUTCOME) by looking it up at the broker,
        then compare positions. Returns (fills imported, cash movements imported)."""
        imported, moved, _ = self.sync_account(now, settle)
        return imported, moved

    def sync_account(self, now: datetime, settle: bool = True) -> tuple[int, int, Account]:
        """`sync`, and the broker's account as the sync left it (read once: SyncBroker's answer)."""
        with self._lock:
            try:
                if settle:
                    self.broker.settle(now)  # orders whose session closed execute (market-on-close) or expire
                still_open = self.broker.open_order_ids()  # before the fills: see orders.resolution
                fills_since = _overlap(self._read(("trades",), "latest_fill", store.latest_fill_at))
                movements_since = _overlap(self._read(("cash_movements",), "latest_movement",
                                                      store.latest_cash_movement_at))
                # One read of the broker's fills serves the import and the paper dividends.
                dividends_since = now - DIVIDEND_LOOKBACK if self.broker.pays_dividends else None
                executions = self.broker.executions(_earliest(fills_since, dividends_since))
                imported = self._import_fills(now, _since(executions, fills_since))
                account = self.broker.account()
                if dividends_since is not None and self._pay_paper_dividends(
                        now, _since(executions, dividends_since), account):
                    account = self.broker.account()  # the dividends were credited
                moved = self._record_cash_movements(self.broker.cash_movements(movements_since))
                open_ids = [order_id for order_id, _, _ in self._open_orders()]
                for order_id in open_ids:
                    self._resolve(order_id, still_open, now)
                # Resolving moves no position at the broker; with no open order there is no unknown outcome.
                self.reconcile(account, unknown=None if open_ids else [])
            except Unavailable as exc:
                self._mark_unreconciled([f"the broker could not be reached: {exc.message}"])
                raise
            return imported, moved, account

    def _pay_paper_dividends(self, now: datetime, executions: list[Execution], account: Account) -> int:
        """The paper account receives the dividends of the last 400 days it was entitled to (the
        broker pays each once): those of the securities in `executions` (the broker's fills of
        those days) and held in `account`; an unreadable history is paid at a later sync.
        Returns how many were paid."""
        since = now - DIVIDEND_LOOKBACK
        symbols = {e.symbol for e in executions} | {p.symbol for p in account.positions}
        if not symbols:
            return 0
        per_share = self._reads.dividends(sorted(symbols), since.date(), now.date())
        if per_share is None:
            event(log, "dividend history unreadable: paid at a later sync", logging.WARNING)
            return 0
        paid = self.broker.pay_dividends(per_share, now)
        if paid:
            event(log, "paper dividends paid", count=paid)
        return paid

    def _record_cash_movements(self, movements: list) -> int:
        """Record the movements not recorded yet (by broker id); returns how many."""
        ids = [m.broker_id for m in movements]  # a week's: the same until one is recorded
        known = self._read(("cash_movements",), ("known", tuple(ids)), lambda session: store.known_movement_ids(
            session, ids))
        new = [m for m in movements if m.broker_id not in known]
        if not new:
            return 0
        with self._db.transaction() as session:
            return store.record_cash_movements(session, new)

    def _import_fills(self, now: datetime, executions: list[Execution] | None = None) -> int:
        """Record the broker's fills not recorded yet (by broker trade id), asking the broker for
        those from a week before the newest recorded fill on (late reports included): a sync
        costs the same after ten years of trades as after ten. `executions`: those, already read."""
        if executions is None:
            executions = self.broker.executions(_overlap(self._read(("trades",), "latest_fill", store.latest_fill_at)))
        ids = [e.broker_trade_id for e in executions]  # a week's: the same until one is recorded
        known = self._read(("trades",), ("known", tuple(ids)), lambda session: store.known_trade_ids(session, ids))
        imported = 0
        for execution in executions:
            if execution.broker_trade_id not in known:
                with self._db.transaction() as session:
                    imported += store.record_execution(session, execution, now)
        return imported

    def _resolve(self, order_id: int, still_open: set[str], now: datetime) -> None:
        """Move one open order where the broker's answer puts it (orders.resolution)."""
        with self._db.transaction() as session:
            order = session.get(store.OrderRow, order_id)
            is_open = order.client_order_id in still_open or order.broker_reference in still_open
            move = orders.resolution(order.state, order.filled_quantity or 0, order.quantity, is_open,
                                     now - order.updated_at)
            if move is not None and move[0] == orders.CANCELLED and (why := self.broker.closed_reason(
                    order.client_order_id)):
                move = (move[0], f"{move[1]}: {why}")
            if move is not None:
                store.set_state(session, order_id, *move, now)

    def reconcile(self, account: Account | None = None, unknown: list[str] | None = None) -> Reconciliation:
        """The books against the broker's positions (`account`: read now when not given) and the
        orders of unknown outcome (`unknown`: read now when not given)."""
        account = account if account is not None else self.broker.account()
        broker_positions = {p.symbol: p.quantity for p in account.positions}
        books = self._read(("trades", "position_adjustments"), "positions", store.ledger_positions)
        if unknown is None:
            unknown = [cid for _, cid, state in self._open_orders() if state == orders.UNKNOWN_OUTCOME]
        issues = [f"{s}: books {books.get(s, 0)}, broker {broker_positions.get(s, 0)}"
                  for s in sorted(set(books) | set(broker_positions)) if books.get(s, 0) != broker_positions.get(s, 0)]
        issues += [f"order {cid} has an unknown outcome" for cid in unknown]
        self.reconciliation = Reconciliation(not issues, issues)
        self._set_serving(self.reconciliation.reconciled)
        if issues:
            event(log, "books disagree with the broker", logging.WARNING, issues=issues)
        return self.reconciliation

    def _mark_unreconciled(self, issues: list[str]) -> None:
        self.reconciliation = Reconciliation(False, issues)
        self._set_serving(False)

    def accept_broker_positions(self, reason: str, now: datetime) -> Reconciliation:
        """Take the broker's positions as the truth: each difference becomes an adjustment."""
        with self._lock:
            broker_positions = {p.symbol: p.quantity for p in self.broker.account().positions}
            with self._db.transaction() as session:
                books = store.ledger_positions(session)
                for symbol in set(books) | set(broker_positions):
                    difference = broker_positions.get(symbol, 0) - books.get(symbol, 0)
                    if difference:
                        store.add_adjustment(session, symbol, difference, reason, now)
            return self.reconcile()

    def cancel(self, row: store.OrderRow, now: datetime) -> store.OrderRow:
        """Cancel an order the broker still has open (CANCELLED, its filled part kept). An open
        order the broker does not have is resolved by lookup instead, as a sync would: never
        sent or closed there -> REJECTED or CANCELLED with the reason; filled -> refused."""
        with self._lock:
            row = self._order(row.id)
            if row.state in orders.FINAL_STATES:
                raise FailedPrecondition("order_final", f"order {row.client_order_id} is {row.state}")
            open_ids = self.broker.open_order_ids()
            if row.client_order_id in open_ids or row.broker_reference in open_ids:
                try:
                    cancelled = self.broker.cancel(row.client_order_id)
                except BrokerRejected as exc:
                    raise FailedPrecondition("broker_rejected", f"the broker refused to cancel "
                                                                f"{row.client_order_id}: {exc}") from exc
                if cancelled:
                    self._import_fills(now)  # what filled before the cancel stays filled
                    self._cancelled_by_request(row.id, now)
                    return self._order(row.id)
            self.sync(now)
            row = self._order(row.id)
            if row.state == orders.FILLED:
                raise FailedPrecondition("order_final", f"order {row.client_order_id} is FILLED: it executed "
                                                        "before it could be cancelled")
            return row

    def _cancelled_by_request(self, order_id: int, now: datetime) -> None:
        with self._db.transaction() as session:
            order = session.get(store.OrderRow, order_id)
            if order.state in orders.FINAL_STATES:
                return  # it filled before the cancel reached it
            if order.state in (orders.NEW, orders.UNKNOWN_OUTCOME):
                store.set_state(session, order_id, orders.SUBMITTED, "found open at the broker", now)
            filled = order.filled_quantity or 0
            store.set_state(session, order_id, orders.CANCELLED, "cancelled by request" + (
                f" with {filled} of {order.quantity} filled" if filled else ""), now)

    def _order(self, order_id: int) -> store.OrderRow:
        with self._db.transaction() as session:
            return session.get(store.OrderRow, order_id)

    # --- the emergency path ---

    def resolve_negative_balances(self, now: datetime) -> tuple[list, list[store.OrderRow], dict[str, float]]:
        """(conversions done, emergency orders, balances still negative)."""
        if not self._emergency_lock.acquire(blocking=False):
            raise FailedPrecondition("emergency_in_progress", "another emergency resolution is running")
        try:
            base, rates = self._reads.rates()
            conversions = []
            for step, planned in enumerate(emergency.plan_conversions(self.broker.account().cash, base, rates)):
                try:
                    self.broker.convert(planned.from_currency, planned.from_amount, planned.to_currency,
                                        planned.to_amount, f"emergency:{now.isoformat()}:{step}", now)
                except (BrokerRejected, FailedPrecondition) as exc:  # refused: the sales below cover it
                    event(log, "emergency conversion refused", logging.WARNING, reason=str(exc),
                          source=planned.from_currency, to=planned.to_currency)
                    continue
                conversions.append(planned)
            placed = []
            account = self.broker.account()
            for currency, balance in sorted(account.cash.items()):
                if balance >= 0:
                    continue
                lots = self._lot_sizes([p.symbol for p in account.positions if p.currency == currency])
                held = [(p.symbol, p.quantity, (self._reads.quote(p.symbol) or (0.0,))[0])
                        for p in account.positions if p.currency == currency and p.symbol in lots]
                for symbol, quantity in emergency.plan_sales(-balance, [h for h in held if h[2] > 0], lots):
                    cid = f"emergency-{now.strftime('%Y%m%dT%H%M%S')}-{symbol}"
                    try:
                        placed.append(self.submit(orders.validate_intent(cid, symbol, orders.SELL, quantity,
                                                                         f"negative {currency} balance"),
                                                  None, now, emergency=True, whole_lots=False))
                    except DomainError:  # refused or unreachable: the order (if stored) says why
                        with self._db.transaction() as session:
                            row = store.find_order(session, cid)
                        if row is not None:
                            placed.append(row)
            remaining = {c: a for c, a in self.broker.account().cash.items() if a < 0}
            if conversions or placed or remaining:
                event(log, "emergency resolution", logging.WARNING, conversions=len(conversions),
                      orders=[o.client_order_id for o in placed], remaining=remaining)
            return conversions, placed, remaining
        finally:
            self._emergency_lock.release()

    def _lot_sizes(self, symbols: list[str]) -> dict[str, int]:
        """symbol -> lot size for the securities the data service knows; a holding it does not
        know cannot be checked, so it is left out of the emergency sales (and logged)."""
        lots = {}
        for symbol in symbols:
            try:
                lots[symbol] = max(1, self._reads.security(symbol).lot_size)
            except NotFound:
                event(log, "emergency: a holding the data service does not know is not sold", logging.WARNING,
                      symbol=symbol)
        return lots

    # --- the paper account ---

    def fund_paper_account(self, amount: float, currency: str, reference: str, now: datetime) -> bool:
        """Credit a deposit to the paper account once per reference. Money in a currency without
        an FX rate could never be valued (every valuation would be refused), so it is refused up
        front (fx_rate_missing) and nothing is stored."""
        if not self.broker.takes_deposits:
            raise FailedPrecondition("paper_only", "deposits reach a live account from the bank, not through the API")
        base, rates = self._reads.rates()
        if currency != base and not rates.get(currency, 0) > 0:
            known = ", ".join(sorted({base, *(c for c, r in rates.items() if r > 0)}))
            raise FailedPrecondition("fx_rate_missing", f"no {base}{currency} rate, so {currency} could never be "
                                                        f"valued; deposit in a currency with a rate ({known})")
        return self.broker.deposit(amount, currency, reference, now)

    # --- status ---

    def status(self, now: datetime) -> dict:
        settings = self.settings()
        with self._db.transaction() as session:
            times = store.trade_times_between(session, now - timedelta(days=7), now)
            open_count = len(store.open_orders(session))
        today = sum(1 for t in times if t.date() == now.date())
        last = max(times, default=None)
        armed, pnl = self._reads.daily_pnl(now.date())
        breaker = ("not_armed" if not armed else "unknown" if pnl is None else
                   "halt" if pnl <= settings.daily_loss_halt else
                   "sell_block" if pnl <= settings.daily_loss_sell_block else "normal")
        return {"settings": settings, "trades_today": today, "trades_week": len(times), "last_trade_at": last,
                "next_allowed": next_trade_allowed(times, now, settings), "breaker": breaker, "daily_pnl": pnl,
                "open_orders": open_count}


def _pending_buys(open_orders: list[store.OrderRow]) -> dict[str, float]:
    """currency -> the cash the open BUYs in it still hold: their unfilled rest at the limit price
    (summed in the orders' order)."""
    held: dict[str, float] = {}
    for o in open_orders:
        if o.side == orders.BUY and o.state != orders.NEW:
            held[o.currency] = held.get(o.currency, 0) + (o.quantity - (o.filled_quantity or 0)) * o.limit_price
    return held


LEDGER_OVERLAP = timedelta(days=7)  # fills and cash movements are asked for again from this long before the newest


def _overlap(newest: datetime | None) -> datetime | None:
    return None if newest is None else newest - LEDGER_OVERLAP


def _earliest(*since: datetime | None) -> datetime | None:
    """The earliest of the lower bounds (None: no bound, everything)."""
    return None if None in since else min(since)


def _since(executions: list[Execution], since: datetime | None) -> list[Execution]:
    """The executions at or after `since` (all for None), as the broker's `executions(since)`."""
    return executions if since is None else [e for e in executions if e.executed_at >= since]


def _refusal_before_sending(exc: Exception) -> DomainError | None:
    """How a failure before the order reached the broker is answered: a rule's or the broker's
    refusal as FAILED_PRECONDITION naming it, an unreachable broker as UNAVAILABLE; None for a
    bug of ours (INTERNAL)."""
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, BrokerRejected):
        return FailedPrecondition("broker_rejected", f"the currency conversion was refused: {exc}")
    if isinstance(exc, OSError):  # ConnectionError, TimeoutError: the conversion's broker call failed
        return Unavailable(f"the currency conversion failed ({type(exc).__name__}: {exc}); the order was not sent")
    return None


def next_trade_allowed(times: list[datetime], now: datetime, settings: risk.RiskSettings) -> datetime:
    """The earliest moment the frequency caps allow another trade."""
    candidates = [now]
    if times:
        candidates.append(max(times) + timedelta(minutes=settings.min_minutes_between_trades))
    if sum(1 for t in times if t.date() == now.date()) >= settings.max_trades_per_day:
        candidates.append(datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo))
    window = sorted(t for t in times if now - t < timedelta(days=7))
    if len(window) >= settings.max_trades_per_week:
        candidates.append(window[len(window) - settings.max_trades_per_week] + timedelta(days=7))
    return max(candidates)
