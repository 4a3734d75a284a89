"""The replay and backtest driver: advances a simulated clock one trading session per cycle,
deposits monthly, and runs the gateway's cycle at each session's simulated time.

The clock sits inside the primary exchange's session (TRADER_REPLAY_EXCHANGE, XNYS by default):
each cycle runs TRADER_REPLAY_MINUTES_BEFORE_CLOSE (30) minutes before that session's close,
from the data service's calendar (exchange-calendars: holidays, half days, daylight saving). So
the market is open (a SELL may pass trading's market-hours rule), the data service shows the
bars up to the previous close only (a day's bar appears once its exchange has closed), and the
paper broker fills the cycle's order at the session's close (market-on-close), booked by the
next cycle's sync. After the last session, a close-out (the broker's sync and the valuation
only, at the next session's open) fills that session's orders and values the account at its
closes.

Before each day's cycle, the jobs of TRADER_REPLAY_JOBS (`ReplayJobs`) that are due at its cycle
instant run, through the scheduler's own due-function (gateway/schedule.py), each at its slot
time (a daily 03:30 job at 03:30 of that day; once however many slots a weekend held), recorded
by the gateway as REPLAY runs. As the wall-clock scheduler counts from its start, they count
from the first replayed day's cycle (so the first runs come before the second day's cycle, once
there is a book to reconcile). A job that runs and fails is reported and the replay goes on; a
call that fails is tried again.

A failed call never stops the replay: a day whose deposits or cycle did not succeed is reported
and tried again, for the same simulated day (so a crashed service cannot change what a backtest
trades: trading's own rules and plan ids keep a retried day from trading twice), after every
service reports SERVING again (at most RETRY_WAITS_S). After `day_tries` tries the replay gives
up, saying why.

`Replay` is the one driver: the gateway runs it in a thread for `make run`
(TRADER_REPLAY_AUTOSTART, `ReplayDriver`, resuming after the last simulated day whose cycle was
ok) and `trader backtest` runs it in the CLI against the gateway's RunSyncCycle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import grpc
from opentelemetry import trace
from trader.data.v1 import data_pb2
from trader.portfolio.v1 import portfolio_pb2
from trader.trading.v1 import trading_pb2

from gateway import store
from gateway.config import ReplayConfig
from gateway.cycle import CycleResult, Services
from gateway.schedule import CronSchedule, Due, due
from services.common import clock
from services.common.client import Clients
from services.common.db import Database
from services.common.logs import event
from services.common.timestamps import from_timestamp

log = logging.getLogger("trader.replay")
tracer = trace.get_tracer("trader.gateway.replay")

PEERS = ("data", "portfolio", "planner", "trading", "display")
RETRY_WAITS_S = (1.0, 2.0, 4.0, 8.0, 15.0)  # the longest wait for the peers before try 2, 3, ...
CLOSE_OUT_SEARCH_DAYS = 14  # the next session after the last one lies within this many days
INITIAL_DEPOSIT_REFERENCE = "replay-initial-deposit"


REPLAY_GAVE_UP_EXIT = 3  # the gateway's exit code when its replay gave up (gateway/launch.py: not restarted)


class GaveUp(Exception):
    """A day (or the list of days) did not succeed within the allowed tries."""


class CycleNotOk(Exception):
    """A day's cycle ran but a step FAILED."""


@dataclass(frozen=True)
class SimulatedDay:
    """One trading session of the primary exchange and when its cycle runs."""

    day: date
    at: datetime     # the cycle's instant: inside the session, before its close (UTC)
    close: datetime  # the session's close (UTC)
    open: datetime   # the session's open (UTC)


@dataclass(frozen=True)
class ReplayJobs:
    """The jobs a replay runs on its simulated days (their schedules; TRADER_REPLAY_JOBS says
    which) and how one runs: `run(name)`, at the caller's simulated instant, records a REPLAY run
    in the gateway and returns its (status, detail), status as gateway/store.py spells it."""

    schedules: dict[str, CronSchedule]
    run: Callable[[str], tuple[str, str]]
    # The day's due jobs and then its cycle in one call (RunSyncCycle's jobs_before), on a day
    # without deposits (they come between the jobs and the cycle): `with_cycle(due)` -> (the
    # cycle's result, each job's (status, detail) in order). None: each job runs on its own.
    with_cycle: Callable[[list[Due]], tuple[CycleResult, list[tuple[str, str]]]] | None = None


@dataclass(frozen=True)
class Schedule:
    days: list[SimulatedDay]
    close_out_at: datetime  # after the last session's close, before anything of the next one


def cycle_instant(opens: datetime, closes: datetime, minutes_before_close: float) -> datetime:
    """`minutes_before_close` before the close, never before the open."""
    return max(opens, closes - timedelta(minutes=minutes_before_close))


def schedule(services: Services, config: ReplayConfig, first_day: date) -> Schedule:
    """The sessions of the primary exchange from `first_day` to the configured end (by default
    the latest close the data service holds for any security), with their cycle instants."""
    end = config.end or latest_close(services)
    if end < first_day:
        return Schedule([], datetime.min)
    reply = services.data.ListSessions(data_pb2.ListSessionsRequest(
        exchange=config.exchange, start=first_day.isoformat(),
        end=(end + timedelta(days=CLOSE_OUT_SEARCH_DAYS)).isoformat()))
    days, after = [], []
    for session in reply.sessions:
        opens, closes = from_timestamp(session.open, "open"), from_timestamp(session.close, "close")
        day = date.fromisoformat(session.date)
        if day <= end:
            days.append(SimulatedDay(day, cycle_instant(opens, closes, config.minutes_before_close), closes, opens))
        else:
            after.append(opens)
    close_out = after[0] if after else (days[-1].close + timedelta(hours=1) if days else datetime.min)
    return Schedule(days, close_out)


def latest_close(services: Services) -> date:
    """The latest daily close of any active security (the end of the bundled history)."""
    quotes = services.data.GetQuotes(data_pb2.GetQuotesRequest()).quotes
    if not quotes:
        raise CycleNotOk("no security has a price: nothing to replay")
    return max(date.fromisoformat(q.date) for q in quotes)


def history_end(services: Services, exchange: str) -> datetime:
    """The latest instant a simulated cycle may run at: the open of `exchange`'s first session
    after the latest close the data service holds (where a replay's close-out runs; a day later
    when no session follows within CLOSE_OUT_SEARCH_DAYS). Read on the wall clock: a call's
    simulated as-of would hide the later bars. Raises CycleNotOk when no security has a price."""
    with clock.use_as_of(None):
        last = latest_close(services)
        reply = services.data.ListSessions(data_pb2.ListSessionsRequest(
            exchange=exchange, start=(last + timedelta(days=1)).isoformat(),
            end=(last + timedelta(days=CLOSE_OUT_SEARCH_DAYS)).isoformat()))
    opens = [from_timestamp(session.open, "open") for session in reply.sessions]
    return min(opens) if opens else datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)


def deposit(services: Services, amount: float, currency: str, reference: str) -> None:
    """Money arrives at the (paper) broker and is recorded as a cash flow; both idempotent."""
    services.trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(
        amount=amount, currency=currency, reference=reference))
    services.portfolio.RecordDeposit(portfolio_pb2.RecordDepositRequest(
        amount=amount, currency=currency, reference=reference))


def deposits_of(config: ReplayConfig, day: date, first: bool, new_month: bool) -> list[tuple[str, float]]:
    """(reference, amount in the base currency) of the deposits made before `day`'s cycle: the
    initial one before the first, then one on the first session of each month."""
    made = []
    if first and config.initial_deposit > 0:
        made.append((INITIAL_DEPOSIT_REFERENCE, config.initial_deposit))
    if new_month and config.monthly_deposit > 0:
        made.append((f"replay-deposit-{day:%Y-%m}", config.monthly_deposit))
    return made


def cycle_line(day: date, result: CycleResult) -> str:
    failed = [f"{s.name} {s.status}: {s.detail}" for s in result.steps if s.status in ("FAILED", "REFUSED")]
    line = (f"{day}  value {result.base_currency} {result.total_value_base:>12,.2f}  "
            f"cash {result.base_currency} {result.cash_base:>10,.2f}  "
            f"trade: {result.last_trade or '-'}  display: {result.display_text or '-'}")
    return line + ("  | " + "; ".join(failed) if failed else "")


def failure(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)


class Replay:
    """Drives the simulated days through `run_cycle(settle_only)` (the gateway's cycle:
    in-process or over RunSyncCycle), with the deposits before each day's cycle.
    `on_day(day, deposits, result)` sees every day once its cycle succeeded; `say(text)` reports
    retries and failed cycles."""

    def __init__(self, config: ReplayConfig, base_currency: str, services: Services,
                 run_cycle: Callable[[bool], CycleResult], clients: Clients, stop: threading.Event,
                 on_day: Callable[[SimulatedDay, list[tuple[str, float]], CycleResult], None],
                 say: Callable[[str], None] = lambda text: print(text, flush=True), jobs: ReplayJobs | None = None,
                 reached: Callable[[datetime], None] = lambda at: None):
        """`reached(at)` is told each day's cycle instant (then the close-out's) before anything of it runs."""
        self._config = config
        self._reached = reached
        self._base = base_currency
        self._services = services
        self._run_cycle = run_cycle
        self._clients = clients
        self._stop = stop
        self._on_day = on_day
        self._say = say
        self._jobs = jobs

    def run(self, first_day: date) -> CycleResult | None:
        """Replay from `first_day`; returns the close-out's result once the last day is done
        (None when a stop was requested or max_cycles cut the replay short). Raises GaveUp."""
        done, plan = self._retrying(f"listing the trading sessions from {first_day}",
                                    lambda: schedule(self._services, self._config, first_day))
        if not done:
            return None
        interval = 1.0 / self._config.cycles_per_second if self._config.cycles_per_second > 0 else 0.0
        last_month = None  # a resumed replay repeats its first day's deposits: idempotent by reference
        if not plan.days:
            print(f"replay: no session from {first_day} on: it already reached the end of the history; "
                  "rm -rf var starts over", flush=True)
            return None
        jobs_since = plan.days[0].at  # the jobs count from the first cycle, as the scheduler from its start
        last_jobs: dict[str, datetime] = {}
        for count, day in enumerate(plan.days, start=1):
            if self._stop.is_set():
                return None
            started = time.monotonic()
            self._reached(day.at)
            made = deposits_of(self._config, day.day, count == 1, (day.day.year, day.day.month) != last_month)
            jobs = self._due_jobs(day, last_jobs, jobs_since)
            if jobs and (made or self._jobs.with_cycle is None):
                if not self._run_jobs(day, jobs, last_jobs):
                    return None
                jobs = []
            done, result = self._run_day(day, made, jobs, last_jobs)
            if not done:
                return None
            self._on_day(day, made, result)
            last_month = (day.day.year, day.day.month)
            if self._config.max_cycles and count >= self._config.max_cycles:
                return None
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))
        self._reached(plan.close_out_at)
        done, result = self._retrying("the close-out after the last session", lambda: self._close_out(plan))
        return result if done else None

    def _due_jobs(self, day: SimulatedDay, last_runs: dict[str, datetime], since: datetime) -> list[Due]:
        """The jobs due at `day`'s cycle instant, oldest slot first (gateway/schedule.py)."""
        if self._jobs is None:
            return []
        return due(self._jobs.schedules, last_runs, day.at, since)

    def _run_jobs(self, day: SimulatedDay, jobs: list[Due], last_runs: dict[str, datetime]) -> bool:
        """`jobs`, each at its slot, one call each; False when a stop was requested. `last_runs`
        (job -> its last slot) is updated as they run."""
        for item in jobs:
            done, outcome = self._retrying(f"the {item.name} job of {day.day}", lambda item=item: self._run_job(item))
            if not done:
                return False
            self._job_ran(item, outcome, last_runs)
        return True

    def _run_job(self, item: Due) -> tuple[str, str]:
        with clock.use_as_of(item.slot.astimezone(UTC)):
            return self._jobs.run(item.name)

    def _job_ran(self, item: Due, outcome: tuple[str, str], last_runs: dict[str, datetime]) -> None:
        status, detail = outcome
        last_runs[item.name] = item.slot
        if status != store.OK:
            self._say(f"{item.slot.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}  {item.name}  {status}  {detail}")

    def _run_day(self, day: SimulatedDay, made: list[tuple[str, float]], jobs: list[Due],
                 last_runs: dict[str, datetime]):
        """One simulated day: deposits (idempotent by reference) and the cycle, until it is ok;
        `jobs` (due, on a day without deposits) go in the cycle's call until they have run."""
        pending = list(jobs)

        def attempt():
            with clock.use_as_of(day.at), tracer.start_as_current_span("replay.day"):
                for reference, amount in made:
                    deposit(self._services, amount, self._base, reference)
                if pending:
                    result, outcomes = self._jobs.with_cycle(pending)
                    for item, outcome in zip(pending, outcomes, strict=True):
                        self._job_ran(item, outcome, last_runs)
                    pending.clear()  # they ran: a retried day does not run them again
                else:
                    result = self._run_cycle(False)
            if not result.ok:
                self._say(cycle_line(day.day, result))
                raise CycleNotOk("the cycle failed: " + "; ".join(
                    f"{s.name}: {s.detail}" for s in result.steps if s.status == "FAILED"))
            return result

        return self._retrying(f"simulated day {day.day}", attempt)

    def _close_out(self, plan: Schedule) -> CycleResult:
        with clock.use_as_of(plan.close_out_at), tracer.start_as_current_span("replay.close_out"):
            result = self._run_cycle(True)
        if not result.ok:
            raise CycleNotOk("the close-out failed: " + "; ".join(
                f"{s.name}: {s.detail}" for s in result.steps if s.status == "FAILED"))
        return result

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
            self._say(f"{what}: try {number} of {tries} failed; trying again once every service is serving")
            if self._stop.wait(0.2):
                return False, None
            wait_s = RETRY_WAITS_S[min(number, len(RETRY_WAITS_S)) - 1]
            self._clients.wait_serving(PEERS, wait_s, self._stop.is_set)
            if self._stop.is_set():
                return False, None
        raise AssertionError("unreachable")


class ReplayDriver(threading.Thread):
    """`make run`'s replay inside the gateway (TRADER_REPLAY_AUTOSTART): one line per cycle,
    resuming after the last simulated day whose cycle was ok."""

    def __init__(self, config: ReplayConfig, base_currency: str, db: Database, services: Services,
                 runner, on_finished: Callable[[], None], clients: Clients, jobs: ReplayJobs | None = None):
        super().__init__(name="replay", daemon=True)
        self._config = config
        self._db = db
        self._on_finished = on_finished
        self.gave_up = False  # set when the replay gave up or stopped by an error (the exit code says so)
        self.stop_requested = threading.Event()
        self._replay = Replay(config, base_currency, services, runner.run, clients, self.stop_requested,
                              lambda day, _deposits, result: print(cycle_line(day.day, result), flush=True),
                              jobs=jobs, reached=runner.follow_replay())

    def _first_day(self) -> date:
        with self._db.transaction() as session:
            last = store.last_run(session, simulated=True, ok=True)
        if last is not None and last.as_of.date() >= self._config.start:
            print(f"resuming replay after {last.as_of.date()} (state in the services' databases)", flush=True)
            return date.fromordinal(last.as_of.date().toordinal() + 1)
        return self._config.start

    def run(self) -> None:
        try:
            closed = self._replay.run(self._first_day())
            if closed is not None:
                print(f"close-out: value {closed.base_currency} {closed.total_value_base:,.2f}  "
                      f"cash {closed.base_currency} {closed.cash_base:,.2f}", flush=True)
                print("replay reached the end of the history", flush=True)
        except GaveUp as exc:
            self.gave_up = True
            event(log, "replay gave up", logging.ERROR, reason=str(exc))
            print(f"replay gave up: {exc}", flush=True)
        except Exception:  # noqa: BLE001 - a bug of ours: reported, then the process stops cleanly
            self.gave_up = True
            event(log, "replay stopped by an error", logging.ERROR, exc_info=True)
            print("replay stopped by an error; see the gateway log", flush=True)
        finally:
            self._on_finished()
