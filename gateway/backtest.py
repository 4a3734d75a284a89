"""`trader backtest`: the six services over history, through the same gateway cycle the live
system runs, as fast as they allow.

It starts the services on free ports with a fresh state directory (the launcher's supervision:
`gateway/launch.py`), narrows the universe when asked (the other securities are deactivated),
then drives the replay driver (`gateway/replay.py`: sessions of the primary exchange, cycles 30
minutes before each close, monthly deposits, the close-out after the last session) against the
gateway's RunSyncCycle. At the end it reads what the report needs, as of the close-out: the
trades and orders (trading), the cash flows (portfolio), the daily closes of the universe and
the index and the FX rates of every cycle (data), trading's settings; then everything stops.
A stop request (Ctrl-C, SIGTERM) stops the replay and every service.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from trader.data.v1 import data_pb2
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2
from trader.trading.v1 import trading_pb2

from gateway.config import ReplayConfig
from gateway.cycle import CycleResult, Services
from gateway.jobs import REPLAY_DEFAULT
from gateway.launch import START_ORDER, Supervisor
from gateway.replay import Replay, ReplayJobs, SimulatedDay
from gateway.schedule import Due, parse_schedule
from gateway.server import result_from_proto
from services.common import clock
from services.common.client import Clients
from services.common.config import SERVICES, CommonConfig, load_common
from services.common.shutdown import StopRequest
from services.common.timestamps import from_timestamp, to_timestamp

INDEX = "SP500.IDX"           # the index benchmark (the bundled sample's; history only, never traded)
CYCLE_TIMEOUT_S = 300.0       # one cycle (or the close-out) through every service
PAGE = 1000                   # ListTrades / ListOrders / ListCashFlows page size
HISTORY_MARGIN_DAYS = 10      # closes read from this long before the start (the first cycle's previous close)


class Interrupted(Exception):
    """The backtest was stopped (Ctrl-C, SIGTERM) before it finished."""


class BacktestFailed(Exception):
    """The system could not start or the replay gave up; the message says why. `logs`: the
    services' logs, when the failure is theirs to explain (their state directory is kept)."""

    def __init__(self, message: str, logs: Path | None = None):
        super().__init__(f"{message}; logs in {logs}" if logs else message)
        self.logs = logs


@dataclass(frozen=True)
class BacktestSettings:
    start: date
    end: date | None                 # None: the latest close the data holds
    initial_deposit: float           # base currency, before the first session
    monthly_deposit: float           # base currency, on the first session of each month
    base_currency: str = "EUR"
    universe: tuple[str, ...] = ()   # broker symbols; empty: every equity of the bundled sample
    exchange: str = "XNYS"
    minutes_before_close: float = 30.0
    jobs: tuple[str, ...] = REPLAY_DEFAULT  # run on the simulated days (TRADER_REPLAY_JOBS)


@dataclass(frozen=True)
class DayRecord:
    """One session as the strategy saw it: its cycle's valuation (at the previous closes) and
    the deposits made before that cycle."""

    day: date
    at: datetime
    deposits: tuple[tuple[str, float], ...]
    value_base: float
    cash_base: float
    trade: str
    trace_id: str = ""  # the cycle's trace (one per cycle, across the six services)


@dataclass(frozen=True)
class Fill:
    id: int
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    price: float
    currency: str
    commission: float
    executed_at: datetime


@dataclass(frozen=True)
class OrderRecord:
    id: int
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    state: str
    reason: str
    currency: str
    limit_price: float
    created_at: datetime
    filled_quantity: int


@dataclass(frozen=True)
class Flow:
    """A cash flow of the account's book (portfolio ListCashFlows), signed, in its currency."""

    id: int
    kind: str
    amount: float
    currency: str
    at: datetime
    symbol: str


@dataclass(frozen=True)
class SecurityInfo:
    symbol: str
    currency: str
    exchange: str
    lot_size: int
    allow_buy: bool
    allow_sell: bool


@dataclass
class BacktestRun:
    """What one backtest produced: the days, the close-out, and what the report reads."""

    settings: BacktestSettings
    base_currency: str
    days: list[DayRecord] = field(default_factory=list)
    close_out: DayRecord | None = None
    fills: list[Fill] = field(default_factory=list)
    orders: list[OrderRecord] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    securities: dict[str, SecurityInfo] = field(default_factory=dict)
    universe: list[str] = field(default_factory=list)
    closes: dict[str, dict[date, float]] = field(default_factory=dict)  # valid daily closes
    rates: dict[datetime, dict[str, float]] = field(default_factory=dict)  # cycle instant -> units per base
    fee_rates: dict[str, float] = field(default_factory=dict)  # the paper broker's fee conversion (TRADER_FX_RATES)
    sessions: dict[date, tuple[datetime, datetime]] = field(default_factory=dict)  # open, close
    risk_settings: dict = field(default_factory=dict)
    seconds: float = 0.0   # the replay's wall time (start to close-out)

    @property
    def deposits(self) -> list[tuple[date, float]]:
        return [(d.day, amount) for d in self.days for _, amount in d.deposits]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BACKTEST_CALL_TIMEOUT_S = "60"
KEPT_VARIABLES = ("TRADER_FX_RATES", "TRADER_PAPER_SLIPPAGE", "TRADER_CALL_TIMEOUT_S")  # of the caller's TRADER_*


def backtest_env(base_env: dict[str, str], state_dir: Path, base_currency: str) -> dict[str, str]:
    """The services' environment: backtest mode, a fresh state directory, free ports, a new
    token, no display device, no autostarted replay (this process drives it)."""
    env = {key: value for key, value in base_env.items()
           if not key.startswith("TRADER_") or key in KEPT_VARIABLES}
    # A loaded machine must slow a backtest down, not fail it: its calls get a longer deadline.
    env.setdefault("TRADER_CALL_TIMEOUT_S", BACKTEST_CALL_TIMEOUT_S)
    env.update({f"TRADER_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in SERVICES})
    env.update({"TRADER_MODE": "backtest", "TRADER_VAR_DIR": str(state_dir), "TRADER_BASE_CURRENCY": base_currency,
                "TRADER_API_TOKEN": secrets.token_urlsafe(24), "TRADER_REPLAY_AUTOSTART": "0",
                "GRPC_VERBOSITY": env.get("GRPC_VERBOSITY", "ERROR")})
    return env


def check_settings(base_env: dict[str, str], base_currency: str) -> None:
    """Every service's settings as a backtest hands them over (`backtest_env`), read by each
    service's own loader, so a malformed variable (TRADER_FX_RATES=USD=abc) is refused with
    ConfigError before anything is created or started. Reads only; nothing is written."""
    from gateway import config as gateway_config  # noqa: PLC0415 - each service's loader, read only here
    from services.data import config as data_config  # noqa: PLC0415
    from services.display import config as display_config  # noqa: PLC0415
    from services.portfolio import config as portfolio_config  # noqa: PLC0415
    from services.trading import config as trading_config  # noqa: PLC0415

    env = backtest_env(base_env, Path(tempfile.gettempdir()) / "trader-backtest-unmade", base_currency)
    for load in (data_config.load, portfolio_config.load, trading_config.load, display_config.load,
                 gateway_config.load, lambda environ: load_common("planner", environ)):
        load(env)


class System:
    """The six services of one backtest, supervised as `make run` supervises them."""

    def __init__(self, env: dict[str, str], state_dir: Path, say: Callable[[str], None]):
        self.env = env
        self.config: CommonConfig = load_common("gateway", env)
        self.log_dir = state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._supervisor = Supervisor(self.config, env, self.log_dir)
        self._say = say

    def start(self, stop: StopRequest) -> None:
        """The services start at once, on a fresh state none needs another to start, except
        trading: its start-up reconciliation may read the data service, so it starts once the
        data service serves (as in START_ORDER)."""
        names = START_ORDER + ("gateway",)
        try:
            for name in names:
                if name != "trading":
                    self._supervisor.spawn(name)
            self._supervisor.await_serving("data", stop)
            self._supervisor.spawn("trading")
            for name in names:
                if name != "data":
                    self._supervisor.await_serving(name, stop)
        except RuntimeError as exc:
            if stop.is_set():
                raise Interrupted(str(exc)) from exc
            raise BacktestFailed(f"the services did not start: {exc}", self.log_dir) from exc

    def check(self) -> None:
        self._supervisor.check()  # restarts a crashed service, as make run does

    def stop(self) -> None:
        self._supervisor.stop_all()


def rpc_cycle(gateway: gateway_pb2_grpc.GatewayStub) -> Callable[[bool], CycleResult]:
    """The gateway's RunSyncCycle (at the caller's simulated instant) as the replay's cycle."""
    def run(settle_only: bool) -> CycleResult:
        reply = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(settle_only=settle_only),
                                     timeout=CYCLE_TIMEOUT_S)
        return result_from_proto(reply)
    return run


def rpc_jobs(gateway: gateway_pb2_grpc.GatewayStub, names: tuple[str, ...]) -> ReplayJobs:
    """The jobs `names` on the gateway's schedules (ListJobs; those not `off`), each run as a
    REPLAY run at its slot: in the day's RunSyncCycle (jobs_before), or through RunJob at the
    caller's simulated instant on a day with deposits."""
    listed = gateway.ListJobs(gateway_pb2.ListJobsRequest(), timeout=CYCLE_TIMEOUT_S).jobs
    schedules = {job.name: parse_schedule(job.schedule, job.time_zone or "UTC") for job in listed if job.name in names}

    def run(name: str) -> tuple[str, str]:
        reply = gateway.RunJob(gateway_pb2.RunJobRequest(name=name, trigger=gateway_pb2.TRIGGER_REPLAY),
                               timeout=CYCLE_TIMEOUT_S)
        return _run_outcome(reply.run)

    def with_cycle(due: list[Due]) -> tuple[CycleResult, list[tuple[str, str]]]:
        reply = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(jobs_before=[
            gateway_pb2.ReplayJobRun(name=item.name, as_of=to_timestamp(item.slot)) for item in due]),
            timeout=CYCLE_TIMEOUT_S)
        if len(reply.job_runs) != len(due):
            raise RuntimeError(f"the gateway answered {len(reply.job_runs)} job runs for the {len(due)} jobs due "
                               "before the cycle (does it know RunSyncCycle's jobs_before?)")
        return result_from_proto(reply), [_run_outcome(run) for run in reply.job_runs]

    return ReplayJobs({name: schedule for name, schedule in schedules.items() if schedule is not None}, run,
                      with_cycle)


def _run_outcome(run: gateway_pb2.JobRun) -> tuple[str, str]:
    """(status as gateway/store.py spells it, detail) of a job run."""
    return gateway_pb2.JobRunStatus.Name(run.status).removeprefix("JOB_"), run.detail


def apply_universe(services: Services, wanted: tuple[str, ...]) -> list[str]:
    """Deactivate every equity not in `wanted` (empty: keep all); returns the universe. An
    unknown symbol is BacktestFailed naming it (nothing is deactivated)."""
    equities = [s.symbol for s in services.data.ListSecurities(data_pb2.ListSecuritiesRequest()).securities]
    if not wanted:
        return sorted(equities)
    unknown = [s for s in wanted if s not in equities]
    if unknown:
        raise BacktestFailed(f"--universe: unknown symbols {', '.join(unknown)}; known: {', '.join(sorted(equities))}")
    for symbol in sorted(set(equities) - set(wanted)):
        services.data.DeactivateSecurity(data_pb2.DeactivateSecurityRequest(symbol=symbol))
    return sorted(set(wanted))


def run_backtest(settings: BacktestSettings, stop: StopRequest, base_env: dict[str, str],
                 on_day: Callable[[DayRecord, int, int], None] = lambda *_: None,
                 say: Callable[[str], None] = print, keep_state: Path | None = None) -> BacktestRun:
    """Run the backtest; `on_day(record, done, total)` after each session. Raises Interrupted
    when `stop` was raised, BacktestFailed when the system failed (the message says why; when it
    names the services' logs, their state directory is kept, even a temporary one). Raises
    ConfigError, before creating anything, when a setting is malformed (`check_settings`); a
    failure that names no logs removes the state directory it made."""
    check_settings(base_env, settings.base_currency)
    made = keep_state is None or not keep_state.exists()
    state_dir = keep_state or Path(tempfile.mkdtemp(prefix="trader-backtest-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    system: System | None = None
    outcome = "failed"  # or "done", "stopped", "logs" (a failure whose message names the services' logs)
    try:
        system = System(backtest_env(base_env, state_dir, settings.base_currency), state_dir, say)
        system.start(stop)
        clients = Clients(system.config)
        try:
            run = _drive(settings, system, clients, stop, on_day)
        finally:
            clients.close()
        outcome = "done"
        return run
    except Interrupted:
        outcome = "stopped"
        raise
    except BacktestFailed as exc:
        outcome = "logs" if exc.logs is not None else "failed"
        raise
    finally:
        if system is not None:
            system.stop()
        # A --keep-state directory stays unless this run made it and failed before naming logs.
        kept = outcome == "logs" or (keep_state is not None and (outcome != "failed" or not made))
        if not kept:
            shutil.rmtree(state_dir, ignore_errors=True)


def _drive(settings: BacktestSettings, system: System, clients: Clients, stop: StopRequest,
           on_day: Callable[[DayRecord, int, int], None]) -> BacktestRun:
    services = Services(clients)
    gateway = clients.stub("gateway", gateway_pb2_grpc.GatewayStub)
    run = BacktestRun(settings, system.config.base_currency, fee_rates=dict(system.config.fx_rates))
    with clock.use_as_of(_instant(settings.start)):
        run.universe = apply_universe(services, settings.universe)
    replay_config = ReplayConfig(autostart=False, start=settings.start, end=settings.end, cycles_per_second=0,
                                 initial_deposit=settings.initial_deposit, monthly_deposit=settings.monthly_deposit,
                                 max_cycles=0, day_tries=3, exchange=settings.exchange,
                                 minutes_before_close=settings.minutes_before_close, jobs=settings.jobs)
    finished = threading.Event()
    outcome: dict = {}
    total = {"days": 0}

    def record(day: SimulatedDay, deposits, result: CycleResult) -> None:
        entry = DayRecord(day.day, day.at, tuple(deposits), result.total_value_base, result.cash_base,
                          result.last_trade, result.trace_id)
        run.days.append(entry)
        run.sessions[day.day] = (day.open, day.close)
        on_day(entry, len(run.days), total["days"])

    stop_replay = threading.Event()
    replay = Replay(replay_config, run.base_currency, services, rpc_cycle(gateway), clients, stop_replay, record,
                    say=lambda text: None, jobs=rpc_jobs(gateway, settings.jobs))

    def drive() -> None:
        try:
            total["days"] = _session_count(services, replay_config)
            outcome["close_out"] = replay.run(settings.start)
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            outcome["error"] = exc
        finally:
            finished.set()
            stop.request("finished")  # wakes the main thread

    started = time.monotonic()
    worker = threading.Thread(target=drive, name="backtest-replay", daemon=True)
    worker.start()
    while not finished.is_set():
        if stop.wait(0.2) and not finished.is_set():
            stop_replay.set()
            worker.join(timeout=CYCLE_TIMEOUT_S)
            raise Interrupted(f"stopped by {stop.reason} after {len(run.days)} sessions")
        system.check()
    worker.join()
    run.seconds = time.monotonic() - started
    if "error" in outcome:
        raise BacktestFailed(f"the replay gave up: {outcome['error']}", system.log_dir) from outcome["error"]
    closed: CycleResult | None = outcome.get("close_out")
    if closed is None:
        raise BacktestFailed("the replay ended before its last session", system.log_dir)
    last = run.days[-1]
    run.close_out = DayRecord(last.day, closed.as_of, (), closed.total_value_base, closed.cash_base, "")
    with clock.use_as_of(closed.as_of):
        _read_results(run, services)
    return run


def _instant(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def _session_count(services: Services, config: ReplayConfig) -> int:
    from gateway.replay import schedule  # noqa: PLC0415 - the same schedule the replay follows

    return len(schedule(services, config, config.start).days)


def _read_results(run: BacktestRun, services: Services) -> None:
    """Everything the report and the audit read, as of the close-out instant."""
    listed = services.data.ListSecurities(data_pb2.ListSecuritiesRequest(include_indices=True)).securities
    run.securities = {s.symbol: SecurityInfo(s.symbol, s.currency, s.exchange, max(1, s.lot_size), s.allow_buy,
                                             s.allow_sell) for s in listed}
    start = run.days[0].day - timedelta(days=HISTORY_MARGIN_DAYS)
    histories = services.data.GetPriceHistories(data_pb2.GetPriceHistoriesRequest(
        symbols=sorted(set(run.universe) | {INDEX}), start=start.isoformat(), end=run.days[-1].day.isoformat(),
        interval=data_pb2.DAILY)).histories
    run.closes = {h.symbol: {date.fromisoformat(b.date): b.close for b in h.bars if not b.flag} for h in histories}
    run.rates = _rates_at(services, [d.at for d in run.days] + [run.close_out.at])
    run.fills = _fills(services)
    run.orders = _orders(services)
    run.flows = _flows(services, run.days[0].day, run.days[-1].day + timedelta(days=7))
    settings = services.trading.GetSettings(trading_pb2.GetSettingsRequest())
    run.risk_settings = {f.name: getattr(settings, f.name) for f in settings.DESCRIPTOR.fields}


def _rates_at(services: Services, instants: list[datetime]) -> dict[datetime, dict[str, float]]:
    """The data service's FX rates as each cycle saw them (its as-of instant), read concurrently."""
    def read(at: datetime) -> tuple[datetime, dict[str, float]]:
        with clock.use_as_of(at):
            reply = services.data.GetFxRates(data_pb2.GetFxRatesRequest())
        return at, {r.currency: r.rate for r in reply.rates if r.rate > 0}

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(read, instants))


def _fills(services: Services) -> list[Fill]:
    found, before = [], 0
    while True:
        page = services.trading.ListTrades(trading_pb2.ListTradesRequest(limit=PAGE, before_id=before)).trades
        found += [Fill(t.id, t.client_order_id, t.symbol, trading_pb2.Side.Name(t.side), t.quantity, t.price,
                       t.currency, t.commission, from_timestamp(t.executed_at, "executed_at")) for t in page]
        if len(page) < PAGE:
            return sorted(found, key=lambda f: (f.executed_at, f.id))
        before = page[-1].id


def _orders(services: Services) -> list[OrderRecord]:
    found, before = [], 0
    while True:
        page = services.trading.ListOrders(trading_pb2.ListOrdersRequest(limit=PAGE, before_id=before)).orders
        found += [OrderRecord(o.id, o.client_order_id, o.symbol, trading_pb2.Side.Name(o.side), o.quantity,
                              trading_pb2.OrderState.Name(o.state), o.reason, o.currency, o.limit_price,
                              from_timestamp(o.created_at, "created_at"), o.filled_quantity) for o in page]
        if len(page) < PAGE:
            return sorted(found, key=lambda o: o.id)
        before = page[-1].id


def _flows(services: Services, first: date, last: date) -> list[Flow]:
    """Every cash flow of the book, a month at a time (each page well under the limit)."""
    flows: list[Flow] = []
    month = date(first.year, first.month, 1)
    while month <= last:
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        page = services.portfolio.ListCashFlows(portfolio_pb2.ListCashFlowsRequest(
            limit=PAGE, start=month.isoformat(), end=(following - timedelta(days=1)).isoformat())).cash_flows
        if len(page) >= PAGE:
            raise BacktestFailed(f"more than {PAGE} cash flows in {month:%Y-%m}: the book cannot be read whole")
        flows += [Flow(f.id, f.kind, f.amount, f.currency, from_timestamp(f.occurred_at, "occurred_at"), f.symbol)
                  for f in page]
        month = following
    return sorted(flows, key=lambda f: (f.at, f.id))  # at one instant, in the order they were booked
