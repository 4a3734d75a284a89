"""The replay driver: advances a simulated clock one trading day per cycle through the bundled
history, deposits monthly, and prints one line per cycle.

Each simulated day runs at 22:00 UTC, after the New York close, so the day's closes are final.
A restarted replay resumes after the last simulated day whose cycle was ok.

A failed call never stops the replay: a day whose deposits or cycle did not succeed is reported
and tried again, for the same simulated day (so a crashed service cannot change what a backtest
trades: trading's own rules and plan ids keep a retried day from trading twice), after every
service reports SERVING again (at most RETRY_WAITS_S). After `day_tries` tries the replay gives
up, saying why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from datetime import time as clock_time

import grpc
from opentelemetry import trace
from trader.data.v1 import data_pb2
from trader.portfolio.v1 import portfolio_pb2
from trader.trading.v1 import trading_pb2

from gateway import store
from gateway.config import ReplayConfig
from gateway.cycle import Services
from gateway.server import CycleRunner
from services.common import clock
from services.common.client import Clients
from services.common.db import Database
from services.common.logs import event

log = logging.getLogger("trader.replay")
tracer = trace.get_tracer("trader.gateway.replay")

CALENDAR_SYMBOL = "SP500.IDX"  # the index's bars are the trading days of the sample
SESSION_END_UTC = clock_time(22, 0)
PEERS = ("data", "portfolio", "planner", "trading", "display")
RETRY_WAITS_S = (1.0, 2.0, 4.0, 8.0, 15.0)  # the longest wait for the peers before try 2, 3, ...


class GaveUp(Exception):
    """A day (or the list of days) did not succeed within the allowed tries."""


class CycleNotOk(Exception):
    """A day's cycle ran but a step FAILED."""


def trading_days(services: Services, start: date, end: date | None) -> list[date]:
    bars = services.data.GetPriceHistory(data_pb2.GetPriceHistoryRequest(
        symbol=CALENDAR_SYMBOL, start=start.isoformat(), end=end.isoformat() if end else "",
    )).bars
    return [date.fromisoformat(b.date) for b in bars]


def deposit(services: Services, amount: float, currency: str, reference: str) -> None:
    """Money arrives at the (paper) broker and is recorded as a cash flow; both idempotent."""
    services.trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(
        amount=amount, currency=currency, reference=reference))
    services.portfolio.RecordDeposit(portfolio_pb2.RecordDepositRequest(
        amount=amount, currency=currency, reference=reference))


def cycle_line(day: date, result) -> str:
    failed = [f"{s.name} {s.status}: {s.detail}" for s in result.steps if s.status in ("FAILED", "REFUSED")]
    line = (f"{day}  value {result.base_currency} {result.total_value_base:>12,.2f}  "
            f"cash {result.base_currency} {result.cash_base:>10,.2f}  "
            f"trade: {result.last_trade or '-'}  display: {result.display_text or '-'}")
    return line + ("  | " + "; ".join(failed) if failed else "")


def failure(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)


class ReplayDriver(threading.Thread):
    def __init__(self, config: ReplayConfig, base_currency: str, db: Database, services: Services,
                 runner: CycleRunner, on_finished: Callable[[], None], clients: Clients):
        super().__init__(name="replay", daemon=True)
        self._config = config
        self._base = base_currency
        self._db = db
        self._services = services
        self._runner = runner
        self._on_finished = on_finished
        self._clients = clients
        self.stop_requested = threading.Event()

    def _first_day(self) -> date:
        with self._db.transaction() as session:
            last = store.last_run(session, simulated=True, ok=True)
        if last is not None and last.as_of.date() >= self._config.start:
            print(f"resuming replay after {last.as_of.date()} (state in the services' databases)", flush=True)
            return date.fromordinal(last.as_of.date().toordinal() + 1)
        return self._config.start

    def run(self) -> None:
        try:
            self._replay()
        except GaveUp as exc:
            event(log, "replay gave up", logging.ERROR, reason=str(exc))
            print(f"replay gave up: {exc}", flush=True)
        except Exception:  # noqa: BLE001 - a bug of ours: reported, then the process stops cleanly
            event(log, "replay stopped by an error", logging.ERROR, exc_info=True)
            print("replay stopped by an error; see the gateway log", flush=True)
        finally:
            self._on_finished()

    def _replay(self) -> None:
        first_day = self._first_day()
        done, days = self._retrying(f"listing the trading days from {first_day}",
                                    lambda: trading_days(self._services, first_day, self._config.end))
        if not done:
            return
        interval = 1.0 / self._config.cycles_per_second if self._config.cycles_per_second > 0 else 0.0
        last_month = None
        for count, day in enumerate(days, start=1):
            if self.stop_requested.is_set():
                return
            started = time.monotonic()
            if not self._run_day(day, count == 1, (day.year, day.month) != last_month)[0]:
                return  # stop requested
            last_month = (day.year, day.month)
            if self._config.max_cycles and count >= self._config.max_cycles:
                return
            self.stop_requested.wait(max(0.0, interval - (time.monotonic() - started)))
        print("replay reached the end of the history", flush=True)

    def _run_day(self, day: date, first: bool, new_month: bool):
        """One simulated day: deposits (idempotent by reference) and the cycle, until it is ok."""
        now = datetime.combine(day, SESSION_END_UTC, tzinfo=UTC)

        def attempt():
            with clock.use_as_of(now), tracer.start_as_current_span("replay.day"):
                if first and self._config.initial_deposit > 0:
                    deposit(self._services, self._config.initial_deposit, self._base, "replay-initial-deposit")
                if new_month and self._config.monthly_deposit > 0:
                    deposit(self._services, self._config.monthly_deposit, self._base, f"replay-deposit-{day:%Y-%m}")
                result = self._runner.run()
            print(cycle_line(day, result), flush=True)
            if not result.ok:
                raise CycleNotOk("the cycle failed: " + "; ".join(
                    f"{s.name}: {s.detail}" for s in result.steps if s.status == "FAILED"))
            return result

        return self._retrying(f"simulated day {day}", attempt)

    def _retrying(self, what: str, action) -> tuple[bool, object]:
        """(True, `action()`'s result), tried up to day_tries times; (False, None) when a stop was
        requested while waiting. Raises GaveUp after the last try."""
        tries = self._config.day_tries
        for number in range(1, tries + 1):
            try:
                return True, action()
            except (grpc.RpcError, CycleNotOk) as exc:
                problem = failure(exc)
            event(log, "replay try failed", logging.WARNING, what=what, attempt=number, problem=problem)
            if number == tries:
                raise GaveUp(f"{what} did not succeed in {tries} tries; the last: {problem}")
            print(f"{what}: try {number} of {tries} failed; trying again once every service is serving",
                  flush=True)
            if self.stop_requested.wait(0.2):
                return False, None
            wait_s = RETRY_WAITS_S[min(number, len(RETRY_WAITS_S)) - 1]
            self._clients.wait_serving(PEERS, wait_s, self.stop_requested.is_set)
            if self.stop_requested.is_set():
                return False, None
        raise AssertionError("unreachable")
