"""Market calendars: every listed exchange answers (Athens included), over the whole history
the service holds, with answers that do not depend on the wall clock (issue 8 item 7, issue 9
item 1, issue 11 item 2)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import exchange_calendars.exchange_calendar as xcal_module
import pandas as pd
import pytest
from dateutil.easter import EASTER_ORTHODOX, easter
from hypothesis import given, settings
from hypothesis import strategies as st
from trader.data.v1 import data_pb2

from services.common import clock
from services.common.errors import FailedPrecondition, InvalidArgument
from services.data import market_hours
from services.data.market_hours import EXCHANGES, market_status, session_days
from tests.data_fixtures import make_servicer

SAMPLE_START = date(1990, 1, 2)  # the bundled history's first bar

# exchange -> (an instant the market is open, an instant on a holiday at the same local hour)
KNOWN_DAYS = {
    "XNYS": ("2024-07-05T14:00:00+00:00", "2024-12-25T15:00:00+00:00"),   # Christmas
    "XNAS": ("2024-07-05T14:00:00+00:00", "2024-11-28T15:00:00+00:00"),   # Thanksgiving
    "XETR": ("2024-03-15T10:00:00+00:00", "2024-05-01T10:00:00+00:00"),   # Labour Day
    "XLON": ("2024-03-15T10:00:00+00:00", "2024-08-26T10:00:00+00:00"),   # summer bank holiday
    "XPAR": ("2024-03-15T10:00:00+00:00", "2024-04-01T10:00:00+00:00"),   # Easter Monday
    "XMIL": ("2024-03-15T10:00:00+00:00", "2024-12-26T10:00:00+00:00"),   # St Stephen's Day
    "XAMS": ("2024-03-15T10:00:00+00:00", "2024-12-26T10:00:00+00:00"),   # Boxing Day
    "XCSE": ("2024-03-15T10:00:00+00:00", "2024-05-09T10:00:00+00:00"),   # Ascension Day
    "ASEX": ("2024-05-07T08:00:00+00:00", "2024-05-06T08:00:00+00:00"),   # Orthodox Easter Monday
    "XHKG": ("2024-03-15T02:00:00+00:00", "2024-02-12T02:00:00+00:00"),   # Lunar New Year
    "XSHG": ("2024-03-15T02:00:00+00:00", "2024-10-01T02:00:00+00:00"),   # National Day
    "XTSE": ("2024-03-15T15:00:00+00:00", "2024-07-01T15:00:00+00:00"),   # Canada Day
    "XASX": ("2024-03-15T01:00:00+00:00", "2024-01-26T01:00:00+00:00"),   # Australia Day
}


def call(method, request, now=datetime(2025, 1, 1, tzinfo=UTC)):
    with clock.use_as_of(now):
        return method(request, None)


def test_the_table_covers_every_listed_exchange():
    assert set(KNOWN_DAYS) == set(EXCHANGES)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_every_listed_exchange_answers_an_open_and_a_holiday(tmp_path, exchange):
    servicer, _, _ = make_servicer(tmp_path)
    open_at, holiday_at = KNOWN_DAYS[exchange]
    opened = call(servicer.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange=exchange, as_of=open_at))
    holiday = call(servicer.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange=exchange, as_of=holiday_at))
    assert opened.open and opened.session_date == open_at[:10]
    assert not holiday.open and holiday.session_date > holiday_at[:10]  # the next session is another day
    assert holiday.next_open.ToDatetime(UTC) > datetime.fromisoformat(holiday_at)


def test_athens_closes_on_every_orthodox_easter_holiday():
    """The Orthodox Easter holidays are the ones exchange-calendars cannot compute under
    pandas 3: checked against dateutil for every year the calendar covers."""
    days = session_days("ASEX")
    for year in range(1990, 2061):
        sunday = easter(year, EASTER_ORTHODOX)
        for offset in (-48, -2, 1, 50):  # Ash Monday, Good Friday, Easter Monday, Whit Monday
            assert sunday + timedelta(days=offset) not in days.days, (year, offset)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_calendars_cover_the_bundled_history(exchange):
    days = session_days(exchange)
    if exchange == "XSHG":  # Shanghai opened on 1990-12-19; the library records it from 1990-12-03
        assert days.first <= date(1990, 12, 19)
    else:
        assert days.first <= SAMPLE_START
    assert days.last >= date(2026, 12, 30)


# (exchange, instant, open): 1995 and 2005, before the library's default span of 20 years back
OLD_DAYS = [
    ("XNYS", "1995-07-04T15:00:00+00:00", False),  # Independence Day
    ("XNYS", "1995-07-05T15:00:00+00:00", True),
    ("XNYS", "2005-01-17T15:00:00+00:00", False),  # Martin Luther King Jr. Day
    ("XNYS", "2005-01-18T15:00:00+00:00", True),
    ("XLON", "1995-05-08T10:00:00+00:00", False),  # VE Day 50th anniversary bank holiday
    ("ASEX", "1995-04-24T08:00:00+00:00", False),  # Orthodox Easter Monday
    ("ASEX", "2005-05-02T08:00:00+00:00", False),  # Orthodox Easter Monday
    ("ASEX", "2005-05-03T08:00:00+00:00", True),
]


def _answers() -> list[bool]:
    return [market_status(exchange, datetime.fromisoformat(moment)).open for exchange, moment, _ in OLD_DAYS]


def _wall_clock_at(monkeypatch, today: str) -> None:
    """Make exchange-calendars believe today is `today` (its defaults are read from the wall
    clock at import) and drop every calendar built so far."""
    now = pd.Timestamp(today)
    monkeypatch.setattr(xcal_module, "GLOBAL_DEFAULT_START", now - pd.DateOffset(years=20))
    monkeypatch.setattr(xcal_module, "GLOBAL_DEFAULT_END", now + pd.DateOffset(years=1))
    market_hours._build.cache_clear()
    market_hours._session_days.cache_clear()


def test_1995_and_2005_answer_the_same_whatever_the_wall_clock(monkeypatch):
    expected = [is_open for *_, is_open in OLD_DAYS]
    answers = {}
    for today in ("2011-06-01", "2026-11-30", "2045-01-01"):
        _wall_clock_at(monkeypatch, today)
        answers[today] = _answers()
    market_hours._build.cache_clear()
    market_hours._session_days.cache_clear()
    assert all(found == expected for found in answers.values()), answers


def test_a_replay_from_2005_gets_answers_not_refusals(tmp_path):
    servicer, _, _ = make_servicer(tmp_path)
    reply = call(servicer.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange="XNYS"),
                 now=datetime(2005, 1, 3, 15, tzinfo=UTC))
    assert reply.open and reply.session_date == "2005-01-03"


def test_outside_a_calendar_is_precise_never_internal(tmp_path):
    servicer, _, _ = make_servicer(tmp_path)
    end = session_days("XSHG").last  # Shanghai's holidays are published a year at a time
    later = datetime(end.year + 1, 3, 2, 2, tzinfo=UTC)
    with pytest.raises(FailedPrecondition, match="calendar_range: .* outside the XSHG calendar"):
        call(servicer.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange="XSHG"), now=later)
    with pytest.raises(InvalidArgument) as caught:
        call(servicer.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange="XSHG", as_of=later.isoformat()))
    assert caught.value.field == "as_of" and str(end) in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        call(servicer.GetMarketStatus, data_pb2.GetMarketStatusRequest(exchange="XNYS",
                                                                      as_of="1969-12-31T15:00:00Z"))
    assert caught.value.field == "as_of"


@pytest.mark.parametrize("exchange", ["XNYS", "XHKG", "XETR", "ASEX"])
def test_session_intervals_from_the_arrays_are_the_calendar_lookups(exchange):
    """market_status reads opens, closes and lunch breaks by index (as integers, kept per
    session): the same instants and answers as the library's per-session look-ups, half days and
    breaks included."""
    cal = market_hours.calendar(exchange)

    @settings(max_examples=300, deadline=None)
    @given(st.datetimes(datetime(1995, 1, 1), datetime(2040, 1, 1)))
    def check(naive):
        moment = pd.Timestamp(naive.replace(tzinfo=UTC))  # with microseconds: market_status's are exact
        session = market_hours.session_at(cal, moment)
        index = market_hours._session_index(cal, moment)
        assert market_hours._intervals_at(cal, index) == market_hours._intervals(cal, session)
        assert market_hours._intervals_at(cal, index + 1) == market_hours._intervals(cal, cal.next_session(session))
        intervals = market_hours._intervals(cal, session) + market_hours._intervals(cal, cal.next_session(session))
        assert market_status(exchange, moment.to_pydatetime()) == market_hours.MarketStatus(
            exchange, any(start <= moment < end for start, end in intervals),
            next(start for start, _ in intervals if start > moment).to_pydatetime(),
            next(end for _, end in intervals if end > moment).to_pydatetime(), session.date())

    check()
