"""Fundamentals in the data service (issue 13 item 1): Yahoo's info read offline from recorded
replies (units normalised), the CSV/JSON import, GetFundamentals without lookahead, the
provider sync; and the data service's 1-year risk keys and bar counts the scoring needs."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trader.data.v1 import data_pb2

from services.common import clock
from services.common.errors import InvalidArgument, NotFound
from services.data import store
from services.data.adapters.yfinance_provider import YFinanceProvider
from services.data.fundamentals import FIELDS, dividend_yield_fraction, from_yahoo_info, parse_import
from services.data.server import MarketDataServicer
from tests.data_fixtures import FakeProvider, make_servicer, random_walk, security

REPLIES = Path(__file__).parent / "fixtures" / "yfinance_info"
NOW = datetime(2018, 2, 15, 22, tzinfo=UTC)


def reply(ticker: str) -> dict:
    return json.loads((REPLIES / f"{ticker}.json").read_text())


def call(method, request, now=NOW):
    with clock.use_as_of(now):
        return method(request, None)


# --- reading Yahoo's info ---

def test_current_reply_dividend_yield_in_percent():
    values = from_yahoo_info(reply("AAPL"), "USD")
    assert values == pytest.approx({
        "trailing_pe": 37.29, "forward_pe": 27.41, "profit_margin": 0.24301, "debt_to_equity": 1.54486,
        "current_ratio": 0.868, "dividend_yield": 0.0046, "payout_ratio": 0.1558,
        "five_year_avg_dividend_yield": 0.0056, "recommendation_key": "buy", "target_mean_price": 245.1})


def test_older_reply_dividend_yield_as_a_fraction():
    values = from_yahoo_info(reply("KO"), "USD")
    assert values["dividend_yield"] == pytest.approx(0.0297)
    assert values["five_year_avg_dividend_yield"] == pytest.approx(0.031)  # always percent
    assert values["debt_to_equity"] == pytest.approx(1.6705)
    assert values["recommendation_key"] == "strong_buy"


def test_without_a_reference_the_yield_is_read_as_percent():
    values = from_yahoo_info(reply("SAP.DE"), "EUR")
    assert values["dividend_yield"] == pytest.approx(0.0101)
    assert values["recommendation_key"] == "strong_buy"  # camel case too
    assert values["five_year_avg_dividend_yield"] is None


@pytest.mark.parametrize("info, expected", [
    ({"dividendYield": 0.0297, "dividendRate": 1.84, "currentPrice": 61.95}, 0.0297),
    ({"dividendYield": 2.97, "dividendRate": 1.84, "currentPrice": 61.95}, 0.0297),
    ({"dividendYield": 0.46, "dividendRate": 1.04, "regularMarketPrice": 227.48}, 0.0046),
    ({"dividendYield": 0.0046, "dividendRate": 1.04, "regularMarketPrice": 227.48}, 0.0046),
    ({"dividendYield": 0.46, "trailingAnnualDividendYield": 0.0044}, 0.0046),
    ({"dividendYield": 0.0044, "trailingAnnualDividendYield": 0.0044}, 0.0044),
    ({"dividendYield": 2.59}, 0.0259),
    ({"dividendYield": 0}, 0.0),
    ({"dividendYield": -1.0}, None),
    ({}, None),
])
def test_dividend_yield_unit_is_told_by_the_implied_yield(info, expected):
    assert dividend_yield_fraction(info) == (pytest.approx(expected) if expected is not None else None)


def test_an_etf_in_pence_keeps_no_target_and_no_recommendation():
    values = from_yahoo_info(reply("VUSA.L"), "GBP")
    assert values == {name: None for name in FIELDS}


def test_values_of_the_wrong_type_or_range_are_unknown():
    assert from_yahoo_info(reply("BAD"), "USD") == {name: None for name in FIELDS}


# --- the import formats ---

CSV = ("symbol,date,trailing_pe,dividend_yield,recommendation_key\n"
       "KO.US,2018-01-02,25.4,0.0297,buy\n"
       "KO.US,2018-03-01,26.0,,strongBuy\n")


def test_csv_and_json_give_the_same_observations():
    from_csv = parse_import(CSV, "csv")
    from_json = parse_import(json.dumps([
        {"symbol": "KO.US", "date": "2018-01-02", "trailing_pe": 25.4, "dividend_yield": 0.0297,
         "recommendation_key": "buy"},
        {"symbol": "KO.US", "date": "2018-03-01", "trailing_pe": 26.0, "dividend_yield": None,
         "recommendation_key": "strongBuy"}]), "")
    strip = lambda items: [(o.symbol, o.field, o.observed_on, o.value) for o in items]  # noqa: E731
    assert strip(from_csv) == strip(from_json)
    assert ("KO.US", "recommendation_key", date(2018, 3, 1), "strong_buy") in strip(from_csv)
    assert len(from_csv) == 5  # the empty cell is not an observation


@pytest.mark.parametrize("content, file_format, fragment", [
    ("symbol,date,pe\nKO.US,2018-01-02,25\n", "csv", "unknown column(s) 'pe'"),
    ("date,trailing_pe\n2018-01-02,25\n", "csv", "no 'symbol' column"),
    ("symbol,date,trailing_pe\nKO.US,2018-01-02,abc\n", "csv", "line 2: trailing_pe: not a number"),
    ("symbol,date,trailing_pe\nKO.US,2018-01-02,inf\n", "csv", "line 2: trailing_pe: not a finite number"),
    ("symbol,date,dividend_yield\nKO.US,2018-01-02,2.97\n", "csv", "line 2: dividend_yield: 2.97 is not a fraction"),
    ("symbol,date,payout_ratio\nKO.US,2018-01-02,-0.1\n", "csv", "line 2: payout_ratio: -0.1 is negative"),
    ("symbol,date,target_mean_price\nKO.US,2018-01-02,0\n", "csv", "target_mean_price: 0 is not a positive price"),
    ("symbol,date,recommendation_key\nKO.US,2018-01-02,moon\n", "csv", "recommendation_key: 'moon' is not one of"),
    ("symbol,date,trailing_pe\nKO.US,02/01/2018,25\n", "csv", "line 2: date: not YYYY-MM-DD"),
    ("symbol,date,trailing_pe\n,2018-01-02,25\n", "csv", "line 2: symbol: is required"),
    ("symbol,date,trailing_pe\nKO.US,2018-01-02\n", "csv", "line 2: expected 3 columns"),
    ("symbol,date,trailing_pe\nKO.US,2018-01-02,25\nKO.US,2018-01-02,26\n", "csv", "also given at line 2"),
    ("symbol,date,trailing_pe\n", "csv", "holds no observation"),
    ('{"symbol": "KO.US"}', "json", "a list of objects"),
    ('[{"symbol": "KO.US", "date": "2018-01-02", "pe": 1}]', "json", "[0]: pe: unknown field"),
    ('[1]', "json", "[0]: is not an object"),
    ('[{"symbol": "KO.US", "date": "2018-01-02", "trailing_pe": "x"}]', "json", "[0]: trailing_pe: not a number"),
    ('[{"symbol": "KO.US", "date": "2018-01-02", "trailing_pe": true}]', "json", "not a number"),
    ("[", "json", "content: not JSON"),
    ("a,b", "xml", "format: 'xml' is not csv or json"),
    ("  \n", "", "content: is empty"),
    ("symbol,date,trailing_pe\nKO.US,2018-01-02," + "1" * 200_000 + "\n", "csv", "not readable as CSV"),
    ("[" * 100_000, "json", "not readable as JSON"),
    ('[{"symbol": "KO.US", "date": "2018-01-02", "trailing_pe": 1' + "0" * 400 + "}]", "json",
     "trailing_pe: not a number"),
])
def test_bad_files_are_refused_naming_the_place(content, file_format, fragment):
    with pytest.raises(InvalidArgument) as refused:
        parse_import(content, file_format)
    assert fragment in refused.value.message


# --- storing and reading, without lookahead ---

def servicer_with(tmp_path, provider=None, securities=None):
    securities = securities or [security("KO.US"), security("AAPL.US", exchange="XNAS")]
    return make_servicer(tmp_path, provider or FakeProvider(), securities)


def fundamentals(servicer, symbols, as_of="", now=NOW):
    reply = call(servicer.GetFundamentals, data_pb2.GetFundamentalsRequest(symbols=symbols, as_of=as_of), now)
    return {f.symbol: f for f in reply.fundamentals}


def test_latest_observation_at_or_before_as_of(tmp_path):
    servicer, db, _ = servicer_with(tmp_path)
    saved = call(servicer.ImportFundamentals, data_pb2.ImportFundamentalsRequest(content=CSV))
    assert (saved.observations_added, saved.observations_updated, list(saved.symbols)) == (5, 0, ["KO.US"])
    before = fundamentals(servicer, ["KO.US", "AAPL.US"], "2017-12-31")["KO.US"]
    assert not before.HasField("trailing_pe") and before.recommendation_key == "" and not before.observed_on
    january = fundamentals(servicer, ["KO.US"], "2018-02-01")["KO.US"]
    assert january.trailing_pe == 25.4 and january.recommendation_key == "buy"
    assert dict(january.observed_on) == {"trailing_pe": "2018-01-02", "dividend_yield": "2018-01-02",
                                         "recommendation_key": "2018-01-02"}
    assert dict(january.sources)["trailing_pe"] == "import"
    march = fundamentals(servicer, ["KO.US"], "2018-03-01", now=datetime(2018, 3, 2, tzinfo=UTC))["KO.US"]
    assert march.trailing_pe == 26.0 and march.recommendation_key == "strong_buy"
    assert march.dividend_yield == pytest.approx(0.0297) and march.observed_on["dividend_yield"] == "2018-01-02"
    # "now" (x-trader-as-of) is 2018-02-15: the March values are not visible, and asking is refused
    assert fundamentals(servicer, ["KO.US"])["KO.US"].trailing_pe == 25.4
    with pytest.raises(InvalidArgument, match="as_of"):
        fundamentals(servicer, ["KO.US"], "2018-03-01")


def test_an_import_again_changes_nothing_and_a_correction_updates(tmp_path):
    servicer, _, _ = servicer_with(tmp_path)
    call(servicer.ImportFundamentals, data_pb2.ImportFundamentalsRequest(content=CSV))
    again = call(servicer.ImportFundamentals, data_pb2.ImportFundamentalsRequest(content=CSV))
    assert (again.observations_added, again.observations_updated, again.observations_unchanged) == (0, 0, 5)
    fixed = call(servicer.ImportFundamentals, data_pb2.ImportFundamentalsRequest(
        content="symbol,date,trailing_pe\nKO.US,2018-01-02,24.9\nKO.US,2018-01-10,24.9\n"))
    assert (fixed.observations_added, fixed.observations_updated, fixed.observations_unchanged) == (0, 1, 1)
    assert fundamentals(servicer, ["KO.US"])["KO.US"].trailing_pe == 24.9


def test_a_refused_import_stores_nothing(tmp_path):
    servicer, db, _ = servicer_with(tmp_path)
    with pytest.raises(NotFound, match="unknown symbols: XXX.US"):
        call(servicer.ImportFundamentals, data_pb2.ImportFundamentalsRequest(
            content="symbol,date,trailing_pe\nKO.US,2018-01-02,25\nXXX.US,2018-01-02,25\n"))
    with pytest.raises(InvalidArgument):
        call(servicer.ImportFundamentals, data_pb2.ImportFundamentalsRequest(
            content="symbol,date,trailing_pe\nKO.US,2018-01-02,25\nKO.US,2018-01-03,abc\n"))
    with db.transaction() as session:
        assert session.query(store.FundamentalRow).count() == 0


def test_get_fundamentals_refusals(tmp_path):
    servicer, _, _ = servicer_with(tmp_path)
    with pytest.raises(InvalidArgument, match=r"symbols\[1\]"):
        fundamentals(servicer, ["KO.US", " "])
    with pytest.raises(NotFound, match="MOON.US"):
        fundamentals(servicer, ["MOON.US"])
    with pytest.raises(InvalidArgument, match="as_of"):
        fundamentals(servicer, ["KO.US"], "2018-13-01")


def test_the_bundled_sample_has_no_fundamentals(tmp_path):
    from services.data.adapters.sample_history import load_sample_history

    sample = load_sample_history()
    servicer, _, _ = make_servicer(tmp_path, FakeProvider(infos={}), sample.securities[:3])
    synced = call(servicer.SyncFundamentals, data_pb2.SyncFundamentalsRequest())
    assert synced.observations_added == 0
    for item in call(servicer.GetFundamentals, data_pb2.GetFundamentalsRequest()).fundamentals:
        assert [f.name for f, _ in item.ListFields()] == ["symbol"]  # every field absent, none 0


# --- the provider sync (yfinance offline) ---

def test_sync_reads_the_yfinance_info_of_each_ticker(tmp_path, monkeypatch):
    infos = {"KO": reply("KO"), "AAPL": reply("AAPL")}
    asked = []
    provider = YFinanceProvider(download=lambda *a, **k: None, ticker_info=lambda t: asked.append(t) or infos[t],
                                attempts=1, first_wait_s=0)
    base, db, _ = servicer_with(tmp_path)
    servicer = MarketDataServicer(base._config, db, provider)
    monkeypatch.setattr(clock, "wall_now", lambda: datetime(2026, 11, 30, 12, tzinfo=UTC))
    synced = call(servicer.SyncFundamentals, data_pb2.SyncFundamentalsRequest(symbols=["KO.US", "AAPL.US"]))
    assert sorted(asked) == ["AAPL", "KO"] and synced.provider == "yfinance"
    assert synced.observed_on == "2026-11-30" and synced.observations_added == 20 and not synced.unavailable
    # observed today (the wall clock): a replay in 2018 does not see it
    assert not fundamentals(servicer, ["KO.US"])["KO.US"].HasField("trailing_pe")
    later = datetime(2026, 12, 1, tzinfo=UTC)
    ko = fundamentals(servicer, ["KO.US"], now=later)["KO.US"]
    assert ko.dividend_yield == pytest.approx(0.0297) and ko.sources["dividend_yield"] == "yfinance"


def test_sync_writes_only_changes_and_records_what_the_provider_no_longer_reports(tmp_path, monkeypatch):
    provider = FakeProvider(infos={"KO.US": reply("KO")})
    servicer, _, _ = servicer_with(tmp_path, provider)
    days = [datetime(2018, 1, d, 12, tzinfo=UTC) for d in (2, 3, 4, 5)]
    outcomes = []
    for day, change in zip(days, [{}, {}, {"trailingPE": 26.5}, {"trailingPE": None}], strict=True):
        provider.infos["KO.US"] = {k: v for k, v in {**reply("KO"), **change}.items() if v is not None}
        monkeypatch.setattr(clock, "wall_now", lambda day=day: day)
        outcomes.append(call(servicer.SyncFundamentals, data_pb2.SyncFundamentalsRequest(symbols=["KO.US"]),
                             now=day).observations_added)
    assert outcomes == [10, 0, 1, 1]
    seen = {d: fundamentals(servicer, ["KO.US"], d.date().isoformat(), now=d)["KO.US"] for d in days}
    assert [seen[d].trailing_pe if seen[d].HasField("trailing_pe") else None for d in days] == [25.4, 25.4, 26.5, None]
    assert seen[days[1]].observed_on["trailing_pe"] == "2018-01-02"  # first seen, not last confirmed


def test_sync_lists_symbols_without_info(tmp_path):
    servicer, _, _ = servicer_with(tmp_path, FakeProvider(infos={}))
    synced = call(servicer.SyncFundamentals, data_pb2.SyncFundamentalsRequest(symbols=["KO.US"]))
    assert list(synced.unavailable) == ["KO.US"]
    with pytest.raises(NotFound):
        call(servicer.SyncFundamentals, data_pb2.SyncFundamentalsRequest(symbols=["MOON.US"]))


# --- the 1-year keys and counts the scoring reads ---

def test_one_year_risk_keys_and_bar_counts(tmp_path):
    bars = random_walk(600, seed=7)
    servicer, _, _ = make_servicer(tmp_path, FakeProvider(bars={"TEST.US": bars}), [security()])
    reply = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="TEST.US"), datetime(2030, 1, 1,
                                                                                                 tzinfo=UTC))
    closes = pd.Series([b.close for b in bars])
    year = closes[-252:]
    values = reply.values
    assert values["MAX_DRAWDOWN_1Y"] == pytest.approx((year / year.cummax() - 1).min(), rel=1e-12)
    assert values["CURRENT_DRAWDOWN_1Y"] == pytest.approx(year.iloc[-1] / year.max() - 1, rel=1e-12)
    assert values["DAYS_IN_DRAWDOWN_1Y"] == 251 - int(np.argmax(year.to_numpy()))
    assert values["VOLATILITY_1Y"] == pytest.approx(year.pct_change().dropna().std() * np.sqrt(252), rel=1e-9)
    months = {(b.date.year, b.date.month) for b in bars}
    assert (reply.daily_bars, reply.monthly_bars) == (600, len(months))
    cached = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="TEST.US"), datetime(2030, 1, 1,
                                                                                                  tzinfo=UTC))
    assert cached.cached and (cached.daily_bars, cached.monthly_bars) == (600, len(months))


def test_a_cache_entry_from_before_the_one_year_keys_is_recomputed(tmp_path):
    servicer, db, _ = make_servicer(tmp_path, FakeProvider(bars={"TEST.US": random_walk(100)}), [security()])
    now = datetime(2030, 1, 1, tzinfo=UTC)
    first = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="TEST.US"), now)
    old = {k: v for k, v in first.values.items() if not k.endswith("_1Y")}
    with db.transaction() as session:
        security_id = store.find_security(session, "TEST.US").id
        store.cache_indicators(session, security_id, date.fromisoformat(first.as_of), old, clock.wall_now())
    again = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="TEST.US"), now)
    assert not again.cached and "MAX_DRAWDOWN_1Y" in again.values


# --- over gRPC: the import CLI and refusals ---

def test_import_cli_over_grpc(tmp_path, capsys, monkeypatch):
    from trader.data.v1 import data_pb2_grpc

    from services.data.import_fundamentals import main
    from tests.helpers import TOKEN, make_config, serving

    servicer, _, _ = servicer_with(tmp_path)
    config = make_config("data")
    monkeypatch.setenv("TRADER_API_TOKEN", TOKEN)
    with serving(config, lambda server: data_pb2_grpc.add_MarketDataServicer_to_server(servicer, server)):
        address = config.address_of("data")
        good = tmp_path / "facts.json"
        good.write_text(json.dumps([{"symbol": "KO.US", "date": "2018-01-02", "trailing_pe": 25.4}]))
        assert main([str(good), "--address", address]) == 0
        assert "KO.US: 1 added, 0 updated, 0 unchanged" in capsys.readouterr().out
        bad = tmp_path / "facts.csv"
        bad.write_text("symbol,date,dividend_yield\nKO.US,2018-01-02,3.1\n")
        assert main([str(bad), "--address", address]) == 1
        assert "INVALID_ARGUMENT: line 2: dividend_yield: 3.1 is not a fraction" in capsys.readouterr().err
        assert main([str(tmp_path / "missing.csv"), "--address", address]) == 2


_SERVICERS: dict = {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["symbol", "date", "trailing_pe", "dividend_yield", "recommendation_key", ",", "\n",
                              "KO.US", "2018-01-02", "1e400", "-0", "nan", '"', "strong buy", "[", "{", "}", "]",
                              ":", "null", "0.5", "\x00"]), max_size=40).map("".join)),
    file_format=st.sampled_from(["", "csv", "json", "CSV", "xml"]))
def test_any_file_is_imported_or_refused_precisely(tmp_path, content, file_format):
    if tmp_path not in _SERVICERS:
        _SERVICERS[tmp_path] = servicer_with(tmp_path)[0]
    servicer = _SERVICERS[tmp_path]
    try:
        call(servicer.ImportFundamentals, data_pb2.ImportFundamentalsRequest(content=content, format=file_format))
    except (InvalidArgument, NotFound):
        pass
