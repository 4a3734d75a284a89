"""What the data service derives once and keeps (services/data/server.py: each series' bars
encoded as protobuf once; analytics.py: indicators per series and valid bars; store.py: the
securities and FX rates per revision) answers exactly what a fresh computation answers, for any
as-of date, and changes as soon as what it was derived from changes (a re-sync, an import, a
flag, a security's edit, a new rate)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from trader.data.v1 import data_pb2

from services.common import clock
from services.common.errors import NotFound
from services.data import analytics, bar_cache, indicators, store
from services.data.bar_cache import Series
from services.data.history import Bar
from services.data.server import EncodedBars, fill_daily_history, history_to_proto
from services.data.store import SecurityRow
from tests.data_fixtures import FakeProvider, make_servicer, random_walk, security

NOW = datetime(2030, 1, 2, tzinfo=UTC)


def call(method, request, now=NOW):
    with clock.use_as_of(now):
        return method(request, None)


def spiked_walk(count: int = 120, spike: int = 60) -> list[Bar]:
    bars = random_walk(count, seed=4)
    bars[spike] = bars[spike]._replace(close=bars[spike].close * 2.5)  # flagged once the next bar comes
    bars[10] = bars[10]._replace(open=1.0, high=2.0 * bars[10].close, low=0.5, volume=1000.0, adj_close=3.0)
    return bars


@pytest.fixture(scope="module")
def flagged_series(tmp_path_factory):
    """A series whose encoded bars come in blocks of 16 (encoded as the examples need them)."""
    servicer, db, _ = make_servicer(tmp_path_factory.mktemp("series"), FakeProvider({"TEST.US": spiked_walk()}),
                                    [security()])
    with db.transaction() as session:
        series = servicer._bars.series(session, 1)
    assert series.flags, "the spike is flagged"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EncodedBars, "BLOCK", 16)
        yield series, spiked_walk()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(-5, 130), length=st.integers(-3, 140), open_start=st.booleans())
def test_encoded_daily_history_is_the_history_built_bar_by_bar(flagged_series, first, length, open_start):
    """For any range, flags shown only when known by the range's end (no lookahead)."""
    series, bars = flagged_series
    day0 = bars[0].date
    start = None if open_start else day0 + timedelta(days=first)
    end = day0 + timedelta(days=first + length) if length >= 0 else date.max
    sec = security()
    expected = history_to_proto(sec, series.rows(start, end), end, "DAILY")
    encoded = data_pb2.GetPriceHistoryResponse()
    fill_daily_history(encoded, sec, series, start, end)
    assert encoded == expected
    assert encoded.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def test_a_flag_is_shown_only_from_the_day_it_is_known(flagged_series):
    series, bars = flagged_series
    spike = bars[60].date
    [(index, flag)] = series.flags.items()
    known = date.fromordinal(int(series.flag_known[index]))
    assert known > spike and flag.startswith("spike")
    for end, shown in ((known - timedelta(days=1), ""), (known, flag)):
        reply = data_pb2.GetPriceHistoryResponse()
        fill_daily_history(reply, security(), series, None, end)
        assert {b.date: b.flag for b in reply.bars}[spike.isoformat()] == shown


def test_histories_change_when_an_import_or_a_sync_replaces_bars_or_flags(tmp_path):
    bars = random_walk(80, seed=5)
    servicer, _, provider = make_servicer(tmp_path, FakeProvider({"TEST.US": bars}), [security()])
    request = data_pb2.GetPriceHistoriesRequest(symbols=["TEST.US"])
    before = call(servicer.GetPriceHistories, request).histories[0]
    assert call(servicer.GetPriceHistories, request).histories[0] == before  # served from the encoded bars
    assert all(not b.flag for b in before.bars)

    day = bars[40].date  # an import changes one bar: a spike, flagged once the next bar is known
    servicer.ImportPrices(data_pb2.ImportPricesRequest(
        symbol="TEST.US", csv=f"Date,Open,High,Low,Close\n{day},1,1000,1,{bars[40].close * 3}\n"), None)
    after = {b.date: b for b in call(servicer.GetPriceHistories, request).histories[0].bars}
    assert after[day.isoformat()].close == pytest.approx(bars[40].close * 3)
    assert after[day.isoformat()].flag.startswith("spike")

    provider.bars["TEST.US"] = bars + [Bar(bars[-1].date + timedelta(days=1), 1.0)]  # a re-sync adds a bar
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest())
    synced = call(servicer.GetPriceHistories, request).histories[0].bars
    assert len(synced) == len(before.bars) + 1 and synced[-1].close == 1.0


def test_a_read_answered_from_kept_values_begins_no_transaction_and_sees_every_write(tmp_path):
    """Quotes, histories, metrics, the regime, dividends and fundamentals read on demand: once
    their bars and rows are kept a repeated call begins no transaction; after an import (a
    write) the next call reads the new bar."""
    bars = random_walk(80, seed=5)
    servicer, db, _ = make_servicer(tmp_path, FakeProvider({"TEST.US": bars}), [security()])
    begun = []
    db.listen("after_transaction_create", lambda session, transaction: begun.append(transaction))
    as_of = bars[60].date.isoformat()
    calls = [(servicer.GetQuotes, data_pb2.GetQuotesRequest(symbols=["TEST.US"])),
             (servicer.GetPriceHistories, data_pb2.GetPriceHistoriesRequest(symbols=["TEST.US"])),
             (servicer.GetMetrics, data_pb2.GetMetricsRequest(symbols=["TEST.US"], as_of=as_of)),
             (servicer.GetDividends, data_pb2.GetDividendsRequest(symbols=["TEST.US"])),
             (servicer.GetFundamentals, data_pb2.GetFundamentalsRequest(symbols=["TEST.US"]))]
    first = [call(method, request) for method, request in calls]
    begun.clear()
    assert [call(method, request) for method, request in calls] == first
    assert not begun
    day = bars[-1].date
    servicer.ImportPrices(data_pb2.ImportPricesRequest(
        symbol="TEST.US", csv=f"Date,Open,High,Low,Close\n{day},1,1000,1,{bars[-1].close * 1.01}\n"), None)
    quote = call(servicer.GetQuotes, data_pb2.GetQuotesRequest(symbols=["TEST.US"])).quotes[0]
    assert quote.price == pytest.approx(bars[-1].close * 1.01)
    with pytest.raises(NotFound):  # an error inside: nothing is left open
        call(servicer.GetQuotes, data_pb2.GetQuotesRequest(symbols=["TEST.US", "NOPE.US"]))


# --- securities and FX rates kept per revision (services/common/revisions.py) ---

def listed(servicer, **request) -> dict[str, data_pb2.Security]:
    reply = call(servicer.ListSecurities, data_pb2.ListSecuritiesRequest(**request))
    return {s.symbol: s for s in reply.securities}


def test_the_kept_securities_change_with_every_kind_of_write(tmp_path):
    servicer, db, _ = make_servicer(tmp_path, FakeProvider({"A.US": random_walk(5)}), [security("A.US")])
    assert list(listed(servicer)) == ["A.US"] and listed(servicer)["A.US"].bucket == "core"
    edited = data_pb2.Security(symbol="A.US", name="A", currency="USD", exchange="XNYS", country="United States",
                               industry="Software", active=True, allow_buy=True, allow_sell=True, bucket="satellite")
    call(servicer.UpsertSecurity, data_pb2.UpsertSecurityRequest(security=edited))   # an ORM update
    assert listed(servicer)["A.US"].bucket == "satellite"
    assert list(listed(servicer, bucket="core")) == []
    added = data_pb2.Security(symbol="B.US", name="B", currency="USD", exchange="XNYS", country="United States",
                              industry="Banks", active=True, allow_buy=True, allow_sell=True)
    call(servicer.UpsertSecurity, data_pb2.UpsertSecurityRequest(security=added))    # an ORM insert
    assert list(listed(servicer)) == ["A.US", "B.US"]
    quotes = call(servicer.GetQuotes, data_pb2.GetQuotesRequest())
    assert {q.symbol for q in quotes.quotes} | set(quotes.unavailable) == {"A.US", "B.US"}
    call(servicer.DeactivateSecurity, data_pb2.DeactivateSecurityRequest(symbol="A.US"))
    assert list(listed(servicer)) == ["B.US"] and list(listed(servicer, include_inactive=True)) == ["A.US", "B.US"]
    with db.transaction() as session:                                                # a statement
        session.execute(SecurityRow.__table__.update().where(SecurityRow.symbol == "B.US").values(lot_size=7))
    assert listed(servicer)["B.US"].lot_size == 7
    with db.transaction() as session:  # a transaction reads what it wrote, which is kept only once committed
        session.execute(SecurityRow.__table__.update().values(country="Nowhere"))
        assert {s.country for _, s in servicer._all_securities(session)} == {"Nowhere"}
        with pytest.raises(RuntimeError):
            with db.transaction() as other:
                assert "Nowhere" not in {s.country for _, s in servicer._all_securities(other)}
                raise RuntimeError("rolled back")
    assert {s.country for s in listed(servicer, include_inactive=True).values()} == {"Nowhere"}
    assert {s.country for _, s in store.all_securities(db._sessions())} == {"Nowhere"}


def test_a_read_that_raced_a_committed_write_is_not_kept(tmp_path):
    servicer, db, _ = make_servicer(tmp_path, FakeProvider({"A.US": random_walk(5)}), [security("A.US")])
    def racing_read(session):
        found = store.all_securities(session)
        with db.transaction() as writer:  # another call commits a change while this one reads
            writer.execute(store.SecurityRow.__table__.update().values(name="Renamed"))
        return found

    with db.transaction() as session:
        assert servicer._kept.read(session, ("securities",), "raced", racing_read)[0][1].name != "Renamed"
    assert listed(servicer)["A.US"].name == "Renamed"


def test_fx_rates_change_when_a_rate_is_stored_and_never_show_a_later_one(tmp_path):
    day = date(2024, 3, 4)
    provider = FakeProvider({"A.US": random_walk(5)}, fx={"USD": [(day, 1.25)]})
    servicer, _, _ = make_servicer(tmp_path, provider, [security("A.US")], TRADER_FX_RATES="USD=1.1")
    now = datetime(2024, 3, 5, 20, tzinfo=UTC)

    def usd(as_of=""):
        reply = call(servicer.GetFxRates, data_pb2.GetFxRatesRequest(as_of=as_of), now)
        return {r.currency: (r.rate, r.date, r.source) for r in reply.rates}["USD"]

    assert usd() == usd() == (1.1, "", "configured")  # kept: the same answer
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest(), now)  # stores the provider's rate of `day`
    assert usd() == (1.25, day.isoformat(), "fake")
    assert usd("2024-03-03") == (1.1, "", "configured")  # as of the day before: not yet known
    provider.fx["USD"] = [(day, 1.25), (day + timedelta(days=1), 1.5)]
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest(), now)
    assert usd() == (1.5, "2024-03-05", "fake") and usd(day.isoformat()) == (1.25, day.isoformat(), "fake")


def test_a_transaction_with_unflushed_changes_reads_them(tmp_path):
    servicer, db, _ = make_servicer(tmp_path, FakeProvider({"A.US": random_walk(5)}), [security("A.US")])
    assert listed(servicer)["A.US"].active
    with db.transaction() as session:
        store.find_security(session, "A.US").active = False  # pending in the session, not flushed
        assert [s for _, s in servicer._all_securities(session) if s.active] == []
        assert listed(servicer, include_inactive=True)["A.US"].active  # not committed: others see it active
    assert list(listed(servicer)) == []


# --- indicators (services/data/analytics.py) ---

def hand_made_series(closes: list[float], first: date, flags: dict[int, tuple[str, date]]) -> Series:
    days = np.array([(first + timedelta(days=i)).toordinal() for i in range(len(closes))], dtype=np.int32)
    nan = np.full(len(closes), np.nan)
    known = np.full(len(closes), bar_cache.NEVER, dtype=np.int32)
    for index, (_, day) in flags.items():
        known[index] = day.toordinal()
    return Series(days, np.array(closes), nan, nan, nan, known, nan, nan, {i: f for i, (f, _) in flags.items()})


class OneSeries:
    def __init__(self, series: Series):
        self._series = series

    def series(self, session, security_id):
        return self._series


def test_no_date_is_served_indicators_computed_with_a_flag_known_only_later(tmp_path):
    """Bar 40's flag becomes known on day 59; bars 46 to 59 are flagged on their own day. As of
    day 58 and day 59 the last valid bar is day 45 for both, but only day 58 may use bar 40:
    neither answer may be served for the other (the database cache is keyed by the last bar)."""
    first = date(2024, 1, 1)
    closes = [100.0 + (i % 7) * 1.5 + i * 0.1 for i in range(60)]
    closes[40] = 180.0
    flags = {40: ("spike: late", first + timedelta(days=59))}
    flags |= {i: ("no_session: hand-made", first + timedelta(days=i)) for i in range(46, 60)}
    series = hand_made_series(closes, first, flags)
    servicer, db, _ = make_servicer(tmp_path, FakeProvider(), [security()])
    now = datetime(2030, 1, 1, tzinfo=UTC)
    day58, day59 = first + timedelta(days=58), first + timedelta(days=59)
    with db.transaction() as session:
        fresh58 = analytics.indicators_as_of(session, OneSeries(hand_made_series(closes, first, flags)), 1, day58, now)
    for order in ((day59, day58), (day58, day59)):
        with db.transaction() as session:
            found = {day: analytics.indicators_as_of(session, OneSeries(series), 1, day, now) for day in order}
        assert found[day58].last_day == found[day59].last_day == first + timedelta(days=45)
        assert (found[day58].daily_bars, found[day59].daily_bars) == (46, 45)
        assert found[day58].values == fresh58.values != found[day59].values
        assert not found[day58].cached and not found[day59].cached


def test_metrics_change_when_an_import_changes_a_bar_and_its_flags(tmp_path):
    bars = random_walk(300, seed=9)
    servicer, _, _ = make_servicer(tmp_path, FakeProvider({"TEST.US": bars}), [security()])
    request = data_pb2.GetMetricsRequest(symbols=["TEST.US"])
    before = call(servicer.GetMetrics, request).metrics[0]
    assert call(servicer.GetMetrics, request).metrics[0].cached
    day = bars[200].date  # an import makes bar 200 a spike: flagged (left out) once bar 201 is known
    servicer.ImportPrices(data_pb2.ImportPricesRequest(
        symbol="TEST.US", csv=f"Date,Open,High,Low,Close\n{day},1,1000,1,{bars[200].close * 3}\n"), None)
    after = call(servicer.GetMetrics, request).metrics[0]
    assert not after.cached and after.daily_bars == before.daily_bars - 1
    assert after.values["VOLATILITY_ANNUAL"] != before.values["VOLATILITY_ANNUAL"]
    as_of_spike = call(servicer.GetMetrics, data_pb2.GetMetricsRequest(symbols=["TEST.US"], as_of=day.isoformat()))
    assert as_of_spike.metrics[0].values["PRICE"] == pytest.approx(bars[200].close * 3)  # its flag not known yet


def test_fundamentals_change_with_an_import_and_never_show_a_later_observation(tmp_path):
    servicer, _, _ = make_servicer(tmp_path, FakeProvider({"KO.US": random_walk(5)}), [security("KO.US")])

    def pe(as_of: str) -> float | None:
        reply = call(servicer.GetFundamentals, data_pb2.GetFundamentalsRequest(symbols=["KO.US"], as_of=as_of))
        facts = reply.fundamentals[0]
        return facts.trailing_pe if facts.HasField("trailing_pe") else None

    assert pe("2018-01-05") is None and pe("2018-01-05") is None  # the second read is the kept one
    call(servicer.ImportFundamentals, data_pb2.ImportFundamentalsRequest(
        content="symbol,date,trailing_pe\nKO.US,2018-01-02,24.9\nKO.US,2018-01-10,26.5\n"))
    assert (pe("2018-01-01"), pe("2018-01-05"), pe("2018-01-10")) == (None, 24.9, 26.5)
    call(servicer.ImportFundamentals, data_pb2.ImportFundamentalsRequest(
        content="symbol,date,trailing_pe\nKO.US,2018-01-05,25.5\n"))
    assert (pe("2018-01-04"), pe("2018-01-05"), pe("2018-01-10")) == (24.9, 25.5, 26.5)


def test_dividends_change_with_an_import_or_a_sync(tmp_path):
    provider = FakeProvider({"KO.US": random_walk(5)})
    servicer, _, _ = make_servicer(tmp_path, provider, [security("KO.US")])
    now = datetime(2024, 9, 30, 22, tzinfo=UTC)

    def paid() -> list[tuple[str, float, str]]:
        reply = call(servicer.GetDividends, data_pb2.GetDividendsRequest(symbols=["KO.US"]), now)
        return [(d.date, d.amount, d.source) for d in reply.dividends]

    assert paid() == paid() == []
    call(servicer.ImportDividends, data_pb2.ImportDividendsRequest(symbol="KO.US",
                                                                   csv="Date,Dividends\n2024-03-14,0.485\n"))
    assert paid() == [("2024-03-14", 0.485, "import")]
    provider.dividends_["KO.US"] = [(date(2024, 3, 14), 0.5), (date(2024, 6, 13), 0.485)]
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest(), now)
    assert paid() == [("2024-03-14", 0.5, "fake"), ("2024-06-13", 0.485, "fake")]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), length=st.integers(1, 700), cut=st.floats(0.0, 1.0))
def test_technical_values_of_the_first_bars_are_the_first_of_the_whole_series(seed, length, cut):
    """TA-Lib's RSI, EMA, SMA and Bollinger bands are causal: the values of the first k closes
    are, bit for bit, the first k values of the whole series' (what GetMetrics relies on)."""
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.02, length)))
    first = max(1, int(length * cut))
    whole = indicators.technical(closes)
    alone = indicators.technical(closes[:first].copy())
    assert indicators.technical_at(whole, first - 1) == indicators.technical_at(alone, first - 1)
    months = 2000 * 12 + np.arange(first) // 21
    shortcut = indicators.compute(closes[:first], None, None, months, indicators.technical_at(whole, first - 1))
    computed = indicators.compute(closes[:first].copy(), None, None, months)
    assert list(shortcut.items()) == list(computed.items())  # same values, same keys in the same order


def test_metrics_of_a_replay_are_those_of_the_bars_alone(tmp_path):
    """GetMetrics as of each of many dates (the valid bars: the first ones of the series) equals
    indicators.compute on a copy of exactly those bars."""
    bars = random_walk(400, seed=11)
    servicer, _, _ = make_servicer(tmp_path, FakeProvider({"TEST.US": bars}), [security()])
    for day in (bars[0].date, bars[25].date, bars[199].date, bars[-1].date):
        reply = call(servicer.GetMetrics, data_pb2.GetMetricsRequest(symbols=["TEST.US"], as_of=day.isoformat()))
        used = [b for b in bars if b.date <= day]
        closes = np.array([b.close for b in used])
        months = np.array([b.date.year * 12 + b.date.month for b in used])
        assert dict(reply.metrics[0].values) == indicators.compute(closes, None, None, months)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), length=st.integers(1, 900), cut=st.floats(0.0, 1.0),
       plateaus=st.booleans(), ranged=st.booleans())
def test_running_values_give_the_metrics_of_the_first_bars_bit_for_bit(seed, length, cut, plateaus, ranged):
    """indicators.Running read at bar k - 1 gives, bit for bit and in the same key order, what
    compute gives from a copy of the first k closes: for any k, with repeated closes (ties of the
    peak: DAYS_IN_DRAWDOWN) and with highs and lows."""
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, length)))
    if plateaus:
        closes = np.round(closes / 5) * 5 + 5  # many equal closes, still above 0
    months = 2000 * 12 + np.cumsum(rng.random(length) < 0.05)  # months of uneven length
    highs, lows = (closes * 1.01, closes * 0.99) if ranged else (None, None)
    first = max(1, int(length * cut))
    running = indicators.running(closes, months)
    technical = indicators.technical_at(indicators.technical(closes), first - 1)
    cut_highs, cut_lows = (highs[:first], lows[:first]) if ranged else (None, None)
    read = indicators.compute(closes[:first], cut_highs, cut_lows, months[:first], technical, running)
    computed = indicators.compute(closes[:first].copy(), None if highs is None else cut_highs.copy(),
                                  None if lows is None else cut_lows.copy(), months[:first].copy())
    assert list(read.items()) == list(computed.items())


@pytest.mark.parametrize("plateaus", [False, True])
def test_running_values_of_every_first_bars_are_bit_for_bit_those_computed_alone(plateaus):
    """Every k of one series in turn, as a replay asks (the windowed values are computed a block
    of bars at a time, the last month's average from its bars alone): the same keys in the same
    order with the same bits as compute from a copy of the first k closes."""
    rng = np.random.default_rng(5)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 1100)))
    if plateaus:
        closes = np.round(closes / 5) * 5 + 5
    months = 2000 * 12 + np.cumsum(rng.random(len(closes)) < 0.05)
    running, technical = indicators.running(closes, months), indicators.technical(closes)
    for first in range(1, len(closes) + 1):
        read = indicators.compute(closes[:first], None, None, months[:first],
                                  indicators.technical_at(technical, first - 1), running)
        computed = indicators.compute(closes[:first].copy(), None, None, months[:first].copy())
        assert [(key, value.hex()) for key, value in read.items()] == \
            [(key, value.hex()) for key, value in computed.items()], first


def test_running_values_need_every_close_finite_and_above_zero():
    months = np.full(5, 2000 * 12)
    assert indicators.running(np.array([1.0, 2.0, 0.0, 3.0, 4.0]), months) is None
    assert indicators.running(np.array([1.0, np.nan, 2.0, 3.0, 4.0]), months) is None
    assert indicators.running(np.array([], dtype=float), months[:0]) is None
    assert indicators.running(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), months) is not None


def test_only_metrics_as_of_the_last_stored_bar_are_cached_and_dropped_when_it_changes(tmp_path):
    """A date before the last stored bar (a replay's) is computed and never stored; one at or
    after it is stored and served again until the bars change."""
    bars = random_walk(300, seed=5)
    servicer, db, _ = make_servicer(tmp_path, FakeProvider({"TEST.US": bars}), [security()])

    def metrics(as_of: str = "") -> data_pb2.GetIndicatorsResponse:
        return call(servicer.GetMetrics, data_pb2.GetMetricsRequest(symbols=["TEST.US"], as_of=as_of)).metrics[0]

    def entries() -> list[date]:
        with db.transaction() as session:
            return sorted(session.scalars(select(store.IndicatorCacheRow.through)))

    past = bars[150].date.isoformat()
    assert not metrics(past).cached and not metrics(past).cached and entries() == []
    latest = metrics()
    assert not latest.cached and metrics().cached and entries() == [bars[-1].date]
    servicer.ImportPrices(data_pb2.ImportPricesRequest(  # the last bar changes: the entry goes
        symbol="TEST.US", csv=f"Date,Open,High,Low,Close\n{bars[-1].date},1,1,1,{bars[-1].close * 1.01}\n"), None)
    changed = metrics()
    assert not changed.cached and changed.values["PRICE"] != latest.values["PRICE"]


def test_a_sync_starts_a_week_before_the_last_stored_bar_as_stored_now(tmp_path):
    """The last stored bars' dates are kept per revision of the bars: a sync or an import that
    stores a later bar moves where the next sync starts."""
    bars = random_walk(160, seed=3)
    starts = []

    class Recording(FakeProvider):
        def daily_bars(self, securities, start, end):
            starts.append(start)
            return super().daily_bars(securities, start, end)

    provider = Recording({"TEST.US": bars[:100]})
    servicer, _, _ = make_servicer(tmp_path, provider, [security()])
    sync = data_pb2.SyncPricesRequest()
    call(servicer.SyncPrices, sync)
    call(servicer.SyncPrices, sync)
    provider.bars["TEST.US"] = bars[:150]
    assert call(servicer.SyncPrices, sync).bars_added == 50
    call(servicer.SyncPrices, sync)
    servicer.ImportPrices(data_pb2.ImportPricesRequest(
        symbol="TEST.US", csv=f"Date,Open,High,Low,Close\n{bars[155].date},1,1,1,{bars[149].close}\n"), None)
    call(servicer.SyncPrices, sync)
    week = timedelta(days=7)
    assert starts == [bars[99].date - week, bars[99].date - week, bars[99].date - week, bars[149].date - week,
                      bars[155].date - week]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(-5, 140), own_day=st.booleans())
def test_the_quote_is_the_last_valid_bar_on_any_date(flagged_series, offset, own_day):
    """Series.latest_valid (the quote: the last bar up to the date when it is valid then) is the
    last of Series.valid: around a spike before and after its flag is known, and where the last
    bars are flagged on their own day (`own_day`)."""
    series, bars = flagged_series
    first = bars[0].date
    if own_day:
        closes = [100.0 + i for i in range(60)]
        series = hand_made_series(closes, first, {i: ("no_session: hand-made", first + timedelta(days=i))
                                                  for i in (20, 46, 47, 48, 59)})
    day = first + timedelta(days=offset)
    index = series.valid(day)
    expected = (date.fromordinal(int(series.days[index[-1]])), float(series.close[index[-1]])) if len(index) else None
    assert series.latest_valid(day) == expected
