"""Bad input over gRPC: a precise status naming the field, and nothing changed."""

import json
import math

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.display.v1 import display_pb2, display_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from tests.helpers import TOKEN

pytestmark = pytest.mark.e2e
AUTH = [("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", "2018-01-02T22:00:00+00:00")]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def refused(call, request, code, fragment="", metadata=None):
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=metadata or AUTH, timeout=10)
    assert caught.value.code() == code, caught.value.details()
    assert fragment in caught.value.details()
    return caught.value.details()


@pytest.fixture(scope="module")
def stubs(running_suite):
    return {
        "data": data_pb2_grpc.MarketDataStub(running_suite.channel("data")),
        "portfolio": portfolio_pb2_grpc.PortfolioStub(running_suite.channel("portfolio")),
        "trading": trading_pb2_grpc.TradingStub(running_suite.channel("trading")),
        "display": display_pb2_grpc.DisplayStub(running_suite.channel("display")),
    }


# --- market data ---

@pytest.mark.parametrize(("request_kwargs", "code", "fragment"), [
    ({"symbol": "NOPE.US"}, grpc.StatusCode.NOT_FOUND, "NOPE.US"),
    ({"symbol": ""}, grpc.StatusCode.INVALID_ARGUMENT, "symbol"),
    ({"symbol": "AAPL.US", "start": "2020-1-1"}, grpc.StatusCode.INVALID_ARGUMENT, "start"),
    ({"symbol": "AAPL.US", "end": "tomorrow"}, grpc.StatusCode.INVALID_ARGUMENT, "end"),
    ({"symbol": "AAPL.US", "start": "2020-02-01", "end": "2020-01-01"}, grpc.StatusCode.INVALID_ARGUMENT, "start"),
    ({"symbol": "AAPL.US", "interval": 7}, grpc.StatusCode.INVALID_ARGUMENT, "interval"),
])
def test_price_history_refusals(stubs, request_kwargs, code, fragment):
    refused(stubs["data"].GetPriceHistory, data_pb2.GetPriceHistoryRequest(**request_kwargs), code, fragment)


def test_history_never_shows_the_future(stubs):
    reply = stubs["data"].GetPriceHistory(data_pb2.GetPriceHistoryRequest(symbol="AAPL.US", start="2017-12-01",
                                                                          end="2030-01-01"), metadata=AUTH)
    assert reply.bars[-1].date == "2018-01-02" and not reply.bars[-1].HasField("open")
    monthly = stubs["data"].GetPriceHistory(data_pb2.GetPriceHistoryRequest(
        symbol="AAPL.US", start="2017-01-01", interval=data_pb2.MONTHLY), metadata=AUTH)
    assert len(monthly.bars) == 13 and monthly.bars[-1].date == "2018-01-02"


def test_quotes_refusals(stubs):
    refused(stubs["data"].GetQuotes, data_pb2.GetQuotesRequest(symbols=["AAPL.US", "NOPE.US"]),
            grpc.StatusCode.NOT_FOUND, "NOPE.US")
    refused(stubs["data"].GetQuotes, data_pb2.GetQuotesRequest(symbols=["AAPL.US", ""]),
            grpc.StatusCode.INVALID_ARGUMENT, "symbols[1]")
    quotes = stubs["data"].GetQuotes(data_pb2.GetQuotesRequest(), metadata=AUTH).quotes
    assert len(quotes) == 20 and all(q.date == "2018-01-02" for q in quotes)


# --- portfolio ---

def cash_flow_count(stubs):
    return len(stubs["portfolio"].ListCashFlows(portfolio_pb2.ListCashFlowsRequest(), metadata=AUTH).cash_flows)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"amount": 0, "reference": "r"}, "amount"), ({"amount": -5, "reference": "r"}, "amount"),
    ({"amount": math.nan, "reference": "r"}, "amount"), ({"amount": math.inf, "reference": "r"}, "amount"),
    ({"amount": 10, "currency": "eur", "reference": "r"}, "currency"), ({"amount": 10}, "reference"),
])
def test_deposit_refusals_change_nothing(stubs, kwargs, field):
    before = cash_flow_count(stubs)
    refused(stubs["portfolio"].RecordDeposit, portfolio_pb2.RecordDepositRequest(**kwargs),
            grpc.StatusCode.INVALID_ARGUMENT, field)
    assert cash_flow_count(stubs) == before


def test_deposit_is_idempotent_by_reference(stubs):
    first = stubs["portfolio"].RecordDeposit(portfolio_pb2.RecordDepositRequest(amount=100, reference="once"),
                                             metadata=AUTH)
    again = stubs["portfolio"].RecordDeposit(portfolio_pb2.RecordDepositRequest(amount=100, reference="once"),
                                             metadata=AUTH)
    assert first.id == again.id and first.currency == "EUR"
    refused(stubs["portfolio"].RecordDeposit, portfolio_pb2.RecordDepositRequest(amount=101, reference="once"),
            grpc.StatusCode.ALREADY_EXISTS, "once")


@given(amount=st.floats(allow_nan=True, allow_infinity=True), currency=st.text(max_size=4),
       reference=st.text(max_size=140))
@FUZZ
def test_deposit_never_fails_internally(stubs, amount, currency, reference):
    try:
        stubs["portfolio"].RecordDeposit(portfolio_pb2.RecordDepositRequest(
            amount=amount, currency=currency, reference=reference), metadata=AUTH, timeout=10)
    except grpc.RpcError as exc:
        refused_by_rule = exc.code() == grpc.StatusCode.FAILED_PRECONDITION and exc.details().startswith(
            "fx_rate_missing:")  # a currency without a rate could never be valued
        assert refused_by_rule or exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS), \
            exc.details()


def test_broker_state_refusals(stubs):
    bad = [
        (portfolio_pb2.ApplyBrokerStateRequest(positions=[portfolio_pb2.BrokerPosition(
            symbol="A.US", quantity=-1, currency="USD")]), "positions[0].quantity"),
        (portfolio_pb2.ApplyBrokerStateRequest(positions=[portfolio_pb2.BrokerPosition(
            symbol="", quantity=1, currency="USD")]), "positions[0].symbol"),
        (portfolio_pb2.ApplyBrokerStateRequest(cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=math.nan)]),
         "cash[0].amount"),
        (portfolio_pb2.ApplyBrokerStateRequest(cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=1),
                                                     portfolio_pb2.BrokerCash(currency="EUR", amount=2)]),
         "cash[1].currency"),
    ]
    before = stubs["portfolio"].GetPortfolio(portfolio_pb2.GetPortfolioRequest(), metadata=AUTH)
    for request, field in bad:
        refused(stubs["portfolio"].ApplyBrokerState, request, grpc.StatusCode.INVALID_ARGUMENT, field)
    assert stubs["portfolio"].GetPortfolio(portfolio_pb2.GetPortfolioRequest(), metadata=AUTH) == before


# --- trading ---

def order_count(stubs):
    return len(stubs["trading"].ListOrders(trading_pb2.ListOrdersRequest(), metadata=AUTH).orders)


@pytest.mark.parametrize(("kwargs", "code", "fragment"), [
    ({"client_order_id": "", "symbol": "AAPL.US", "side": trading_pb2.BUY, "quantity": 1},
     grpc.StatusCode.INVALID_ARGUMENT, "client_order_id"),
    ({"client_order_id": "b1", "symbol": "AAPL.US", "side": trading_pb2.SIDE_UNSPECIFIED, "quantity": 1},
     grpc.StatusCode.INVALID_ARGUMENT, "side"),
    ({"client_order_id": "b2", "symbol": "AAPL.US", "side": trading_pb2.BUY, "quantity": 0},
     grpc.StatusCode.INVALID_ARGUMENT, "quantity"),
    ({"client_order_id": "b3", "symbol": "AAPL.US", "side": trading_pb2.BUY, "quantity": -4},
     grpc.StatusCode.INVALID_ARGUMENT, "quantity"),
    ({"client_order_id": "b4", "symbol": "", "side": trading_pb2.BUY, "quantity": 1},
     grpc.StatusCode.INVALID_ARGUMENT, "symbol"),
    ({"client_order_id": "b5", "symbol": "NOPE.US", "side": trading_pb2.BUY, "quantity": 1},
     grpc.StatusCode.NOT_FOUND, "NOPE.US"),
])
def test_bad_orders_store_and_send_nothing(stubs, kwargs, code, fragment):
    before = order_count(stubs)
    refused(stubs["trading"].SubmitOrder, trading_pb2.SubmitOrderRequest(**kwargs), code, fragment)
    assert order_count(stubs) == before


def held(stubs, symbol: str) -> int:
    """The broker's holding of `symbol` now: other tests share these services and may have bought it."""
    positions = stubs["trading"].SyncBroker(trading_pb2.SyncBrokerRequest(), metadata=AUTH).positions
    return sum(p.quantity for p in positions if p.symbol == symbol)


def test_rule_refusals_are_recorded_on_the_order(stubs):
    submit = stubs["trading"].SubmitOrder
    market_hours = [AUTH[0], ("x-trader-as-of", "2018-01-03T17:00:00+00:00")]  # 12:00 New York
    details = refused(submit, trading_pb2.SubmitOrderRequest(client_order_id="r1", symbol="KO.US",
                                                             side=trading_pb2.SELL, quantity=held(stubs, "KO.US") + 1),
                      grpc.StatusCode.FAILED_PRECONDITION, "holding", metadata=market_hours)
    assert details.startswith("holding:")
    closed = refused(submit, trading_pb2.SubmitOrderRequest(client_order_id="r0", symbol="KO.US",
                                                            side=trading_pb2.SELL, quantity=1),
                     grpc.StatusCode.FAILED_PRECONDITION, "market_closed")
    assert closed.startswith("market_closed: XNYS is closed")
    refused(submit, trading_pb2.SubmitOrderRequest(client_order_id="r2", symbol="KO.US", side=trading_pb2.BUY,
                                                   quantity=10_000_000), grpc.StatusCode.FAILED_PRECONDITION, "cash")
    refused(submit, trading_pb2.SubmitOrderRequest(client_order_id="r3", symbol="SP500.IDX", side=trading_pb2.BUY,
                                                   quantity=1), grpc.StatusCode.FAILED_PRECONDITION, "allow_buy")
    recent = {o.client_order_id: o for o in stubs["trading"].ListOrders(trading_pb2.ListOrdersRequest(),
                                                                        metadata=AUTH).orders}
    for cid, rule in (("r0", "market_closed"), ("r1", "holding"), ("r2", "cash"), ("r3", "allow_buy")):
        assert recent[cid].state == trading_pb2.REJECTED and recent[cid].reason.startswith(rule)
    refused(submit, trading_pb2.SubmitOrderRequest(client_order_id="r1", symbol="KO.US", side=trading_pb2.BUY,
                                                   quantity=1), grpc.StatusCode.ALREADY_EXISTS, "r1")


def test_manual_order_fills_once(stubs):
    """A manual order placed after the close works until the next session's close (the paper
    broker fills market-on-close), is filled at the first sync after it, and only once."""
    before = held(stubs, "KO.US")
    stubs["trading"].FundPaperAccount(trading_pb2.FundPaperAccountRequest(amount=5000, reference="fund-manual"),
                                      metadata=AUTH)
    order = stubs["trading"].SubmitOrder(trading_pb2.SubmitOrderRequest(
        client_order_id="manual-1", symbol="KO.US", side=trading_pb2.BUY, quantity=10), metadata=AUTH)
    assert order.state == trading_pb2.SUBMITTED and order.limit_price > 0
    refused(stubs["trading"].SubmitOrder, trading_pb2.SubmitOrderRequest(
        client_order_id="manual-1", symbol="KO.US", side=trading_pb2.BUY, quantity=10),
        grpc.StatusCode.ALREADY_EXISTS, "manual-1")
    after_the_close = [AUTH[0], ("x-trader-as-of", "2018-01-03T22:00:00+00:00")]
    filled = stubs["trading"].SyncBroker(trading_pb2.SyncBrokerRequest(), metadata=after_the_close)
    assert filled.trades_imported >= 1
    trades = stubs["trading"].ListTrades(trading_pb2.ListTradesRequest(), metadata=after_the_close).trades
    mine = [t for t in trades if t.client_order_id == "manual-1"]
    assert len(mine) == 1 and mine[0].price > 0 and mine[0].commission > 0
    assert mine[0].executed_at.ToDatetime().isoformat() == "2018-01-03T21:00:00"  # the close
    synced = stubs["trading"].SyncBroker(trading_pb2.SyncBrokerRequest(), metadata=after_the_close)
    assert synced.trades_imported == 0  # already in the ledger: never imported twice
    assert any(p.symbol == "KO.US" and p.quantity == before + 10 for p in synced.positions)


@given(quantity=st.integers(min_value=-2**63, max_value=2**63 - 1), side=st.integers(0, 5),
       symbol=st.sampled_from(["KO.US", "", "NOPE", "SP500.IDX"]))
@FUZZ
def test_orders_never_fail_internally(stubs, quantity, side, symbol):
    try:
        stubs["trading"].SubmitOrder(trading_pb2.SubmitOrderRequest(
            client_order_id=f"fuzz-{quantity}-{side}-{symbol}", symbol=symbol, side=side, quantity=quantity),
            metadata=AUTH, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS), exc.details()


# --- display ---

@pytest.mark.parametrize(("kwargs", "field"), [
    ({"pool": display_pb2.POOL_UNSPECIFIED, "text": "x"}, "pool"), ({"pool": 9, "text": "x"}, "pool"),
    ({"pool": display_pb2.ERROR, "text": " "}, "text"), ({"pool": display_pb2.ERROR, "text": "x" * 201}, "text"),
    ({"pool": display_pb2.ERROR, "text": "x", "ttl_seconds": -1}, "ttl_seconds"),
])
def test_display_refusals(stubs, kwargs, field):
    before = stubs["display"].GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH)
    refused(stubs["display"].PostMessage, display_pb2.PostMessageRequest(**kwargs), grpc.StatusCode.INVALID_ARGUMENT,
            field)
    assert stubs["display"].GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH) == before


def test_display_pools(stubs):
    display = stubs["display"]
    display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.NEXT_ACTIONS, text="EUR 1"), metadata=AUTH)
    shown = display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.ERROR, text="SYNC FAILED",
                                                               ttl_seconds=60), metadata=AUTH)
    assert (shown.pool, shown.text) == (display_pb2.ERROR, "SYNC FAILED") and shown.HasField("expires_at")
    shown = display.ClearMessage(display_pb2.ClearMessageRequest(pool=display_pb2.ERROR), metadata=AUTH)
    assert (shown.pool, shown.text) == (display_pb2.NEXT_ACTIONS, "EUR 1")


# --- the trader command line against the running services ---

def trader(suite, *args: str, token: str | None = TOKEN):
    """`trader ARGS` in-process (typer's runner), with the suite's addresses and token."""
    from typer.testing import CliRunner

    from gateway.cli import app

    env = {f"TRADER_{name.upper()}_ADDR": address for name, address in suite.addresses.items()}
    env["TRADER_API_TOKEN"] = token or "not-the-token-at-all"
    return CliRunner().invoke(app, list(args), env=env)


def test_trader_call_lists_and_calls(running_suite):
    listed = trader(running_suite, "call", "data")
    assert listed.exit_code == 0 and "trader.data.v1.MarketData/GetQuotes" in listed.stdout
    reply = trader(running_suite, "call", "trader.data.v1.MarketData/GetQuotes", '{"symbols": ["KO.US"]}',
                   "--as-of", "2018-01-02T22:00:00Z")
    assert reply.exit_code == 0 and '"date": "2018-01-02"' in reply.stdout
    refused = trader(running_suite, "call", "data/GetQuotes", "{}", token="x" * 20)
    assert refused.exit_code == 1 and refused.stderr.startswith("error: UNAUTHENTICATED")
    unknown = trader(running_suite, "call", "bank/GetMoney")
    assert unknown.exit_code == 2 and "unknown service 'bank'" in unknown.stderr
    bad = trader(running_suite, "call", "data/GetQuotes", "{not json")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: bad request")


def test_trader_commands_are_tables_or_json(running_suite):
    status = trader(running_suite, "status")
    assert status.exit_code == 0 and "trader.trading.v1.Trading" in status.stdout and "SERVING" in status.stdout
    as_json = trader(running_suite, "status", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["mode"] == "replay"
    for command in (["portfolio", "--as-of", "2018-01-03T20:30:00Z"], ["orders"], ["trades"]):
        shown = trader(running_suite, *command)
        assert shown.exit_code == 0, shown.output
        assert isinstance(json.loads(trader(running_suite, *command, "--json").stdout), dict)
    plan = trader(running_suite, "plan", "--as-of", "2018-01-03T20:30:00Z", "--json")
    assert plan.exit_code == 0 and "plan_id" in json.loads(plan.stdout)
    refused = trader(running_suite, "orders", "--limit", "0")
    assert refused.exit_code == 2
    bad_time = trader(running_suite, "portfolio", "--as-of", "yesterday")
    assert bad_time.exit_code == 2 and "--as-of" in bad_time.stderr


def test_trader_import_prices_refuses_a_bad_file(running_suite, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Close\n2018-01-02,abc\n")
    refused = trader(running_suite, "import-prices", "KO.US", str(bad))
    assert refused.exit_code == 1 and refused.stderr.startswith("error: INVALID_ARGUMENT")
    missing = trader(running_suite, "import-prices", "KO.US", str(tmp_path / "missing.csv"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


# --- market data over gRPC: the new RPCs and the import CLI ---

def test_market_data_rpcs_over_grpc(stubs, tmp_path, capsys, running_suite, monkeypatch):
    from services.data.import_prices import main as import_main

    data = stubs["data"]
    security = data.GetSecurity(data_pb2.GetSecurityRequest(isin="US0378331005"), metadata=AUTH)
    assert security.symbol == "AAPL.US" and security.exchange == "XNAS" and security.bucket == "core"
    values = data.GetIndicators(data_pb2.GetIndicatorsRequest(symbol="AAPL.US"), metadata=AUTH).values
    assert values["SMA_200"] > 0 and "RSI_14" in values
    metrics = data.GetMetrics(data_pb2.GetMetricsRequest(symbols=["KO.US", "PG.US"]), metadata=AUTH).metrics
    assert [m.symbol for m in metrics] == ["KO.US", "PG.US"] and all(m.as_of == "2018-01-02" for m in metrics)
    status = data.GetMarketStatus(data_pb2.GetMarketStatusRequest(exchange="XNYS"), metadata=AUTH)
    assert not status.open and status.session_date == "2018-01-03"  # 22:00 UTC: after the close
    assert data.GetMarketRegime(data_pb2.GetMarketRegimeRequest(), metadata=AUTH).regime == "bull"
    refused(data.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange="MOON"), grpc.StatusCode.INVALID_ARGUMENT,
            "exchange")
    refused(data.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="AAPL.US", as_of="2019-01-01"),
            grpc.StatusCode.INVALID_ARGUMENT, "as_of")
    refused(data.UpsertSecurity, data_pb2.UpsertSecurityRequest(security=data_pb2.Security(
        symbol="X.US", name="X", currency="USD", isin="US0378331006")), grpc.StatusCode.INVALID_ARGUMENT, "isin")

    data.UpsertSecurity(data_pb2.UpsertSecurityRequest(security=data_pb2.Security(
        symbol="CSV.US", name="Imported", currency="USD", exchange="XNYS", country="United States",
        industry="Test", active=True)), metadata=AUTH)
    csv = tmp_path / "csv.csv"
    csv.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2017-12-28,10,11,9,10.5,10.4,100\n"
                   "2017-12-29,10.5,11,10,10.8,10.7,120\n")
    converted = data.Convert(data_pb2.ConvertRequest(amount=120.65, from_currency="USD", to_currency="EUR"),
                             metadata=AUTH)  # at the ECB's EUR/USD 1.2065 of 2018-01-02, not the configured 1.10
    assert converted.amount == pytest.approx(100) and converted.rate == pytest.approx(1 / 1.2065)
    configured = data.Convert(data_pb2.ConvertRequest(amount=110, from_currency="USD", to_currency="EUR",
                                                      as_of="1998-12-31"), metadata=AUTH)  # before the ECB's
    assert configured.amount == pytest.approx(100)
    refused(data.Convert, data_pb2.ConvertRequest(amount=1, from_currency="JPY", to_currency="EUR"),
            grpc.StatusCode.FAILED_PRECONDITION, "fx_rate_missing")
    listed = data.ListSecurities(data_pb2.ListSecuritiesRequest(exchange="XNAS"), metadata=AUTH).securities
    assert {s.symbol for s in listed} == {"AAPL.US", "AMD.US", "MSFT.US", "PEP.US"}
    monkeypatch.setenv("TRADER_API_TOKEN", TOKEN)
    assert import_main(["CSV.US", str(csv), "--address", running_suite.addresses["data"]]) == 0
    assert "2 added, 0 updated, 0 unchanged" in capsys.readouterr().out
    csv.write_text("Date,Open,High,Low,Close\n2017-12-28,10,11,9,oops\n")
    assert import_main(["CSV.US", str(csv), "--address", running_suite.addresses["data"]]) == 1
    assert "line 2: Close: not a number" in capsys.readouterr().err
    gone = data.DeactivateSecurity(data_pb2.DeactivateSecurityRequest(symbol="CSV.US"), metadata=AUTH)
    assert not gone.active
    assert "CSV.US" not in {s.symbol for s in data.ListSecurities(data_pb2.ListSecuritiesRequest(),
                                                                   metadata=AUTH).securities}
    refused(data.DeactivateSecurity, data_pb2.DeactivateSecurityRequest(symbol="NOPE.US"), grpc.StatusCode.NOT_FOUND,
            "NOPE.US")


# --- trading: settings, dry runs, status, orders ---

def test_trading_settings_over_grpc(stubs):
    trading = stubs["trading"]
    before = trading.GetSettings(trading_pb2.GetSettingsRequest(), metadata=AUTH)
    assert (before.max_trades_per_day, before.min_hold_days, before.price_band) == (4, 90, 0.05)
    refused(trading.UpdateSettings, trading_pb2.UpdateSettingsRequest(price_band=0.5, max_trades_per_day=3),
            grpc.StatusCode.INVALID_ARGUMENT, "settings.price_band")
    assert trading.GetSettings(trading_pb2.GetSettingsRequest(), metadata=AUTH) == before  # nothing changed
    changed = trading.UpdateSettings(trading_pb2.UpdateSettingsRequest(max_trades_per_day=3), metadata=AUTH)
    assert changed.max_trades_per_day == 3 and changed.price_band == 0.05
    trading.UpdateSettings(trading_pb2.UpdateSettingsRequest(max_trades_per_day=4), metadata=AUTH)


def test_check_order_is_a_dry_run(stubs):
    trading = stubs["trading"]
    trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(amount=1000, reference="dry-run-fund"), metadata=AUTH)
    before = order_count(stubs)
    later = [AUTH[0], ("x-trader-as-of", "2018-01-10T22:00:00+00:00")]  # clear of the other tests' trades
    verdict = trading.CheckOrder(trading_pb2.SubmitOrderRequest(client_order_id="dry-1", symbol="PG.US",
                                                                side=trading_pb2.BUY, quantity=2), metadata=later)
    assert verdict.allowed and verdict.quantity == 2 and verdict.currency == "USD"
    assert verdict.limit_price == pytest.approx(verdict.reference_price * 1.05)
    no = trading.CheckOrder(trading_pb2.SubmitOrderRequest(client_order_id="dry-2", symbol="PG.US",
                                                           side=trading_pb2.SELL, quantity=2), metadata=later)
    assert (no.allowed, no.rule) == (False, "market_closed") and no.detail.startswith("market_closed:")
    band = trading.CheckOrder(trading_pb2.SubmitOrderRequest(client_order_id="dry-3", symbol="PG.US",
                                                             side=trading_pb2.BUY, quantity=2, limit_price=1.0),
                              metadata=later)
    assert (band.allowed, band.rule) == (False, "price_band")
    refused(trading.CheckOrder, trading_pb2.SubmitOrderRequest(client_order_id="dry-4", symbol="PG.US",
                                                               side=trading_pb2.BUY, quantity=2, limit_price=-5),
            grpc.StatusCode.INVALID_ARGUMENT, "limit_price")
    assert order_count(stubs) == before


def test_trading_status_and_order_lookup(stubs):
    trading = stubs["trading"]
    status = trading.GetTradingStatus(trading_pb2.GetTradingStatusRequest(), metadata=AUTH)
    assert status.mode == "replay" and status.broker == "paper" and status.trading_enabled and status.reconciled
    assert status.breaker in ("normal", "not_armed") and status.HasField("next_trade_allowed_at")
    refused(trading.GetOrder, trading_pb2.GetOrderRequest(client_order_id="never"), grpc.StatusCode.NOT_FOUND,
            "never")
    refused(trading.GetOrder, trading_pb2.GetOrderRequest(), grpc.StatusCode.INVALID_ARGUMENT, "id")
    final = (trading_pb2.FILLED, trading_pb2.CANCELLED, trading_pb2.REJECTED)
    # the newest final order: an earlier test's cycle may have left a market-on-close order open
    rejected = next(o for o in trading.ListOrders(trading_pb2.ListOrdersRequest(), metadata=AUTH).orders
                    if o.state in final)
    refused(trading.CancelOrder, trading_pb2.GetOrderRequest(id=rejected.id), grpc.StatusCode.FAILED_PRECONDITION,
            "order_final")
