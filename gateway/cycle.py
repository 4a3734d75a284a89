"""The sync cycle (DESIGN.md section 7) across the services, one span per step.

A step that fails is reported, never hidden; steps that need it are skipped; and no trade is
attempted unless every step before execution succeeded (fail closed). The next cycle starts
clean: nothing here carries state from one cycle to the next but the portfolio's ledger cursor
(KeptLedgerCursor), a hint the portfolio checks before it applies anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

import grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.display.v1 import display_pb2, display_pb2_grpc
from trader.planner.v1 import planner_pb2, planner_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from gateway import book
from services.common.background import ContextExecutor
from services.common.client import Clients
from services.common.logs import event
from services.common.tracing import current_trace_id, step_span

log = logging.getLogger("trader.cycle")
tracer = trace.get_tracer("trader.gateway.cycle")

OK, FAILED, REFUSED, SKIPPED = "OK", "FAILED", "REFUSED", "SKIPPED"
ERROR_TTL_SECONDS = 3600
DISPLAY_SOURCE = "sync_cycle"  # the cycle posts and clears only its own display messages
# Steps whose refusal is an answer: a safety rule refused the trade, or the planner has no plan
# for this state. Any other step that is refused (valuation without an FX rate, ...) could not do
# its job: it FAILED, and the cycle is not ok.
REFUSABLE_STEPS = ("plan", "execute", "emergency")
ERROR_TEXT_LENGTH = 120
# The display's calls run beside the cycle's other calls where their order does not matter (the
# display is a leaf: nothing the cycle decides depends on it).
_BESIDE = ContextExecutor(max_workers=4, thread_name_prefix="cycle-display")


def beside(action: Callable[[], object]) -> Future:
    """`action` in a worker thread, in a copy of this context (the as-of time and the trace go along)."""
    return _BESIDE.submit(action)


@dataclass
class StepResult:
    name: str
    status: str
    duration_ms: float
    detail: str = ""


@dataclass
class CycleResult:
    as_of: datetime
    trace_id: str
    steps: list[StepResult] = field(default_factory=list)
    base_currency: str = ""
    total_value_base: float = 0.0
    cash_base: float = 0.0
    last_trade: str = ""
    display_text: str = ""

    @property
    def ok(self) -> bool:
        return all(step.status != FAILED for step in self.steps)


class KeptLedgerCursor:
    """The portfolio's ledger cursor as its last ApplyBrokerState reply gave it, so the next sync
    asks trading from it without a GetLedgerCursor. It is handed back as ApplyBrokerState's
    `after`, which the portfolio checks: if another sync moved the books meanwhile, it refuses
    (ledger_cursor_moved) and applies nothing, and the cycle reads the cursor and syncs again."""

    def __init__(self) -> None:
        self.cursor: portfolio_pb2.LedgerCursor | None = None


class Services:
    """Stubs of the five services the cycle talks to."""

    def __init__(self, clients: Clients):
        self.data = clients.stub("data", data_pb2_grpc.MarketDataStub)
        self.portfolio = clients.stub("portfolio", portfolio_pb2_grpc.PortfolioStub)
        self.planner = clients.stub("planner", planner_pb2_grpc.PlannerStub)
        self.trading = clients.stub("trading", trading_pb2_grpc.TradingStub)
        self.display = clients.stub("display", display_pb2_grpc.DisplayStub)


def _cursor_moved(exc: grpc.RpcError) -> bool:
    """ApplyBrokerState's refusal of a kept cursor another sync moved (portfolio.proto, `after`)."""
    return (hasattr(exc, "code") and exc.code() == grpc.StatusCode.FAILED_PRECONDITION
            and (exc.details() or "").startswith("ledger_cursor_moved"))


def _outcome(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        status = REFUSED if exc.code() == grpc.StatusCode.FAILED_PRECONDITION else FAILED
        return status, f"{exc.code().name}: {exc.details()}"
    return FAILED, f"{type(exc).__name__}: {exc}"


def error_text(step: StepResult) -> str:
    """The error pool's text for a failed step: `SYNC_PRICES FAILED`, with the rule's reason when
    a service refused (`VALUATION FAILED: fx_rate_missing: no exchange rate for CHF (base EUR)`)."""
    code, _, reason = step.detail.partition(": ")
    text = f"{step.name.upper()} FAILED" + (f": {reason}" if code == "FAILED_PRECONDITION" else "")
    return text[:ERROR_TEXT_LENGTH]


class Cycle:
    def __init__(self, services: Services, now: datetime, ledger: KeptLedgerCursor | None = None):
        self.s = services
        self.ledger = ledger if ledger is not None else KeptLedgerCursor()
        self.result = CycleResult(as_of=now, trace_id=current_trace_id())

    def step(self, name: str, action: Callable[[], str | None], needs: tuple[str, ...] = ()):
        """Run one step in its own span; returns True when it succeeded."""
        failed_needs = [s.name for s in self.result.steps if s.name in needs and s.status != OK]
        if failed_needs:
            self.result.steps.append(StepResult(name, SKIPPED, 0.0, f"needs {', '.join(failed_needs)}"))
            return False
        outcome = self._run_step(name, action)
        self.result.steps.append(outcome)
        return outcome.status == OK

    def step_beside(self, name: str, action: Callable[[], str | None]) -> Callable[[], None]:
        """Start a step that needs nothing and that no later step needs until it is joined;
        the returned join waits for it and records it in the place it was started in."""
        place = len(self.result.steps)
        running = beside(lambda: self._run_step(name, action))

        def join() -> None:
            self.result.steps.insert(place, running.result())
        return join

    def _run_step(self, name: str, action: Callable[[], str | None]) -> StepResult:
        started = time.perf_counter()
        with step_span(tracer, f"cycle.{name}") as span:
            try:
                detail = action() or ""
                status = OK
            except Exception as exc:  # noqa: BLE001 - every failure becomes a reported step
                status, detail = _outcome(exc)
                if status == REFUSED and name not in REFUSABLE_STEPS:
                    status = FAILED
                span.set_status(Status(StatusCode.ERROR, detail))
                event(log, "cycle step did not succeed", logging.WARNING, step=name, status=status, detail=detail)
        return StepResult(name, status, (time.perf_counter() - started) * 1000, detail)

    def run(self) -> CycleResult:
        state: dict = {}
        # "SYNCING..." goes up while the broker syncs; it is joined before anything else is posted.
        join_processing = self.step_beside("display_processing",
                                           lambda: self._post(display_pb2.PROCESSING, "SYNCING...", 120))
        self.step("sync_broker", lambda: self._sync_broker(state))
        self.step("sync_prices", lambda: self._sync_prices(state))
        self.step("valuation", lambda: self._valuation(state), needs=("sync_broker",))
        if state.get("negative_cash"):
            self.step("emergency", self._emergency, needs=("valuation",))
        self.step("plan", lambda: self._plan(state), needs=("valuation", "sync_prices"))
        join_processing()
        before_execute = ("sync_broker", "sync_prices", "valuation", "plan", "emergency")
        if self.step("execute", lambda: self._execute(state), needs=before_execute) and state.get("filled"):
            # A broker that filled at once changed the books now; a market-on-close order (the
            # paper broker) fills at the session's close and is booked by the next cycle's sync.
            self.step("post_trade_sync", lambda: self._sync_broker(state))
            self.step("post_trade_valuation", lambda: self._valuation(state), needs=("post_trade_sync",))
        self.step("display", lambda: self._display(state))
        return self.result

    def settle(self) -> CycleResult:
        """The broker's sync and the valuation only: no plan, no order. The backtest's close-out
        after its last session, when the market-on-close orders of that session are filled."""
        state: dict = {}
        self.step("sync_broker", lambda: self._sync_broker(state))
        self.step("valuation", lambda: self._valuation(state), needs=("sync_broker",))
        return self.result

    # --- steps ---

    def _sync_broker(self, state: dict) -> str:
        """Trading imports what the broker reports; the portfolio books the entries after its cursor
        (the one kept from the last sync, checked by the portfolio; else read)."""
        kept, self.ledger.cursor = self.ledger.cursor, None  # kept again only once this sync succeeded
        try:
            broker, reply = self._sync_from(kept)
        except grpc.RpcError as exc:
            if kept is None or not _cursor_moved(exc):
                raise
            broker, reply = self._sync_from(None)
        self.ledger.cursor = reply.ledger_cursor
        return f"{broker.broker}: {len(broker.positions)} positions, {broker.trades_imported} trades imported, " \
               f"{reply.fills_applied} fills and {reply.cash_flows_applied} cash flows booked, " \
               f"hash {reply.portfolio_hash}"

    def _sync_from(self, kept: portfolio_pb2.LedgerCursor | None
                   ) -> tuple[trading_pb2.SyncBrokerResponse, portfolio_pb2.ApplyBrokerStateResponse]:
        cursor = kept if kept is not None else self.s.portfolio.GetLedgerCursor(portfolio_pb2.GetLedgerCursorRequest())
        broker = self.s.trading.SyncBroker(book.sync_request(cursor))
        return broker, self.s.portfolio.ApplyBrokerState(book.apply_request(broker, after=kept))

    def _sync_prices(self, state: dict) -> str:
        reply = self.s.data.SyncPrices(data_pb2.SyncPricesRequest())
        state["securities_revision"] = reply.securities_revision  # handed to the valuation
        return f"{reply.provider}: {reply.bars_added} bars added, latest {reply.latest_bar_date}"

    def _valuation(self, state: dict) -> str:
        """Today's snapshot (for the loss breaker and the performance), and the valuation it was
        taken from: one call, one valuation per cycle. The securities' revision the price sync
        reported is handed forward: a universe the portfolio read at it is not read again."""
        request = portfolio_pb2.TakeSnapshotRequest(universe_revision=state.get("securities_revision", ""))
        portfolio = self.s.portfolio.TakeSnapshot(request).portfolio
        state["portfolio"] = portfolio
        self.result.base_currency = portfolio.base_currency
        self.result.total_value_base = portfolio.total_value_base
        self.result.cash_base = portfolio.cash_base
        state["negative_cash"] = [f"{c.currency} {c.amount:.2f}" for c in portfolio.cash if c.amount < 0]
        return f"total {portfolio.base_currency} {portfolio.total_value_base:,.2f}, hash {portfolio.portfolio_hash}"

    def _emergency(self) -> str:
        reply = self.s.trading.ResolveNegativeBalances(trading_pb2.ResolveNegativeBalancesRequest())
        working = [o for o in reply.orders if o.state in (trading_pb2.SUBMITTED, trading_pb2.PARTIALLY_FILLED)]
        if reply.remaining and not working:
            left = ", ".join(f"{c.currency} {c.amount:.2f}" for c in reply.remaining)
            raise RuntimeError(f"negative cash remains after the emergency path: {left}")
        return (f"{len(reply.conversions)} conversions, {len(reply.orders)} emergency orders"
                + (f" ({len(working)} working until the close)" if working else ""))

    def _plan(self, state: dict) -> str:
        # The valuation's portfolio is handed forward (the planner uses it only if it matches its
        # hash); after the emergency path changed the books the planner reads them itself.
        given = None if state.get("negative_cash") else state.get("portfolio")
        plan = self.s.planner.GetRecommendations(planner_pb2.GetRecommendationsRequest(portfolio=given))
        state["plan"] = plan
        return f"plan {plan.plan_id}: {len(plan.steps)} steps ({plan.method}{', cached' if plan.cached else ''})"

    def _execute(self, state: dict) -> str:
        plan = state["plan"]
        if not plan.steps:  # ExecutePlan's answer to a plan without steps (trading.proto): nothing to send
            return trading_pb2.ExecutePlanResponse.Outcome.Name(trading_pb2.ExecutePlanResponse.NOTHING_TO_DO)
        first = plan.steps[0]
        # The trade's text goes up while trading executes it: a step of its own (display_trade,
        # recorded before execute), so a display that fails changes nothing about the trade.
        text = (f"{planner_pb2.Side.Name(first.side)} {first.symbol.split('.')[0]} "
                f"{first.currency} {first.quantity * first.estimated_price:,.0f}")
        join_post = self.step_beside("display_trade",
                                     lambda: self._post(display_pb2.PROCESSING, text, 120, display_pb2.MODE_TRADE))
        try:
            reply = self.s.trading.ExecutePlan(trading_pb2.ExecutePlanRequest(
                plan_id=plan.plan_id,
                steps=[trading_pb2.PlanStep(symbol=s.symbol, side=trading_pb2.Side.Value(planner_pb2.Side.Name(s.side)),
                                            quantity=s.quantity, reason=s.reason) for s in plan.steps],
            ))
        finally:
            join_post()
        outcome = trading_pb2.ExecutePlanResponse.Outcome.Name(reply.outcome)
        if reply.outcome == trading_pb2.ExecutePlanResponse.EXECUTED:
            self.result.last_trade = trade_text(reply.order)
            state["filled"] = reply.order.state in (trading_pb2.FILLED, trading_pb2.PARTIALLY_FILLED)
            return self.result.last_trade
        return outcome

    def _display(self, state: dict) -> str:
        """The display is a leaf: one call hands it the value, the cash and the plan's next step,
        the cycle's error (or clears it) and clears the cycle's processing message."""
        problems = [s for s in self.result.steps if s.status == FAILED]
        error = (display_pb2.DisplayChange(post=post_request(display_pb2.ERROR, error_text(problems[0]),
                                                             ERROR_TTL_SECONDS)) if problems
                 else display_pb2.DisplayChange(clear=display_pb2.ClearMessageRequest(pool=display_pb2.ERROR,
                                                                                      source=DISPLAY_SOURCE)))
        done = display_pb2.DisplayChange(clear=display_pb2.ClearMessageRequest(pool=display_pb2.PROCESSING,
                                                                               source=DISPLAY_SOURCE))
        if "portfolio" not in state:
            shown = self.s.display.ApplyChanges(display_pb2.ApplyChangesRequest(changes=[error, done]))
        else:
            next_actions = display_pb2.DisplayChange(next_actions=next_actions_request(state["portfolio"],
                                                                                       state.get("plan")))
            try:
                shown = self.s.display.ApplyChanges(display_pb2.ApplyChangesRequest(
                    changes=[next_actions, error, done]))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                # Next actions the display refuses (figures it cannot show) still let the error pool
                # change; the step fails with their refusal, the processing message runs out.
                self.s.display.ApplyChanges(display_pb2.ApplyChangesRequest(changes=[error]))
                raise
        self.result.display_text = shown.text
        return f"showing {display_pb2.Pool.Name(shown.pool)}: {shown.text}"

    def _post(self, pool: int, text: str, ttl_seconds: int, mode: int = display_pb2.MODE_UNSPECIFIED) -> str:
        self.s.display.PostMessage(post_request(pool, text, ttl_seconds, mode))
        return text


def post_request(pool: int, text: str, ttl_seconds: int, mode: int = display_pb2.MODE_UNSPECIFIED
                 ) -> display_pb2.PostMessageRequest:
    """A post of the cycle's own source (DISPLAY_SOURCE)."""
    return display_pb2.PostMessageRequest(pool=pool, text=text, ttl_seconds=ttl_seconds, mode=mode,
                                          source=DISPLAY_SOURCE)


def next_actions_request(portfolio: portfolio_pb2.GetPortfolioResponse,
                         plan: planner_pb2.GetRecommendationsResponse | None) -> display_pb2.RefreshNextActionsRequest:
    request = display_pb2.RefreshNextActionsRequest(base_currency=portfolio.base_currency,
                                                    total_value_base=portfolio.total_value_base,
                                                    cash_base=portfolio.cash_base)
    if plan is not None and plan.steps:
        first = plan.steps[0]
        request.next_step.CopyFrom(display_pb2.NextStep(side=planner_pb2.Side.Name(first.side), symbol=first.symbol,
                                                        value_base=max(0.0, first.estimated_value_base)))
    return request


def trade_text(order: trading_pb2.Order) -> str:
    """`BUY 3 AAPL.US @ 129.41 USD` once filled; `BUY 3 AAPL.US at the close (limit 135.88 USD)`
    while a market-on-close order works."""
    head = f"{trading_pb2.Side.Name(order.side)} {order.quantity} {order.symbol}"
    if order.state in (trading_pb2.FILLED, trading_pb2.PARTIALLY_FILLED):
        return f"{head} @ {order.fill_price:.2f} {order.currency}"
    return f"{head} at the close (limit {order.limit_price:.2f} {order.currency})"


def run_cycle(services: Services, now: datetime, settle_only: bool = False,
              ledger: KeptLedgerCursor | None = None) -> CycleResult:
    """One cycle (or its settling part) at `now`; `ledger`: the cursor kept between cycles (None:
    the portfolio is asked for it)."""
    cycle = Cycle(services, now, ledger)
    return cycle.settle() if settle_only else cycle.run()
