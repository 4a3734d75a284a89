"""Market data: indicators vs TA-Lib on the bundled data, no lookahead, validation, CSV, FX,
universe rules, market hours, regime, and the provider failure paths."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from trader.data.v1 import data_pb2

from services.common import clock
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.data import indicators
from services.data.history import Bar
from services.data.market_hours import exchange_from_name, market_status, session_at
from services.data.regime import market_regime
from services.data.universe import detect_metadata, isin_valid
from services.data.validation import flag_bars
from tests.data_fixtures import FakeProvider, make_servicer, random_walk, security

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def call(method, request, now=NOW):
    with clock.use_as_of(now):
        return method(request, None)


# --- indicators against TA-Lib on the bundled history, through the whole service path ---

@pytest.fixture(scope="module")
def sample_servicer(tmp_path_factory):
    from services.data.adapters.sample_history import load_sample_history

    sample = load_sample_history()
    provider = FakeProvider(bars=sample.bars)
    servicer, _, _ = make_servicer(tmp_path_factory.mktemp("sample"), provider, sample.securities)
    return servicer, sample


def test_the_bundled_sample_as_a_provider(sample_servicer):
    """Read in a child process and kept as arrays: the whole history as the skfolio dataset has
    it, and any date range of it as the bars between its ends."""
    _, sample = sample_servicer
    bars = sample.bars
    assert len(bars) == 21 and len(bars["SP500.IDX"]) == 8313 and bars["KO.US"][0] == Bar(date(1990, 1, 2), 2.235)
    assert all(b.date < c.date for series in bars.values() for b, c in zip(series, series[1:], strict=False))
    unknown = security("MOON.US")
    for start, end in [(None, date(1990, 1, 1)), (None, date(2000, 1, 3)), (date(2008, 9, 13), date(2008, 10, 10)),
                       (date(2022, 12, 28), date(2030, 1, 1)), (date(2020, 3, 17), date(2020, 3, 16))]:
        got = sample.daily_bars([*sample.securities, unknown], start, end)
        assert got == {symbol: [b for b in series if (start is None or b.date >= start) and b.date <= end]
                       for symbol, series in bars.items()} | {"MOON.US": []}


@pytest.mark.parametrize("symbol", ["AAPL.US", "XOM.US"])
@pytest.mark.parametrize("as_of", ["1995-06-30", "2008-10-10", "2020-03-16", "2022-12-28"])
def test_indicators_match_talib_on_bundled_data(sample_servicer, symbol, as_of):
    servicer, sample = sample_servicer
    reply = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol=symbol, as_of=as_of))
    closes = np.array([b.close for b in sample.bars[symbol] if b.date <= date.fromisoformat(as_of)])
    values = reply.values
    assert reply.as_of <= as_of
    assert values["RSI_14"] == pytest.approx(talib.RSI(closes, 14)[-1], rel=1e-12)
    for period in (50, 200):
        assert values[f"EMA_{period}"] == pytest.approx(talib.EMA(closes, period)[-1], rel=1e-12)
        assert values[f"SMA_{period}"] == pytest.approx(talib.SMA(closes, period)[-1], rel=1e-12)
    upper, middle, lower = talib.BBANDS(closes, 20, 2.0, 2.0, 0)
    assert (values["BB_UPPER_20"], values["BB_MIDDLE_20"], values["BB_LOWER_20"]) == pytest.approx(
        (upper[-1], middle[-1], lower[-1]), rel=1e-12)
    assert np.std(closes[-20:]) * 2 == pytest.approx(upper[-1] - middle[-1], rel=1e-9)  # population std
    returns = pd.Series(closes).pct_change().dropna()
    assert values["VOLATILITY_ANNUAL"] == pytest.approx(returns.std() * np.sqrt(252), rel=1e-9)
    assert values["SHARPE"] == pytest.approx(returns.mean() / returns.std() * np.sqrt(252), rel=1e-9)
    series = pd.Series(closes)
    assert values["MAX_DRAWDOWN"] == pytest.approx((series / series.cummax() - 1).min(), rel=1e-12)
    assert values["HIGH_52W"] == pytest.approx(closes[-252:].max()) and values["LOW_52W"] == closes[-252:].min()
    assert values["MOMENTUM_30D"] == pytest.approx(closes[-1] / closes[-31] - 1)
    days = pd.DatetimeIndex([b.date for b in sample.bars[symbol] if b.date <= date.fromisoformat(as_of)])
    monthly = pd.Series(closes, index=days).groupby([days.year, days.month]).mean().to_numpy()
    assert values["CAGR_5Y"] == pytest.approx((monthly[-1] / monthly[-60]) ** (12 / 59) - 1, rel=1e-9)
    for key in ("RSI_14", "EMA_50", "EMA_200", "SMA_50", "SMA_200", "BB_UPPER_20", "BB_MIDDLE_20", "BB_LOWER_20",
                "VOLATILITY_ANNUAL", "SHARPE", "SORTINO", "MAX_DRAWDOWN", "CAGR_5Y", "HIGH_52W", "LOW_52W"):
        assert key in values


def test_indicators_are_cached_and_missing_is_absent(tmp_path):
    provider = FakeProvider(bars={"TEST.US": random_walk(40)})
    servicer, _, _ = make_servicer(tmp_path, provider, [security()])
    first = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="TEST.US"))
    again = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="TEST.US"))
    assert not first.cached and again.cached and dict(first.values) == dict(again.values)
    for absent in ("EMA_50", "EMA_200", "SMA_200", "SHARPE", "CAGR_5Y", "MOMENTUM_90D"):
        assert absent not in first.values  # 40 bars are too few: absent, never 0
    assert {"RSI_14", "BB_UPPER_20", "VOLATILITY_ANNUAL", "MAX_DRAWDOWN"} <= set(first.values)


def test_as_of_after_now_is_refused(tmp_path):
    servicer, _, _ = make_servicer(tmp_path, FakeProvider(bars={"TEST.US": random_walk(300)}), [security()])
    with pytest.raises(InvalidArgument) as caught:
        call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="TEST.US", as_of="2016-01-04"),
             now=datetime(2016, 1, 1, 22, tzinfo=UTC))
    assert caught.value.field == "as_of"
    with pytest.raises(NotFound):
        call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="NOPE.US"))


# --- no lookahead ---

@settings(max_examples=25, deadline=None)
@given(count=st.integers(60, 400), cut=st.floats(0.2, 0.9), seed=st.integers(0, 10_000),
       spike=st.booleans())
def test_metric_as_of_a_date_never_changes_when_later_bars_arrive(tmp_path_factory, count, cut, seed, spike):
    bars = random_walk(count, seed)
    split = int(count * cut)
    as_of = bars[split - 1].date
    later = bars[split:]
    if spike and len(later) > 2:  # a one-day spike right after the date, flagged only later
        later[0] = Bar(later[0].date, later[0].close * 3)
    provider = FakeProvider(bars={"TEST.US": bars[:split]})
    servicer, db, _ = make_servicer(tmp_path_factory.mktemp("nolook"), provider, [security()])
    request = data_pb2.GetIndicatorsRequest(symbol="TEST.US", as_of=as_of.isoformat())
    before = dict(call(servicer.GetIndicators, request).values)
    provider.bars["TEST.US"] = bars[:split] + later
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest())
    after = call(servicer.GetIndicators, request)
    assert dict(after.values) == before


# --- validation ---

def test_spike_is_flagged_kept_and_excluded(tmp_path):
    bars = random_walk(120)
    spiked = bars[:60] + [Bar(bars[60].date, bars[60].close * 2.5)] + bars[61:]
    servicer, _, _ = make_servicer(tmp_path, FakeProvider(bars={"TEST.US": spiked, "CLEAN.US": bars}),
                                   [security(), security("CLEAN.US")])
    history = call(servicer.GetPriceHistory, data_pb2.GetPriceHistoryRequest(symbol="TEST.US"))
    flagged = [b for b in history.bars if b.flag]
    assert [b.date for b in flagged] == [bars[60].date.isoformat()] and flagged[0].flag.startswith("spike: +150%")
    assert len(history.bars) == 120  # kept
    spiky = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="TEST.US")).values
    clean = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="CLEAN.US")).values
    assert spiky["MAX_DRAWDOWN"] == pytest.approx(
        indicators.compute(np.array([b.close for i, b in enumerate(bars) if i != 60]), None, None,
                           np.array([b.date.year * 12 + b.date.month for i, b in enumerate(bars) if i != 60]))[
            "MAX_DRAWDOWN"])
    assert spiky["HIGH_52W"] == clean["HIGH_52W"]  # the spike did not reach the 52-week high


def test_flag_rules():
    day = date(2020, 1, 6)
    bars = [Bar(day, 10), Bar(day + timedelta(days=1), -1), Bar(day + timedelta(days=2), 10, high=9, low=11),
            Bar(day + timedelta(days=30), 10), Bar(day + timedelta(days=31), 10)]
    flags = flag_bars(bars)
    assert flags[0] is None
    assert flags[1].reason.startswith("non_positive") and flags[1].known_on == bars[1].date
    assert flags[2].reason.startswith("inconsistent")
    assert flags[3].reason.startswith("gap: 28 days")
    assert flags[4] is None


@given(st.lists(st.floats(1, 1000), min_size=3, max_size=60))
def test_flags_never_need_later_bars_than_known_on(closes):
    day = date(2021, 1, 4)
    bars = [Bar(day + timedelta(days=i), c) for i, c in enumerate(closes)]
    for i, flag in enumerate(flag_bars(bars)):
        if flag is not None:
            prefix_flags = flag_bars([b for b in bars if b.date <= flag.known_on])
            assert prefix_flags[i] == flag


# --- CSV import ---

CSV = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700
2024-01-03,184.22,185.88,183.43,184.25,183.55,58414500
2024-01-04,182.15,183.09,180.88,181.91,181.22,71983600
2024-01-05,181.99,182.76,180.17,181.18,180.49,62303300
"""


def test_csv_import_round_trip(tmp_path):
    servicer, _, _ = make_servicer(tmp_path, securities=[security("AAPL.US", exchange="XNAS")])
    reply = call(servicer.ImportPrices, data_pb2.ImportPricesRequest(symbol="AAPL.US", csv=CSV))
    assert (reply.bars_added, reply.bars_updated, reply.bars_unchanged) == (4, 0, 0)
    again = call(servicer.ImportPrices, data_pb2.ImportPricesRequest(symbol="AAPL.US", csv=CSV))
    assert (again.bars_added, again.bars_updated, again.bars_unchanged) == (0, 0, 4)  # idempotent
    history = call(servicer.GetPriceHistory, data_pb2.GetPriceHistoryRequest(symbol="AAPL.US"))
    rows = [line.split(",") for line in CSV.strip().splitlines()[1:]]
    assert [(b.date, b.open, b.high, b.low, b.close, b.adj_close, b.volume) for b in history.bars] == \
        [(r[0], *map(float, r[1:])) for r in rows]
    corrected = CSV.replace("181.18,180.49", "181.20,180.51")
    fixed = call(servicer.ImportPrices, data_pb2.ImportPricesRequest(symbol="AAPL.US", csv=corrected))
    assert (fixed.bars_added, fixed.bars_updated, fixed.bars_unchanged) == (0, 1, 3)


@pytest.mark.parametrize(("csv", "fragment"), [
    ("Date,Close\n2024-01-02,1", "missing column"),
    (CSV.replace("184.25", "abc"), "line 3: Close: not a number"),
    (CSV.replace("2024-01-04", "2024-13-04"), "line 4: Date"),
    (CSV + "2024-01-05,1,1,1,1,1,1\n", "appears twice"),
    ("Date,Open,High,Low,Close\n", "no rows"),
    (CSV.replace("82488700", "inf"), "not a finite number"),
])
def test_bad_csv_is_refused_and_stores_nothing(tmp_path, csv, fragment):
    servicer, _, _ = make_servicer(tmp_path, securities=[security("AAPL.US")])
    with pytest.raises(InvalidArgument) as caught:
        call(servicer.ImportPrices, data_pb2.ImportPricesRequest(symbol="AAPL.US", csv=csv))
    assert caught.value.field == "csv" and fragment in caught.value.message
    assert call(servicer.GetPriceHistory, data_pb2.GetPriceHistoryRequest(symbol="AAPL.US")).bars == []


def test_import_for_unknown_symbol(tmp_path):
    servicer, _, _ = make_servicer(tmp_path)
    with pytest.raises(NotFound):
        call(servicer.ImportPrices, data_pb2.ImportPricesRequest(symbol="NOPE.US", csv=CSV))


# --- providers: failures never delete or overwrite ---

def test_failed_sync_keeps_stored_data(tmp_path):
    provider = FakeProvider(bars={"TEST.US": random_walk(100)})
    servicer, _, _ = make_servicer(tmp_path, provider, [security()])
    before = call(servicer.GetPriceHistory, data_pb2.GetPriceHistoryRequest(symbol="TEST.US"))
    provider.fail = True
    with pytest.raises(Unavailable, match="offline"):
        call(servicer.SyncPrices, data_pb2.SyncPricesRequest())
    assert call(servicer.GetPriceHistory, data_pb2.GetPriceHistoryRequest(symbol="TEST.US")) == before


def test_sync_adds_only_new_bars_and_fx(tmp_path):
    bars = random_walk(100)
    provider = FakeProvider(bars={"TEST.US": bars[:80]}, fx={"USD": [(bars[10].date, 1.2), (bars[50].date, 1.3)]})
    servicer, _, _ = make_servicer(tmp_path, provider, [security()])
    provider.bars["TEST.US"] = bars
    reply = call(servicer.SyncPrices, data_pb2.SyncPricesRequest())
    assert (reply.bars_added, reply.bars_updated, reply.provider) == (20, 0, "fake")
    assert reply.latest_bar_date == bars[-1].date.isoformat()
    rates = call(servicer.GetFxRates, data_pb2.GetFxRatesRequest(as_of=bars[30].date.isoformat()))
    assert [(r.currency, r.rate, r.date) for r in rates.rates] == [("USD", 1.2, bars[10].date.isoformat())]
    early = call(servicer.GetFxRates, data_pb2.GetFxRatesRequest(as_of=bars[5].date.isoformat()))
    assert [(r.rate, r.source) for r in early.rates] == [(1.10, "configured")]
    converted = call(servicer.Convert, data_pb2.ConvertRequest(amount=130, from_currency="USD", to_currency="EUR",
                                                               as_of=bars[60].date.isoformat()))
    assert converted.amount == pytest.approx(100) and converted.rate == pytest.approx(1 / 1.3)


def test_convert_refusals(tmp_path):
    servicer, _, _ = make_servicer(tmp_path)
    with pytest.raises(InvalidArgument) as caught:
        call(servicer.Convert, data_pb2.ConvertRequest(amount=1, from_currency="usd", to_currency="EUR"))
    assert caught.value.field == "from_currency"
    with pytest.raises(InvalidArgument):
        call(servicer.Convert, data_pb2.ConvertRequest(amount=float("nan"), from_currency="USD", to_currency="EUR"))
    with pytest.raises(FailedPrecondition, match="fx_rate_missing"):
        call(servicer.Convert, data_pb2.ConvertRequest(amount=1, from_currency="JPY", to_currency="EUR"))


# --- universe ---

def _with_check_digit(body: str) -> str:
    for digit in "0123456789":
        if isin_valid(body + digit):
            return body + digit
    raise AssertionError(body)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
       st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=9, max_size=9), st.integers(2, 11),
       st.integers(1, 9))
def test_isin_check_digit_catches_single_digit_changes(country, body, position, shift):
    """Exactly one check digit fits a body, and changing any one digit breaks it (the Luhn
    guarantee; swapping a letter is not always caught, by the standard's design)."""
    isin = _with_check_digit(country + body)
    assert sum(isin_valid(isin[:-1] + d) for d in "0123456789") == 1
    if isin[position].isdigit():
        changed = isin[:position] + str((int(isin[position]) + shift) % 10) + isin[position + 1:]
        assert not isin_valid(changed)


def test_upsert_detects_metadata_and_keeps_owner_fields(tmp_path):
    provider = FakeProvider(infos={"SAP.DE": {"country": "Germany", "fullExchangeName": "XETRA",
                                              "sector": "Technology", "industry": "Software—Application"}})
    servicer, _, _ = make_servicer(tmp_path, provider)
    saved = call(servicer.UpsertSecurity, data_pb2.UpsertSecurityRequest(security=data_pb2.Security(
        symbol="SAP.DE", name="SAP SE", currency="EUR", isin="DE0007164600", active=True, allow_buy=True)))
    assert (saved.country, saved.exchange, saved.industry, saved.lot_size, saved.bucket) == (
        "Germany", "XETR", "Software—Application", 1, "core")
    mine = call(servicer.UpsertSecurity, data_pb2.UpsertSecurityRequest(security=data_pb2.Security(
        symbol="SAP.DE", name="SAP SE", currency="EUR", isin="DE0007164600", country="Europe", active=True)))
    assert mine.country == "Europe" and mine.exchange == "XETR"
    assert call(servicer.GetSecurity, data_pb2.GetSecurityRequest(isin="DE0007164600")).symbol == "SAP.DE"
    suffix_only = call(servicer.UpsertSecurity, data_pb2.UpsertSecurityRequest(security=data_pb2.Security(
        symbol="OPAP.GR", name="OPAP", currency="EUR", active=True)))
    assert (suffix_only.country, suffix_only.exchange) == ("Greece", "ASEX")
    call(servicer.DeactivateSecurity, data_pb2.DeactivateSecurityRequest(symbol="SAP.DE"))
    listed = call(servicer.ListSecurities, data_pb2.ListSecuritiesRequest())
    assert [s.symbol for s in listed.securities] == ["OPAP.GR"]
    assert [s.symbol for s in call(servicer.ListSecurities, data_pb2.ListSecuritiesRequest(
        include_inactive=True, country="Europe")).securities] == ["SAP.DE"]


@pytest.mark.parametrize(("fields", "field"), [
    ({"isin": "US0378331006"}, "security.isin"),
    ({"lot_size": -2}, "security.lot_size"),
    ({"currency": "usd"}, "security.currency"),
    ({"symbol": "aapl.us"}, "security.symbol"),
    ({"exchange": "NEW YORK"}, "security.exchange"),
    ({"min_portfolio_target": 30, "max_portfolio_target": 10}, "security.min_portfolio_target"),
    ({"max_portfolio_target": 150}, "security.max_portfolio_target"),
    ({"name": " "}, "security.name"),
    ({"kind": 9}, "security.kind"),
])
def test_bad_securities_are_refused_and_nothing_stored(tmp_path, fields, field):
    servicer, _, _ = make_servicer(tmp_path)
    base = dict(symbol="AAPL.US", name="Apple", currency="USD", exchange="XNAS", country="US", industry="Tech")
    with pytest.raises(InvalidArgument) as caught:
        call(servicer.UpsertSecurity, data_pb2.UpsertSecurityRequest(security=data_pb2.Security(**{**base, **fields})))
    assert caught.value.field == field
    assert call(servicer.ListSecurities, data_pb2.ListSecuritiesRequest(include_inactive=True)).securities == []


def test_metadata_detection_rules():
    from services.data.universe import Security

    bare = Security("ABC.US", "ABC", "USD", "", "", "", "")
    detected = detect_metadata(bare, {"fullExchangeName": "NasdaqGS", "sector": "Health"}, exchange_from_name)
    assert (detected.exchange, detected.country, detected.industry) == ("XNAS", "United States", "Health")
    assert detect_metadata(bare, None, exchange_from_name).exchange == ""


# --- market hours (real holidays, half days, lunch breaks) ---

def at(text):
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(("exchange", "moment", "is_open"), [
    ("XNYS", "2024-12-25T15:00:00+00:00", False),   # Christmas
    ("XNYS", "2024-03-29T15:00:00+00:00", False),   # Good Friday
    ("XNYS", "2024-07-03T16:59:00+00:00", True),    # half day: open until 13:00 New York
    ("XNYS", "2024-07-03T17:01:00+00:00", False),
    ("XNYS", "2024-07-05T14:00:00+00:00", True),
    ("XHKG", "2024-03-15T04:30:00+00:00", False),   # lunch break 12:00-13:00 Hong Kong
    ("XHKG", "2024-03-15T05:30:00+00:00", True),
    ("XETR", "2024-12-24T10:00:00+00:00", False),   # Christmas Eve
    ("XLON", "2024-12-24T12:00:00+00:00", True),    # half day: until 12:30 London
    ("XLON", "2024-12-24T12:31:00+00:00", False),
])
def test_market_status_on_real_calendar_days(exchange, moment, is_open):
    assert market_status(exchange, at(moment)).open is is_open


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["XNYS", "XHKG", "XLON", "XASX"]),
       st.datetimes(datetime(2017, 1, 10), datetime(2019, 12, 20), timezones=st.just(UTC)))
def test_session_at_is_the_librarys_next_session(exchange, moment):
    """session_at answers as exchange-calendars' minute_to_session(direction="next"), which it
    replaces to keep the library from building every minute of the span (bench/footprint.py);
    both on a short calendar (instants inside it, as market_status checks), so the library's
    minutes stay small here."""
    cal = short_calendar(exchange)
    stamp = pd.Timestamp(moment)
    assert session_at(cal, stamp) == cal.minute_to_session(stamp.floor("min"), direction="next")


@functools.cache
def short_calendar(exchange):
    return xcals.get_calendar(exchange, start="2017-01-01", end="2019-12-31")


def test_next_open_and_close_around_breaks_and_half_days():
    lunch = market_status("XHKG", at("2024-03-15T04:30:00+00:00"))
    assert (lunch.next_open, lunch.next_close) == (at("2024-03-15T05:00:00+00:00"), at("2024-03-15T08:00:00+00:00"))
    half = market_status("XNYS", at("2024-07-03T16:00:00+00:00"))
    assert half.next_close == at("2024-07-03T17:00:00+00:00") and half.next_open == at("2024-07-05T13:30:00+00:00")


def test_market_status_refusals(tmp_path):
    servicer, _, _ = make_servicer(tmp_path)
    for exchange in ("", "NYSE", "XXXX"):
        with pytest.raises(InvalidArgument) as caught:
            call(servicer.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange=exchange))
        assert caught.value.field == "exchange"
    with pytest.raises(InvalidArgument) as caught:
        call(servicer.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange="XNYS", as_of="noon"))
    assert caught.value.field == "as_of"
    reply = call(servicer.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange="xnys",
                                                                          as_of="2024-07-05T14:00:00Z"))
    assert reply.open and reply.session_date == "2024-07-05"


# --- regime ---

def test_regime_thresholds():
    flat = np.full(250, 100.0)
    assert market_regime(flat[:199]) == ("sideways", None)
    assert market_regime(np.append(flat, 106.0))[0] == "bull"
    assert market_regime(np.append(flat, 94.0))[0] == "bear"
    regime, distance = market_regime(np.append(flat, 103.0))
    assert regime == "sideways" and distance == pytest.approx(103 / ((199 * 100 + 103) / 200) - 1)


def test_regime_from_the_bundled_index(sample_servicer):
    servicer, _ = sample_servicer
    crash = call(servicer.GetMarketRegime, data_pb2.GetMarketRegimeRequest(as_of="2020-03-20"))
    boom = call(servicer.GetMarketRegime, data_pb2.GetMarketRegimeRequest(as_of="2021-06-30"))
    assert (crash.regime, boom.regime) == ("bear", "bull") and crash.index_symbol == "SP500.IDX"


@given(st.lists(st.tuples(st.integers(2000, 2003), st.integers(1, 12), st.floats(0.01, 1e4)), min_size=1,
                max_size=100))
def test_monthly_averages_match_pandas(rows):
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    ordinals = np.array([y * 12 + m for y, m, _ in rows])
    closes = np.array([c for *_, c in rows])
    expected = pd.Series(closes).groupby(ordinals).mean().to_numpy()
    assert indicators.monthly_average_closes(ordinals, closes) == pytest.approx(expected)


prices = st.floats(min_value=1e-4, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(st.dates(date(1990, 1, 1), date(2030, 1, 1)), prices, prices, prices, prices,
                          st.one_of(st.none(), prices), st.one_of(st.none(), st.integers(0, 10**12))),
                min_size=1, max_size=50, unique_by=lambda row: row[0]))
def test_csv_parsing_round_trips(rows):
    from services.data.adapters.csv_import import parse_yahoo_csv

    def cell(value):
        return "null" if value is None else repr(value)

    text = "Date,Open,High,Low,Close,Adj Close,Volume\n" + "".join(
        f"{d.isoformat()},{o!r},{h!r},{lo!r},{c!r},{cell(a)},{cell(v)}\n" for d, o, h, lo, c, a, v in rows)
    bars = parse_yahoo_csv(text)
    assert [(b.date, b.open, b.high, b.low, b.close, b.adj_close, b.volume) for b in bars] == \
        sorted((d, o, h, lo, c, a, None if v is None else float(v)) for d, o, h, lo, c, a, v in rows)


def test_sync_window_and_effective_rates():
    from services.data.fx import effective_rates
    from services.data.history import sync_start

    assert sync_start([date(2024, 5, 10), date(2024, 5, 3)]) == date(2024, 4, 26)
    assert sync_start([date(2024, 5, 10), None]) is None and sync_start([]) is None
    assert sync_start([date(1, 1, 3)]) == date(1, 1, 1)  # a bar imported at the calendar's start
    assert effective_rates({"USD": 1.1, "GBP": 0.85}, {"USD": (1.08, date(2024, 1, 2), "yfinance")}) == {
        "USD": (1.08, "2024-01-02", "yfinance"), "GBP": (0.85, "", "configured")}
