"""`trader`: the command line. Each command is a thin client of the gateway or a service, except
`run` (the services and the replay, as `make run`) and `backtest` (the services over history).

Tables by default, `--json` for the reply as JSON. A refused or failed call prints one line with
its gRPC status (`error: UNAVAILABLE: ...`) and exits with 1; a service that accepts no
connection within CONNECT_TIMEOUT_S is such a line at once (a command's long deadline counts only
once connected); bad arguments and settings exit with 2. The token and the addresses come from
the same variables as the services' (TRADER_API_TOKEN, TRADER_<SERVICE>_ADDR).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from rich.console import Console
from rich.filesize import decimal
from rich.table import Table
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.planner.v1 import planner_pb2, planner_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common import clock
from services.common.client import Clients, open_channel
from services.common.config import (
    SERVICES,
    TLS_CA,
    TLS_CLIENT_CERT,
    TLS_CLIENT_KEY,
    CommonConfig,
    ConfigError,
    Env,
    default_fx_rates,
    load_client_tls,
    load_common,
    parse_fx_rates,
)
from services.common.errors import InvalidArgument
from services.common.interceptors import AUTH_EXEMPT_PREFIXES

# rich_markup_mode=None: a usage error is click's one `Error: ...` line, not a panel wrapped at 80 columns.
app = typer.Typer(help="trader: an autonomous long-term portfolio manager (six gRPC services).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
# Piped or redirected (not a terminal, no COLUMNS), a table keeps each row on one line instead of
# rich's 80-column default, which wrapped and cut cells, so `trader trades > f` or `| grep` sees them whole.
out = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 1000)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # an error stays one line, however long

JsonOption = Annotated[bool, typer.Option("--json", help="Print the reply as JSON.")]
AsOfOption = Annotated[str | None, typer.Option("--as-of", help="Simulated now (ISO 8601, UTC), as a replay sends it.")]
LimitOption = Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first.")]


def fail(text: str, code: int = 1) -> typer.Exit:
    err.print(f"error: {text}", markup=False, soft_wrap=True)  # one line, however narrow the terminal
    return typer.Exit(code)


def config() -> CommonConfig:
    try:
        return load_common("gateway", os.environ)
    except ConfigError as exc:
        raise fail(" ".join(str(exc).split()), 2) from None


CONNECT_TIMEOUT_S = 3.0  # a service that accepts no connection within this is reported UNAVAILABLE


def connected(channel: grpc.Channel, address: str, service: str) -> None:
    """Return once `channel` is connected, within CONNECT_TIMEOUT_S; else fail at once with
    `UNAVAILABLE` naming the service, the address and gRPC's reason (exit code 1). A command's
    long deadline (a cycle's 300 s) is for a connected service's work, never for waiting on a
    service that is not running: every call waits for a connection within its deadline
    (services/common/client.py), which without this check made `trader plan` hang for minutes."""
    try:
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_S)
        return
    except grpc.FutureTimeoutError:
        pass
    try:  # once more without waiting: gRPC's reason (connection refused, a TLS handshake, ...)
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0,
                                                  wait_for_ready=False)
    except grpc.RpcError as exc:
        reason = f": {' '.join((exc.details() or '').split())}" if hasattr(exc, "details") else ""
        raise fail(f"UNAVAILABLE: no connection to {service} at {address} within {CONNECT_TIMEOUT_S:g} s"
                   f"{reason}") from None


class ConnectedClients(Clients):
    """Clients whose stubs are handed out only once their service accepts a connection
    (`connected`)."""

    def __init__(self, settings: CommonConfig):
        super().__init__(settings)
        self._addresses = settings.addresses
        self._connected: set[str] = set()

    def stub(self, service: str, stub_class):
        channel = self.channel(service)
        if service not in self._connected:
            connected(channel, self._addresses[service], service)
            self._connected.add(service)
        return stub_class(channel)


@contextlib.contextmanager
def calling(as_of: str | None = None) -> Iterator[Clients]:
    """Clients to the services (token and addresses from the environment), at `as_of` if given;
    a service that accepts no connection, or a gRPC error, becomes one line with its status and
    exit code 1."""
    moment = None
    if as_of:
        try:
            moment = clock.parse_as_of(as_of, "--as-of")
        except InvalidArgument as exc:
            raise fail(exc.message, 2) from None
    clients = ConnectedClients(config())
    try:
        with clock.use_as_of(moment):
            yield clients
    except grpc.RpcError as exc:
        raise fail(_status(exc)) from None
    finally:
        clients.close()


def _status(exc: grpc.RpcError) -> str:
    if hasattr(exc, "code"):
        return f"{exc.code().name}: {' '.join((exc.details() or '').split())}"
    return str(exc)


def emit(reply: Message, as_json: bool, table: Callable[[], None]) -> None:
    if as_json:
        print(json_format.MessageToJson(reply, preserving_proto_field_name=True))
    else:
        table()


def when(stamp) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M") if stamp.seconds else "-"


# --- the system ---

@app.command()
def run() -> None:
    """Start the six services and the replay of the bundled history (what `make run` does)."""
    from gateway import launch  # noqa: PLC0415 - starts processes; only this command needs it

    raise typer.Exit(launch.main())


@app.command()
def status(log_records: Annotated[int, typer.Option("--log-records", min=0, max=50, help=(
        "The latest warnings and errors to show per service (0: 10)."))] = 0,
           as_json: JsonOption = False) -> None:
    """Each service's health, version, uptime, database and disk, the mode, the last cycle, the
    failing jobs and the latest errors (gateway GetSystemStatus)."""
    with calling() as clients:
        reply = clients.stub("gateway", gateway_pb2_grpc.GatewayStub).GetSystemStatus(
            gateway_pb2.GetSystemStatusRequest(log_records_per_service=log_records), timeout=30)

    def table() -> None:
        services = Table("service", "address", "health", "version", "uptime",
                         title=f"mode {reply.mode}, checked {when(reply.checked_at)} UTC")
        services.columns[0].no_wrap = True
        stores = Table("service", "pid", "database", "rows", "disk free", title="databases and disks")
        for s in reply.services:
            style = None if s.health == "SERVING" else "red"
            version, uptime, *store_cells = _info_cells(s)
            services.add_row(s.service, s.address, s.health, version, uptime, style=style)
            stores.add_row(s.info.service or s.service, *store_cells, style=style)
        out.print(services)
        out.print(stores)
        last = f"{when(reply.last_cycle_as_of)} ({'ok' if reply.last_cycle_ok else 'not ok'}), trace " \
            f"{reply.last_cycle_trace_id}" if reply.cycles_run else "none yet"
        out.print(f"cycles run: {reply.cycles_run}; last cycle: {last}", markup=False)
        if reply.last_cycle_steps:
            steps = Table("step", "status", "ms", "detail", title="the last cycle's steps")
            for step in reply.last_cycle_steps:
                status_name = gateway_pb2.StepStatus.Name(step.status)
                steps.add_row(step.name, status_name, f"{step.duration_ms:,.0f}", step.detail,
                              style={"FAILED": "red", "REFUSED": "yellow"}.get(status_name))
            out.print(steps)
        out.print(f"failing jobs: {', '.join(reply.failing_jobs) or 'none'}", markup=False,
                  style="red" if reply.failing_jobs else None)
        errors = Table("service", "at (UTC)", "level", "logger", "message", title="latest warnings and errors")
        for s in reply.services:
            for record in s.info.log_records:
                errors.add_row(s.info.service or s.service, when(record.at), record.level, record.logger,
                               record.message, style="red" if record.level != "warning" else "yellow")
            if s.info_error:
                errors.add_row(s.service, "-", "unasked", "", s.info_error, style="red")
        if errors.row_count:
            out.print(errors)
        else:
            out.print("latest warnings and errors: none")

    emit(reply, as_json, table)


def _info_cells(status) -> tuple[str, ...]:
    """version, uptime, pid, database, rows, disk free of a ServiceStatus ("-" where unknown)."""
    if not status.HasField("info"):
        return ("-",) * 6
    info = status.info
    database = info.database
    size = f"{database.backend} {decimal(database.size_bytes)}" if not database.error else f"error: {database.error}"
    disk = info.disk
    free = f"{decimal(disk.free_bytes)} of {decimal(disk.total_bytes)}" if not disk.error else f"error: {disk.error}"
    return (info.version, str(timedelta(seconds=int(info.uptime_s))), str(info.pid), size,
            f"{sum(t.rows for t in database.tables):,}", free)


@app.command()
def cycle(as_of: AsOfOption = None, settle_only: Annotated[bool, typer.Option(
        "--settle-only", help="Only the broker's sync and the valuation (no plan, no order).")] = False,
          as_json: JsonOption = False) -> None:
    """Run one sync cycle now (or at --as-of) and show its steps."""
    with calling(as_of) as clients:
        reply = clients.stub("gateway", gateway_pb2_grpc.GatewayStub).RunSyncCycle(
            gateway_pb2.RunSyncCycleRequest(settle_only=settle_only), timeout=300)

    def table() -> None:
        steps = Table("step", "status", "ms", "detail",
                      title=f"cycle at {when(reply.as_of)} UTC, trace {reply.trace_id}")
        for s in reply.steps:
            status_name = gateway_pb2.StepStatus.Name(s.status)
            steps.add_row(s.name, status_name, f"{s.duration_ms:,.0f}", s.detail,
                          style={"FAILED": "red", "REFUSED": "yellow"}.get(status_name))
        out.print(steps)
        out.print(f"value {reply.base_currency} {reply.total_value_base:,.2f}, cash {reply.base_currency} "
                  f"{reply.cash_base:,.2f}; trade: {reply.last_trade or '-'}; {'ok' if reply.ok else 'NOT OK'}")

    emit(reply, as_json, table)
    if not reply.ok:
        raise typer.Exit(1)


@app.command()
def portfolio(as_of: AsOfOption = None, as_json: JsonOption = False) -> None:
    """Positions, cash and value (portfolio GetPortfolio)."""
    with calling(as_of) as clients:
        reply = clients.stub("portfolio", portfolio_pb2_grpc.PortfolioStub).GetPortfolio(
            portfolio_pb2.GetPortfolioRequest())

    def table() -> None:
        base = reply.base_currency
        positions = Table("symbol", "quantity", "price", "price date", f"value {base}", "average cost",
                          title=f"portfolio {reply.portfolio_hash}")
        for p in reply.positions:
            positions.add_row(p.symbol, f"{p.quantity:,}", f"{p.price:,.2f} {p.currency}", p.price_date,
                              f"{p.market_value_base:,.2f}", f"{p.average_cost:,.2f}")
        for c in reply.cash:
            positions.add_row(f"cash {c.currency}", "", "", "", f"{c.amount_base:,.2f}", "")
        out.print(positions)
        out.print(f"total {base} {reply.total_value_base:,.2f} (positions {reply.positions_value_base:,.2f}, "
                  f"cash {reply.cash_base:,.2f})")

    emit(reply, as_json, table)


@app.command()
def plan(as_of: AsOfOption = None, as_json: JsonOption = False) -> None:
    """The plan for the current state (planner GetRecommendations): its steps, in order."""
    with calling(as_of) as clients:
        reply = clients.stub("planner", planner_pb2_grpc.PlannerStub).GetRecommendations(
            planner_pb2.GetRecommendationsRequest(), timeout=300)

    def table() -> None:
        steps = Table("#", "side", "symbol", "quantity", "price", "value (base)", "reason",
                      title=f"plan {reply.plan_id} ({reply.method or 'no method'}{', cached' if reply.cached else ''})")
        for number, s in enumerate(reply.steps, start=1):
            steps.add_row(str(number), planner_pb2.Side.Name(s.side), s.symbol, f"{s.quantity:,}",
                          f"{s.estimated_price:,.2f} {s.currency}", f"{s.estimated_value_base:,.2f}", s.reason)
        out.print(steps)
        for note in reply.notes:
            out.print(f"- {note}", markup=False)

    emit(reply, as_json, table)


@app.command()
def orders(limit: LimitOption = 20, as_json: JsonOption = False) -> None:
    """The newest orders with their state (trading ListOrders)."""
    with calling() as clients:
        reply = clients.stub("trading", trading_pb2_grpc.TradingStub).ListOrders(
            trading_pb2.ListOrdersRequest(limit=limit))

    def table() -> None:
        rows = Table("id", "created (UTC)", "side", "quantity", "symbol", "state", "fill", "reason")
        for o in reply.orders:
            rows.add_row(str(o.id), when(o.created_at), trading_pb2.Side.Name(o.side), f"{o.quantity:,}", o.symbol,
                         trading_pb2.OrderState.Name(o.state),
                         f"{o.fill_price:,.2f} {o.currency}" if o.filled_quantity else "-", o.reason)
        out.print(rows)

    emit(reply, as_json, table)


@app.command()
def trades(limit: LimitOption = 20, as_json: JsonOption = False) -> None:
    """The newest fills (trading ListTrades)."""
    with calling() as clients:
        reply = clients.stub("trading", trading_pb2_grpc.TradingStub).ListTrades(
            trading_pb2.ListTradesRequest(limit=limit))

    def table() -> None:
        rows = Table("id", "executed (UTC)", "side", "quantity", "symbol", "price", "commission")
        for t in reply.trades:
            rows.add_row(str(t.id), when(t.executed_at), trading_pb2.Side.Name(t.side), f"{t.quantity:,}", t.symbol,
                         f"{t.price:,.2f} {t.currency}", f"{t.commission:,.2f}")
        out.print(rows)

    emit(reply, as_json, table)


# --- jobs ---

job_app = typer.Typer(help="One job of the gateway: run it now, or its history.", no_args_is_help=True,
                      rich_markup_mode=None)
app.add_typer(job_app, name="job")
JobName = Annotated[str, typer.Argument(help="A job of `trader jobs`, e.g. maintenance.")]
RUN_TIMEOUT_S = 3600.0  # RunJob answers when the job has ended (a maintenance backs up every database)


def run_status(status: int) -> str:
    """OK, FAILED, SKIPPED, RUNNING; `never ran` for a job without a run."""
    return gateway_pb2.JobRunStatus.Name(status).removeprefix("JOB_") if status else "never ran"


def _run_style(status: int) -> str | None:
    return {gateway_pb2.JOB_FAILED: "red", gateway_pb2.JOB_SKIPPED: "yellow"}.get(status)


def _runs_table(runs, title: str) -> Table:
    rows = Table("id", "job", "as of (UTC)", "trigger", "status", "seconds", "detail", title=title)
    rows.columns[1].no_wrap = True
    for r in runs:
        trigger = gateway_pb2.JobTrigger.Name(r.trigger).removeprefix("TRIGGER_") if r.trigger else "-"
        rows.add_row(str(r.id), r.job, when(r.as_of) + (" (simulated)" if r.simulated else ""), trigger,
                     run_status(r.status), f"{r.duration_ms / 1000:,.1f}", r.detail, style=_run_style(r.status))
    return rows


@app.command()
def jobs(as_of: AsOfOption = None, as_json: JsonOption = False) -> None:
    """Every job: its schedule, next run, last run, status and failures in the last hour (gateway
    ListJobs)."""
    with calling(as_of) as clients:
        reply = clients.stub("gateway", gateway_pb2_grpc.GatewayStub).ListJobs(gateway_pb2.ListJobsRequest())

    def table() -> None:
        rows = Table("job", "schedule", "next run", "last run", "status", "fails 1h", "health",
                     title=f"jobs (scheduler: {reply.scheduler}; times UTC)")
        rows.columns[0].no_wrap = True
        for job in reply.jobs:
            status = run_status(job.status) + (", running" if job.running else "")
            zone = f" ({job.time_zone})" if job.schedule != "off" and "CRON_TZ=" not in job.schedule else ""
            rows.add_row(job.name, job.schedule + zone,
                         when(job.next_run), when(job.last_run.as_of), status, str(job.failures_last_hour),
                         job.health, style="red" if job.health != "SERVING" else _run_style(job.status))
        out.print(rows)

    emit(reply, as_json, table)


@job_app.command(name="run")
def job_run(name: JobName, as_of: AsOfOption = None, as_json: JsonOption = False) -> None:
    """Run a job now (or at --as-of) and show its run; exit code 1 when it failed (gateway RunJob)."""
    with calling(as_of) as clients:
        reply = clients.stub("gateway", gateway_pb2_grpc.GatewayStub).RunJob(
            gateway_pb2.RunJobRequest(name=name), timeout=RUN_TIMEOUT_S)
    emit(reply, as_json, lambda: out.print(_runs_table([reply.run], f"{name}, trace {reply.run.trace_id}")))
    if reply.run.status == gateway_pb2.JOB_FAILED:
        raise typer.Exit(1)


@job_app.command(name="history")
def job_history(name: Annotated[str, typer.Argument(help="A job of `trader jobs`; empty: every job.")] = "",
                limit: LimitOption = 20, as_json: JsonOption = False) -> None:
    """A job's runs, newest first (gateway GetJobHistory)."""
    with calling() as clients:
        reply = clients.stub("gateway", gateway_pb2_grpc.GatewayStub).GetJobHistory(
            gateway_pb2.GetJobHistoryRequest(name=name, limit=limit))
    emit(reply, as_json, lambda: out.print(_runs_table(reply.runs, f"runs of {name or 'every job'}, newest first")))


# --- any RPC ---

def _target(target: str, address: str | None) -> tuple[str | None, str, str]:
    """(service key, full service name, method) of `data/GetQuotes` or
    `trader.data.v1.MarketData/GetQuotes`; the method is "" for a service alone. Any other full
    name (`grpc.health.v1.Health/List`) needs --address, and has no key."""
    service, _, method = target.rpartition("/") if "/" in target else (target, "", "")
    for key, (full, _) in SERVICES.items():
        if service in (key, full):
            return key, full, method
    if address and "." in service:
        return None, service, method
    known = ", ".join(f"{key} ({full})" for key, (full, _) in SERVICES.items())
    raise fail(f"{target!r}: unknown service {service!r}; one of {known} (another service's full name with "
               "--address)", 2)


def _call_settings(key: str | None, address: str | None, tls_flags: dict[str, str | None], needs_token: bool):
    """(address, token or None, TLS or None) from the flags and the environment. A call that
    needs the token (any method but health's and reflection's) is refused without one, as every
    other command refuses it: exit code 2, one line (TRADER_AUTH_DISABLED=1 as the services)."""
    environ = {**os.environ, **{name: value for name, value in tls_flags.items() if value}}
    try:
        tls = load_client_tls(environ)
        # The addresses and the token; TLS is the client's alone (load_client_tls), not a server's pairing.
        plain = {name: value for name, value in environ.items() if not name.startswith("TRADER_TLS_")}
        settings = load_common("gateway", plain if needs_token else {**plain, "TRADER_AUTH_DISABLED": "1"})
    except ConfigError as exc:
        raise fail(" ".join(str(exc).split()), 2) from None
    return address or settings.address_of(key), settings.api_token if needs_token else None, tls


@app.command(name="call")
def call_rpc(target: Annotated[str, typer.Argument(help="SERVICE/METHOD, e.g. trading/ListTrades or "
                                                       "trader.trading.v1.Trading/ListTrades")],
             body: Annotated[str, typer.Argument(help="The request as JSON.")] = "{}",
             as_of: AsOfOption = None,
             timeout: Annotated[float, typer.Option(help="Seconds.")] = 60.0,
             address: Annotated[str | None, typer.Option(help="Instead of TRADER_<SERVICE>_ADDR.")] = None,
             cacert: Annotated[str | None, typer.Option(help=f"CA bundle that signed the server's certificate "
                                                             f"(default ${TLS_CA}).")] = None,
             cert: Annotated[str | None, typer.Option(help=f"Client certificate for mutual TLS (default "
                                                           f"${TLS_CLIENT_CERT}).")] = None,
             key_file: Annotated[str | None, typer.Option("--key", help=f"Its private key (default "
                                                                        f"${TLS_CLIENT_KEY}).")] = None,
             as_json: Annotated[bool, typer.Option("--json", help="Accepted as by every command; the reply is "
                                                                  "always JSON.")] = False) -> None:
    """Call any RPC by name with a JSON body (server reflection: no .proto files needed); a
    service alone lists its methods. TLS as grpcurl's flags, or the TRADER_TLS_* variables."""
    del as_json  # the reply is printed as JSON either way
    key, service, method = _target(target, address)
    address, token, tls = _call_settings(key, address, {TLS_CA: cacert, TLS_CLIENT_CERT: cert,
                                                        TLS_CLIENT_KEY: key_file},
                                         needs_token=bool(method) and f"/{service}/" not in AUTH_EXEMPT_PREFIXES)
    try:
        metadata = [(clock.METADATA_KEY, clock.format_as_of(clock.parse_as_of(as_of, "--as-of")))] if as_of else []
    except InvalidArgument as exc:
        raise fail(exc.message, 2) from None
    try:
        with open_channel(address, token, timeout, tls) as channel:
            connected(channel, address, key or service)
            pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
            if not method:
                print("\n".join(f"{service}/{m.name}" for m in pool.FindServiceByName(service).methods))
                return
            descriptor = pool.FindServiceByName(service).FindMethodByName(method)
            request_class = message_factory.GetMessageClass(descriptor.input_type)
            response_class = message_factory.GetMessageClass(descriptor.output_type)
            request = json_format.Parse(body, request_class())
            rpc = channel.unary_unary(f"/{service}/{method}", request_serializer=request_class.SerializeToString,
                                      response_deserializer=response_class.FromString)
            reply = rpc(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        raise fail(_status(exc)) from None
    except KeyError:
        raise fail(f"{service} has no method {method!r}" if method else f"{address} does not serve {service}", 2) \
            from None
    except json_format.ParseError as exc:
        raise fail(f"bad request: {exc}", 2) from None
    print(json_format.MessageToJson(reply, preserving_proto_field_name=True))


@app.command(name="import-prices")
def import_prices(symbol: Annotated[str, typer.Argument(help="Broker symbol, e.g. AAPL.US (must exist).")],
                  file: Annotated[Path, typer.Argument(help="Yahoo CSV: Date,Open,High,Low,Close[,Adj Close],Volume.")],
                  dividends: Annotated[bool, typer.Option("--dividends", help="The file is Date,Dividends.")] = False,
                  as_json: JsonOption = False) -> None:
    """Import daily bars (or dividends) from a CSV file into the market-data service."""
    try:
        text = file.read_text()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}", 2) from None
    with calling() as clients:
        stub = clients.stub("data", data_pb2_grpc.MarketDataStub)
        if dividends:
            reply = stub.ImportDividends(data_pb2.ImportDividendsRequest(symbol=symbol, csv=text), timeout=120)
            line = f"{symbol}: {reply.added} dividends added, {reply.updated} updated, {reply.unchanged} unchanged"
        else:
            reply = stub.ImportPrices(data_pb2.ImportPricesRequest(symbol=symbol, csv=text), timeout=120)
            line = (f"{symbol}: {reply.bars_added} added, {reply.bars_updated} updated, {reply.bars_unchanged} "
                    f"unchanged, {reply.bars_flagged} flagged")
    emit(reply, as_json, lambda: out.print(line))


# --- backtest ---

def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=f"'{option}'") from None


def _amount(most: float) -> Callable[[float], float]:
    """An amount option's check: a finite number from 0 to `most` (click's own range check
    refuses NaN with a wrong reason, "less than or equal to")."""
    def check(value: float) -> float:
        if not math.isfinite(value):
            raise typer.BadParameter(f"{value} is not a finite amount")
        if not 0 <= value <= most:
            raise typer.BadParameter(f"{value:g} is outside 0..{most:g}")
        return value
    return check


def _path(value: str | None) -> Path | None:
    """A path option's check: an empty value is refused (as a path it would mean the current
    directory: `--out ""` wrote the report there)."""
    if value is None:
        return None
    if not value.strip():
        raise typer.BadParameter("an empty path; give a directory (`.` for the current one)")
    return Path(value)


@app.command()
def backtest(
        start: Annotated[str, typer.Option(help="First session (YYYY-MM-DD).")] = "2018-01-02",
        end: Annotated[str | None, typer.Option(help="Last session (YYYY-MM-DD); default: the data's last close.")]
        = None,
        initial_deposit: Annotated[float, typer.Option(callback=_amount(1e9),
                                                       help="Base currency, before the first session.")] = 10_000.0,
        monthly_deposit: Annotated[float, typer.Option(callback=_amount(1e7),
                                                       help="Base currency, on the first session of each month.")]
        = 1_000.0,
        base_currency: Annotated[str, typer.Option(help="The account's currency (ISO code).")] = "EUR",
        universe: Annotated[str, typer.Option(help="Comma-separated symbols, or @FILE with one a line; "
                                                   "default: the bundled sample's 20 stocks.")] = "",
        out_dir: Annotated[str, typer.Option("--out", callback=_path, help="Where the report goes.")] = "report",
        keep_state: Annotated[str | None, typer.Option(callback=_path, help=(
            "Keep the services' databases and logs in this directory (default: a temporary one, removed)."))]
        = None) -> None:
    """Run the whole system over history and write the report (strategy against two benchmarks,
    rule audit, plots) to --out."""
    from gateway.backtest import BacktestSettings, check_settings  # noqa: PLC0415 - heavy imports: this command only
    from gateway.config import replay_jobs  # noqa: PLC0415

    environment = Env(os.environ)
    jobs = replay_jobs(environment)
    try:
        environment.check()
    except ConfigError as exc:
        raise fail(" ".join(str(exc).split()), 2) from None
    settings = BacktestSettings(_day(start, "--start"), _day(end, "--end") if end else None, initial_deposit,
                                monthly_deposit, base_currency.upper(), _universe(universe), jobs=jobs)
    if settings.end is not None and settings.end < settings.start:
        raise typer.BadParameter(f"{settings.end} is before --start {settings.start}", param_hint="'--end'")
    if len(settings.base_currency) != 3 or not settings.base_currency.isalpha():
        raise typer.BadParameter(f"--base-currency {base_currency!r}: an ISO code such as EUR")
    try:  # every service's settings as the backtest hands them over, before anything is made
        check_settings(dict(os.environ), settings.base_currency)
    except ConfigError as exc:
        raise fail(" ".join(str(exc).split()), 2) from None
    _check_backtest_inputs(settings)
    if keep_state is not None:
        _check_state_dir(keep_state)
    made = _check_out_dir(out_dir)
    code = 1
    try:
        code = _run_and_report(settings, out_dir, keep_state)
    finally:
        if code not in (0, 3):  # no report: the directories made for it go again
            _remove_empty(made)
    raise typer.Exit(code)


def _remove_empty(directories: list[Path]) -> None:
    """Remove each of `directories` (deepest first) while it is empty; never anything else."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


def _run_and_report(settings, out_dir: Path, keep_state: Path | None) -> int:
    """The backtest with a progress bar, then the report and its summary. Exit code 0, or 1 when
    the system failed, 3 when the rule audit found violations, 130 when stopped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    from gateway import report  # noqa: PLC0415
    from gateway.backtest import BacktestFailed, Interrupted, run_backtest  # noqa: PLC0415
    from services.common.shutdown import StopRequest  # noqa: PLC0415

    stop = StopRequest()
    stop.install()  # Ctrl-C or SIGTERM stops the replay and every service
    seen = {"orders": 0, "first": 0.0}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        # Redrawn 4 times a second (rich: 10): enough for a day counter, less of the driver's CPU.
        with Progress(*columns, console=out, transient=False, refresh_per_second=4) as progress:
            task = progress.add_task("starting the six services", total=None)

            def on_day(record, done: int, total: int) -> None:
                now = time.monotonic()
                if not seen["first"]:  # the services serve: the report's libraries load beside the replay
                    threading.Thread(target=report.preload, name="report-preload", daemon=True).start()
                seen["first"] = seen["first"] or now
                seen["orders"] += bool(record.trade)
                rate = (done - 1) / (now - seen["first"]) if done > 1 else 0.0
                progress.update(task, total=total, completed=done, description=(
                    f"{record.day}  value {settings.base_currency} {record.value_base:>12,.0f}  "
                    f"orders {seen['orders']:>5,}  {rate:5.1f} cycles/s"))

            run = run_backtest(settings, stop, dict(os.environ), on_day, lambda text: progress.console.print(text),
                               keep_state)
    except Interrupted as exc:
        err.print(f"backtest stopped: {exc}; every service was stopped", markup=False)
        return 130
    except BacktestFailed as exc:
        err.print(f"error: {exc}", markup=False)
        return 1
    written = report.write(run, out_dir)
    _summary(run, written)
    # What is loaded now (the report's libraries: SciPy, scikit-learn, matplotlib) lives until the
    # process exits: out of the collector's reach, the exit's collections need not sweep it.
    gc.freeze()
    return 3 if written.violations else 0


def _summary(run, written) -> None:
    from gateway.report import FIGURES, formatted  # noqa: PLC0415

    base = run.base_currency
    table = Table("figure", *[f["line"] for f in written.figures],
                  title=f"{run.days[0].day} to {run.days[-1].day}: {len(run.days):,} sessions in {run.seconds:,.0f} s "
                        f"({len(run.days) / max(run.seconds, 1e-9):.1f} cycles/s)")
    for key in FIGURES:
        label = key.replace("_", " ") + (f" ({base})" if key in ("final_value", "net_deposits", "fees_paid") else "")
        table.add_row(label, *[formatted(key, f[key]) for f in written.figures])
    out.print(table)
    count = len(written.violations)
    out.print(f"rule audit: {len(run.fills):,} trades re-checked, {count} violations",
              style="bold green" if count == 0 else "bold red")
    for v in written.violations:
        out.print(f"  {v.at:%Y-%m-%d %H:%M} {v.side} {v.quantity} {v.symbol}: {v.rule}: {v.detail}", markup=False)
    out.print("report: " + ", ".join(str(path) for path in written.files), markup=False)


def _check_backtest_inputs(settings) -> None:
    """A backtest starts from a fresh state holding only the bundled sample, valued through the
    ECB's reference rates: dates outside the sample, a range without a session of the primary
    exchange, symbols that are not the sample's equities or a currency without rates are
    refused before anything starts."""
    from services.common import templates  # noqa: PLC0415
    from services.data.adapters.ecb_rates import latest_fixing  # noqa: PLC0415 - this command only
    from services.data.adapters.sample_history import FIRST_CLOSE, LAST_CLOSE, load_sample_history  # noqa: PLC0415
    from services.data.market_hours import sessions  # noqa: PLC0415

    templates.enable()  # the bundled history as the data service reads it: kept in var/cache/, not re-read
    for option, day in (("--start", settings.start), ("--end", settings.end)):
        if day is not None and not FIRST_CLOSE <= day <= LAST_CLOSE:
            raise typer.BadParameter(f"{option} {day}: outside the bundled history ({FIRST_CLOSE} to {LAST_CLOSE})")
    end = settings.end or LAST_CLOSE
    if not sessions(settings.exchange, settings.start, end):
        raise typer.BadParameter(f"--start {settings.start} to --end {end}: no {settings.exchange} session "
                                 "(a weekend or holiday); give a range holding at least one")
    if settings.universe:
        equities = {s.symbol for s in load_sample_history().securities if s.kind == "EQUITY"}
        unknown = [s for s in settings.universe if s not in equities]
        if unknown:
            raise typer.BadParameter(f"--universe: not an equity of the bundled sample: {', '.join(unknown)} "
                                     f"(known: {', '.join(sorted(equities))})")
    known = {"EUR", *latest_fixing()[1]}
    if settings.base_currency not in known:
        raise typer.BadParameter(f"--base-currency {settings.base_currency}: the ECB publishes no reference rate "
                                 f"for it (known: {', '.join(sorted(known))})")
    _check_fee_rates(settings.base_currency, {s.currency for s in load_sample_history().securities
                                              if not settings.universe or s.symbol in settings.universe})


def _check_fee_rates(base: str, currencies: set[str]) -> None:
    """The paper broker charges its fee (a fixed part in the base currency) converted at the
    configured rates, TRADER_FX_RATES, as the benchmarks do: each currency of the universe needs
    one (a GBP account's USD fills failed on the second session without)."""
    text = os.environ.get("TRADER_FX_RATES", default_fx_rates(base))
    try:
        rates = parse_fx_rates(text, base)
    except ValueError:
        return  # check_settings has refused it already, naming the problem
    missing = sorted(c for c in currencies if c != base and c not in rates)
    if missing:
        raise typer.BadParameter(f"--base-currency {base}: the paper broker converts its fee at TRADER_FX_RATES, "
                                 f"which has no rate for {', '.join(missing)}; set it, e.g. "
                                 f"TRADER_FX_RATES={missing[0]}=<{missing[0]} per {base}>")


def _check_state_dir(state_dir: Path) -> None:
    """--keep-state must be a new or empty directory: a backtest starts from a fresh state, and
    an earlier run's databases there would be carried into this one's report."""
    if state_dir.exists() and (not state_dir.is_dir() or any(state_dir.iterdir())):
        raise typer.BadParameter(f"--keep-state {state_dir}: " + ("exists and is not a directory"
                                 if not state_dir.is_dir() else "is not empty (a backtest starts from a fresh "
                                 "state); give a new or empty directory"))


def _check_out_dir(out_dir: Path) -> list[Path]:
    """--out must be a directory the report can be written to: made now if missing, so a run is
    never lost to an unwritable path at its end. Returns the directories it made, deepest first."""
    if out_dir.exists() and not out_dir.is_dir():
        raise typer.BadParameter(f"--out {out_dir}: exists and is not a directory")
    made = [path for path in (out_dir.absolute(), *out_dir.absolute().parents) if not path.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        _remove_empty(made)
        raise typer.BadParameter(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
    return made


def _universe(value: str) -> tuple[str, ...]:
    """The symbols of --universe (comma-separated, or @FILE with one a line), in order, once each;
    () when the option is left out (the whole sample). A given value naming no symbol (",,", an
    empty file) is refused rather than read as the whole sample."""
    given = value
    if value.startswith("@"):
        try:
            value = ",".join(Path(value[1:]).read_text().split())
        except OSError as exc:
            raise typer.BadParameter(f"{given}: {exc.strerror}", param_hint="'--universe'") from None
    symbols = tuple(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    if given and not symbols:
        raise typer.BadParameter(f"{given!r} names no symbol; give comma-separated symbols or @FILE with one a "
                                 "line, or leave the option out for the whole sample", param_hint="'--universe'")
    return symbols


def main() -> None:  # pragma: no cover - `python -m gateway.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
