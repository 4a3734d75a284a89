"""Bar validation (issue 8 item 1): every kind of bad bar is flagged with its reason, kept, and
left out of quotes and metrics; a series re-based by its provider is replaced, not mixed."""

from __future__ import annotations

import itertools
import math
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from trader.data.v1 import data_pb2

from services.common import clock
from services.data import engine, store
from services.data.history import Bar, Rebase, rebase_factors, rebased
from services.data.market_hours import session_days
from services.data.validation import flag_bars
from tests.data_fixtures import FakeProvider, business_days, make_servicer, random_walk, security

NOW = datetime(2030, 1, 1, tzinfo=UTC)
XNYS = session_days("XNYS")


RELEASE = Path(__file__).parent / "fixtures" / "release_e46d249"


def call(method, request, now=NOW):
    with clock.use_as_of(now):
        return method(request, None)


def history(servicer, symbol="TEST.US", now=NOW):
    return call(servicer.GetPriceHistory, data_pb2.GetPriceHistoryRequest(symbol=symbol), now)


def quote(servicer, symbol="TEST.US", now=NOW):
    return call(servicer.GetQuotes, data_pb2.GetQuotesRequest(symbols=[symbol]), now).quotes[0]


def indicators(servicer, symbol="TEST.US", now=NOW, as_of=""):
    return dict(call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol=symbol, as_of=as_of), now).values)


def imported(tmp_path, csv: str, exchange="XNYS"):
    servicer, db, provider = make_servicer(tmp_path, securities=[security(exchange=exchange)])
    call(servicer.ImportPrices, data_pb2.ImportPricesRequest(symbol="TEST.US", csv=csv))
    return servicer, db, provider


# --- the examples ---

def test_close_outside_its_own_range_is_inconsistent(tmp_path):
    servicer, _, _ = imported(tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n"
                                        "2022-12-21,101.0,102.5,100.5,102.0,102.0,1000\n"
                                        "2022-12-22,102.5,103.0,101.5,110.0,110.0,1000\n")
    bars = history(servicer).bars
    assert [b.flag.split(":")[0] for b in bars] == ["", "inconsistent"]
    assert bars[1].flag == "inconsistent: close 110 above high 103" and bars[1].close == 110.0  # kept
    latest = quote(servicer)
    assert (latest.price, latest.date) == (102.0, "2022-12-21")


def test_non_positive_adjusted_close_is_flagged_and_no_metric_leaves_its_range(tmp_path):
    servicer, _, _ = imported(tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n"
                                        "2022-12-21,50.0,51.0,49.5,50.8,-1.2,1000\n")
    [bar] = history(servicer).bars
    assert bar.flag == "non_positive: adj_close -1.2"
    assert indicators(servicer) == {}  # no valid bar: no PRICE -1.2, nothing at all
    reply = call(servicer.GetQuotes, data_pb2.GetQuotesRequest(symbols=["TEST.US"]))
    assert list(reply.unavailable) == ["TEST.US"] and not reply.quotes


def test_a_monday_bar_labelled_sunday_never_leaks_into_a_replay(tmp_path):
    friday, sunday = date(2022, 12, 16), date(2022, 12, 18)
    servicer, _, _ = imported(tmp_path, "Date,Open,High,Low,Close\n"
                                        f"{friday},100,101,99,100\n{sunday},120,121,119,120\n")
    monday_morning = datetime(2022, 12, 19, 15, tzinfo=UTC)  # 10:00 New York, before Monday's close
    latest = quote(servicer, now=monday_morning)
    assert (latest.price, latest.date) == (100.0, friday.isoformat())
    assert history(servicer, now=monday_morning).bars[-1].flag == \
        "no_session: Sunday 2022-12-18 was not a trading session"
    assert indicators(servicer, now=monday_morning).get("PRICE") == 100.0


def test_a_holiday_bar_is_flagged_for_its_own_exchange_only(tmp_path):
    csv = "Date,Open,High,Low,Close\n2024-07-03,10,11,9,10\n2024-07-04,10,11,9,10.5\n"  # US Independence Day
    us, _, _ = imported(tmp_path / "us", csv, exchange="XNYS")
    london, _, _ = imported(tmp_path / "london", csv, exchange="XLON")
    assert history(us).bars[-1].flag.startswith("no_session: Thursday 2024-07-04")
    assert history(london).bars[-1].flag == ""


def test_moving_a_security_to_another_exchange_revalidates_its_bars(tmp_path):
    servicer, _, _ = imported(tmp_path, "Date,Open,High,Low,Close\n2024-07-03,10,11,9,10\n2024-07-04,10,11,9,10.5\n")
    assert quote(servicer).date == "2024-07-03"
    moved = data_pb2.Security(symbol="TEST.US", name="Test", currency="USD", exchange="XLON", country="UK",
                              industry="Software", active=True)
    call(servicer.UpsertSecurity, data_pb2.UpsertSecurityRequest(security=moved))
    assert history(servicer).bars[-1].flag == "" and quote(servicer).date == "2024-07-04"


@pytest.mark.parametrize("factor", [1 / 100, 100, 1 / 1000])
def test_a_lasting_unit_change_is_flagged_for_as_long_as_it_lasts(tmp_path, factor):
    """Pence to pounds (1/100) and the reverse; a step that stays is not a spike: every bar of
    the new level is flagged and the security keeps its last valid quote."""
    bars = random_walk(120, price=1000.0)
    stepped = bars[:80] + [bar._replace(close=bar.close * factor) for bar in bars[80:]]
    servicer, _, _ = make_servicer(tmp_path, FakeProvider(bars={"TEST.US": stepped}), [security()])
    flags = [b.flag for b in history(servicer).bars]
    assert flags[:80] == [""] * 80
    assert all(flag.startswith("unit_change: close") for flag in flags[80:])
    assert quote(servicer).date == bars[79].date.isoformat()
    values = indicators(servicer)
    assert values["PRICE"] == pytest.approx(bars[79].close) and values["MAX_DRAWDOWN"] > -0.5


def test_a_unit_sized_spike_that_comes_back_costs_only_its_bar(tmp_path):
    bars = random_walk(60)
    spiked = bars[:30] + [bars[30]._replace(close=bars[30].close * 100)] + bars[31:]
    servicer, _, _ = make_servicer(tmp_path, FakeProvider(bars={"TEST.US": spiked}), [security()])
    flagged = [(b.date, b.flag.split(":")[0]) for b in history(servicer).bars if b.flag]
    assert flagged == [(bars[30].date.isoformat(), "unit_change")]


# --- every other input of the same kinds ---

DAY = date(2024, 3, 4)  # a Monday


@pytest.mark.parametrize(("bar", "reason"), [
    (Bar(DAY, 10, open=12, high=11, low=9), "inconsistent: open 12 above high 11"),
    (Bar(DAY, 10, open=8.5, high=11, low=9), "inconsistent: open 8.5 below low 9"),
    (Bar(DAY, 8, open=10, high=11, low=9), "inconsistent: close 8 below low 9"),
    (Bar(DAY, 10, high=9, low=11), "inconsistent: high 9 below low 11"),
    (Bar(DAY, 10, high=11, low=9, volume=-5), "inconsistent: volume -5 below 0"),
    (Bar(DAY, 0.0), "non_positive: close 0"),
    (Bar(DAY, 10, adj_close=0.0), "non_positive: adj_close 0"),
    (Bar(DAY, 10, open=10, high=-1, low=-2), "non_positive: high -1, low -2"),
    (Bar(DAY, -1e300, open=-1e300, high=-1e300, low=-1e300, adj_close=-1e300),
     "non_positive: open -1e+300, high -1e+300, low -1e+300, close -1e+300, adj_close -1e+300"),
    (Bar(DAY, math.inf), "non_finite: close inf"),
    (Bar(DAY, 10, adj_close=math.nan), "non_finite: adj_close nan"),
    (Bar(DAY + timedelta(days=5), 10), "no_session: Saturday 2024-03-09 was not a trading session"),
    (Bar(date(2024, 3, 29), 10), "no_session: Friday 2024-03-29 was not a trading session"),  # Good Friday
])
def test_each_kind_of_bad_bar(bar, reason):
    assert flag_bars([bar], XNYS)[0].reason == reason
    assert flag_bars([bar], XNYS)[0].known_on == bar.date


def test_bars_without_a_calendar_are_checked_against_the_weekend():
    saturday, thursday, holiday = date(2024, 3, 9), date(2024, 3, 28), date(2024, 3, 29)
    assert flag_bars([Bar(saturday, 1)])[0].reason == "no_session: Saturday 2024-03-09 is a weekend day"
    assert flag_bars([Bar(thursday, 1), Bar(holiday, 1)]) == [None, None]  # no calendar: no holidays known
    old = date(1969, 12, 27)  # before the calendar's span: the weekend rule still applies
    assert flag_bars([Bar(old, 1)], XNYS)[0].reason.startswith("no_session: Saturday")


def test_adjusted_close_steps_and_spikes_count_too():
    days = business_days(DAY, 6)
    flat = [Bar(d, 10.0, adj_close=9.0) for d in days]
    stepped = flat[:3] + [b._replace(adj_close=0.09) for b in flat[3:]]
    assert [f.reason.split(":")[0] if f else None for f in flag_bars(stepped, XNYS)] == \
        [None, None, None, "unit_change", "unit_change", "unit_change"]
    spiked = flat[:2] + [flat[2]._replace(adj_close=27.0)] + flat[3:]
    flags = flag_bars(spiked, XNYS)
    assert flags[2].reason.startswith("spike: +200%") and flags[2].known_on == days[3]


prices = st.one_of(st.floats(min_value=-10, max_value=1e5), st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))
maybe = st.one_of(st.none(), prices)


@st.composite
def messy_series(draw):
    """Bars on XNYS sessions and other days, with garbage prices and unit-sized steps."""
    count = draw(st.integers(1, 60))
    days = sorted(draw(st.sets(st.dates(date(2023, 1, 1), date(2023, 6, 30)), min_size=count, max_size=count)))
    level, bars = 100.0, []
    for day in days:
        level *= draw(st.sampled_from([1.0, 1.01, 0.98, 1.6, 0.5, 100.0, 0.01]))
        close = draw(st.one_of(st.just(level), prices.filter(lambda v: not math.isnan(v))))  # NaN: no bar
        bars.append(Bar(day, close, open=draw(maybe), high=draw(maybe), low=draw(maybe),
                        volume=draw(st.one_of(st.none(), st.floats(-5, 1e6))), adj_close=draw(st.one_of(
                            st.none(), st.just(close), prices))))
    return bars


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bars=messy_series())
def test_flags_never_need_later_bars_than_known_on(bars):
    flags = flag_bars(bars, XNYS)
    assert all(len(flag.reason) <= 120 for flag in flags if flag)  # fits the stored column
    for i, flag in enumerate(flags):
        if flag is not None:
            assert flag_bars([b for b in bars if b.date <= flag.known_on], XNYS)[i] == flag
    for count in range(1, len(bars)):  # a valid bar stays valid, or is flagged only later
        prefix = flag_bars(bars[:count], XNYS)
        for i in range(count):
            assert prefix[i] is None or prefix[i] == flags[i]


RANGES = {  # metric -> (lowest, highest) it may take
    "PRICE": (0, math.inf), "HIGH_52W": (0, math.inf), "LOW_52W": (0, math.inf), "MAX_DRAWDOWN": (-1, 0),
    "CURRENT_DRAWDOWN": (-1, 0), "RSI_14": (0, 100), "BB_POSITION": (0, 1), "VOLATILITY_ANNUAL": (0, math.inf),
    "VOLATILITY_60D": (0, math.inf), "DISTANCE_FROM_52W_HIGH": (0, 1), "DAYS_IN_DRAWDOWN": (0, math.inf),
    "EMA_50": (0, math.inf), "EMA_200": (0, math.inf), "SMA_50": (0, math.inf), "SMA_200": (0, math.inf),
    "BB_LOWER_20": (-math.inf, math.inf), "BB_MIDDLE_20": (0, math.inf), "BB_UPPER_20": (0, math.inf),
    "MOMENTUM_30D": (-1, math.inf), "MOMENTUM_90D": (-1, math.inf), "CAGR_5Y": (-1, math.inf),
    "CAGR_10Y": (-1, math.inf),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    servicer, db, _ = make_servicer(tmp_path_factory.mktemp("ranges"))
    return servicer, db, itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(bars=messy_series())
def test_no_metric_ever_leaves_its_range(shared, bars):
    servicer, db, numbers = shared
    symbol = f"T{next(numbers)}.US"
    engine.sync_bars(db, [security(symbol)], {symbol: bars})
    values = indicators(servicer, symbol)
    for key, value in values.items():
        low, high = RANGES.get(key, (-math.inf, math.inf))
        assert math.isfinite(value) and low <= value <= high, (key, value)
        if key == "PRICE":
            assert value > 0
    if "HIGH_52W" in values:
        assert values["LOW_52W"] <= values["PRICE"] <= values["HIGH_52W"]
    for bar in history(servicer, symbol).bars:
        if not bar.flag:
            assert bar.close > 0 and (not bar.HasField("adj_close") or bar.adj_close > 0)


# --- a provider re-basing a series (split, re-adjustment, unit change) on an incremental sync ---

def _synced(tmp_path, stored, served):
    provider = FakeProvider(bars={"TEST.US": stored})
    servicer, db, _ = make_servicer(tmp_path, provider, [security()])
    before = indicators(servicer)
    provider.bars["TEST.US"] = served
    reply = call(servicer.SyncPrices, data_pb2.SyncPricesRequest())
    return servicer, db, before, reply


def test_a_split_on_an_incremental_sync_replaces_the_stored_history(tmp_path):
    bars = random_walk(300)
    split = [bar._replace(close=bar.close / 2) for bar in bars]  # the provider re-based everything 2:1
    servicer, _, before, reply = _synced(tmp_path, bars[:250], split)
    stored = history(servicer).bars
    assert [(b.date, b.close) for b in stored] == [(b.date.isoformat(), b.close) for b in split]
    assert not any(b.flag for b in stored) and reply.bars_added == 50 and reply.bars_updated == 250
    after = call(servicer.GetIndicators, data_pb2.GetIndicatorsRequest(symbol="TEST.US",
                                                                       as_of=bars[249].date.isoformat()))
    assert not after.cached  # the cached metrics were dropped
    assert after.values["PRICE"] == pytest.approx(before["PRICE"] / 2)
    assert after.values["MAX_DRAWDOWN"] == pytest.approx(before["MAX_DRAWDOWN"])  # no fake -50% day


def test_stored_bars_the_provider_no_longer_serves_are_scaled_onto_its_basis(tmp_path):
    bars = random_walk(300)
    served = [bar._replace(close=bar.close / 100) for bar in bars[100:]]  # pounds, and a shorter history
    servicer, _, _, _ = _synced(tmp_path, bars[:250], served)
    stored = history(servicer).bars
    assert len(stored) == 300 and not any(b.flag for b in stored)
    assert [b.close for b in stored] == pytest.approx([b.close / 100 for b in bars])


class IncrementalOnly(FakeProvider):
    """A provider that serves recent bars only, never a whole history."""

    def daily_bars(self, securities, start, end):
        return {} if start is None else super().daily_bars(securities, start, end)


def test_without_a_whole_history_the_stored_bars_are_scaled_onto_the_new_basis(tmp_path):
    bars = random_walk(300)
    split = [bar._replace(close=bar.close / 2) for bar in bars]
    provider = IncrementalOnly(bars={"TEST.US": bars[:250]})
    servicer, _, _ = make_servicer(tmp_path, provider, [security()])
    provider.bars["TEST.US"] = split
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest())
    assert [b.close for b in history(servicer).bars] == pytest.approx([b.close for b in split])


def test_an_imported_file_on_another_basis_is_not_mixed_in(tmp_path):
    bars = random_walk(100)
    servicer, _, _ = make_servicer(tmp_path, FakeProvider(bars={"TEST.US": bars[:90]}), [security()])
    split = [bar._replace(close=round(bar.close / 2, 4)) for bar in bars]
    csv = "Date,Open,High,Low,Close\n" + "".join(f"{b.date},{b.close},{b.close},{b.close},{b.close}\n"
                                                  for b in split[80:])
    reply = call(servicer.ImportPrices, data_pb2.ImportPricesRequest(symbol="TEST.US", csv=csv))
    assert (reply.bars_added, reply.bars_updated, reply.bars_flagged) == (10, 90, 0)
    assert [b.close for b in history(servicer).bars] == pytest.approx([b.close for b in split], rel=1e-4)


def test_a_dividend_re_adjustment_replaces_the_adjusted_closes(tmp_path):
    bars = [bar._replace(adj_close=bar.close) for bar in random_walk(100)]
    readjusted = [bar._replace(adj_close=bar.close * 0.99) for bar in bars]
    servicer, _, _, _ = _synced(tmp_path, bars[:90], readjusted)
    assert [b.adj_close for b in history(servicer).bars] == pytest.approx([b.adj_close for b in readjusted])


def test_a_late_correction_of_one_bar_is_not_a_re_basing(tmp_path):
    bars = random_walk(100)
    corrected = bars[:85] + [bars[85]._replace(close=bars[85].close * 1.01)] + bars[86:]
    _, _, _, reply = _synced(tmp_path, bars[:90], corrected)
    assert (reply.bars_added, reply.bars_updated) == (10, 1)


def test_an_unresolved_unit_change_ends_when_the_provider_re_bases(tmp_path):
    bars = random_walk(120, price=1000.0)
    pence_then_pounds = bars[:100] + [bar._replace(close=bar.close / 100) for bar in bars[100:110]]
    servicer, _, _, _ = _synced(tmp_path, bars[:100], pence_then_pounds)
    assert history(servicer).bars[-1].flag.startswith("unit_change")
    assert quote(servicer).date == bars[99].date.isoformat()  # out of quotes until resolved
    provider = servicer._provider
    provider.bars["TEST.US"] = [bar._replace(close=bar.close / 100) for bar in bars]  # all in pounds now
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest())
    assert not any(b.flag for b in history(servicer).bars)
    assert quote(servicer).date == bars[-1].date.isoformat()


def test_rebase_factors():
    days = business_days(DAY, 4)
    stored = [Bar(d, 10.0 + i, adj_close=9.0 + i) for i, d in enumerate(days)]
    assert rebase_factors(stored, stored) is None
    assert rebase_factors(stored, [b._replace(close=b.close / 4, adj_close=b.adj_close / 4) for b in stored]) == \
        pytest.approx(Rebase(0.25, 0.25))
    assert rebase_factors(stored, stored[:1]) is None  # one overlapping bar says nothing
    assert rebase_factors(stored, [stored[0]._replace(close=20.0)] + stored[1:]) is None
    scaled = rebased(stored, [b._replace(close=b.close * 2) for b in stored[2:]], Rebase(2.0, 1.0))
    assert [b.close for b in scaled] == [20.0, 22.0, 24.0, 26.0]


# --- stores flagged under older rules ---

def test_bars_stored_under_older_rules_are_revalidated_at_start(tmp_path):
    bars = random_walk(30) + [Bar(date(2015, 2, 21), 50.0)]  # a Saturday
    servicer, db, _ = make_servicer(tmp_path, FakeProvider(bars={"TEST.US": bars}), [security()])
    with db.transaction() as session:  # as an older build left it
        session.execute(text("UPDATE daily_bars SET flag = NULL, flag_known_on = NULL"))
        session.execute(text("UPDATE securities SET validated_with = 0"))
    assert engine.revalidate_stale(db) == 1 and engine.revalidate_stale(db) == 0
    assert history(servicer).bars[-1].flag.startswith("no_session: Saturday")


def test_a_release_database_is_revalidated(tmp_path):
    """A database from the last release before rule versions (schema_info version 2) is migrated
    and every security it holds is validated again under the current rules."""
    path = tmp_path / "data.db"
    with sqlite3.connect(path) as connection:
        connection.executescript((RELEASE / "data.sqlite.sql").read_text())
        connection.execute("INSERT INTO securities (symbol, name, currency, exchange, country, sector, industry, "
                           "lot_size, active, allow_buy, allow_sell, kind, isin, bucket, yahoo_symbol) VALUES "
                           "('OLD.US', 'Old', 'USD', 'XNYS', 'US', '', '', 1, 1, 1, 1, 'EQUITY', '', 'core', '')")
    url = f"sqlite:///{path}"
    db = store.open_database(url)
    with db.transaction() as session:
        assert sorted(s.symbol for _, s in store.stale_validation(session)) == ["AAPL.US", "OLD.US", "SP500.IDX"]
        assert store.reference_rate_extent(session) == {}
    db.close()
