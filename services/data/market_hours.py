"""Market hours from exchange-calendars: holidays, half days and lunch breaks included.

The exchanges are the original's (data-display.md section 6). An unknown exchange is refused;
callers that must decide whether to trade treat "unknown" as closed.

Every calendar is built once over a fixed span (CALENDAR_START to CALENDAR_END, narrowed to
what the library records for the exchange), never the library's default of 20 years back and
one year ahead of today: the answer for a date must not change as the wall clock moves, and the
span covers all history the data service holds (the bundled sample starts 1990-01-02).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import exchange_calendars as xcals
import numpy as np
import pandas as pd
from dateutil.easter import EASTER_ORTHODOX
from exchange_calendars import exchange_calendar_asex as asex
from exchange_calendars.exchange_calendar import HolidayCalendar
from pandas.tseries.holiday import Holiday
from pandas.tseries.offsets import Day, Easter

from services.common.errors import FailedPrecondition, InvalidArgument

EXCHANGES = ("XNYS", "XNAS", "XETR", "XLON", "XPAR", "XMIL", "XAMS", "XCSE", "ASEX", "XHKG", "XSHG", "XTSE",
             "XASX")
# Exchanges where a BUY needs an open market too (trading-portfolio-jobs.md section 1).
STRICT_EXCHANGES = frozenset({"XHKG", "XSHG", "XTSE", "XASX"})
# Provider exchange names -> MIC (the original's mapping, extended with Yahoo's spellings).
EXCHANGE_NAMES = {
    "NYSE": "XNYS", "NYQ": "XNYS", "NEW YORK STOCK EXCHANGE": "XNYS", "NASDAQ": "XNAS", "NASDAQGS": "XNAS",
    "NASDAQGM": "XNAS", "NASDAQCM": "XNAS", "NMS": "XNAS", "XETRA": "XETR", "GER": "XETR", "LSE": "XLON",
    "LONDON": "XLON", "PARIS": "XPAR", "MILAN": "XMIL", "AMSTERDAM": "XAMS", "COPENHAGEN": "XCSE",
    "ATHENS": "ASEX", "HKSE": "XHKG", "HONG KONG": "XHKG", "SHANGHAI": "XSHG", "SHENZHEN": "XSHG",
    "TORONTO": "XTSE", "TSE": "XTSE", "ASX": "XASX",
}
# The span every calendar is built over (then narrowed to the library's bounds for the
# exchange: XSHG's holidays are recorded from 1990-12-03 to the end of the current year only).
CALENDAR_START = pd.Timestamp("1970-01-01")
CALENDAR_END = pd.Timestamp("2060-12-31")


@dataclass(frozen=True)
class MarketStatus:
    exchange: str
    open: bool
    next_open: datetime
    next_close: datetime
    session: date


@dataclass(frozen=True)
class SessionDays:
    """The trading sessions of one exchange over its calendar's span (plain data for validation)."""

    first: date
    last: date
    days: frozenset[date]


class OutsideCalendar(FailedPrecondition):
    """An instant outside the span the exchange's calendar covers: the library does not know
    that exchange's sessions then, so nothing is answered (never a guess)."""

    def __init__(self, exchange: str, at: datetime, first: date, last: date):
        super().__init__("calendar_range", f"{at.isoformat()} is outside the {exchange} calendar "
                                           f"({first} to {last}, exchange-calendars {xcals.__version__})")
        self.span = (first, last)


def _orthodox(name: str, days_after_easter: int) -> Holiday:
    return Holiday(name, month=1, day=1, offset=[Easter(method=EASTER_ORTHODOX), Day(days_after_easter)])


class ASEXCalendar(asex.ASEXExchangeCalendar):
    """Athens, with its Orthodox Easter holidays computed by pandas' own `Easter(method=
    EASTER_ORTHODOX)` offset. exchange-calendars 4.13.2 builds them with its `OrthodoxEaster`
    offset, which pandas 3 no longer drives (`NotImplementedError` for every date); the
    holiday list, times and ad hoc closures are the library's. Subclassing `ExchangeCalendar`
    is how the library defines a calendar."""

    @property
    def regular_holidays(self) -> HolidayCalendar:
        return HolidayCalendar([
            asex.NewYearsDay, asex.Epiphany, _orthodox("Orthodox Ash Monday", -48), asex.NationalHoliday1,
            asex.GoodFriday, asex.EasterMonday, _orthodox("Orthodox Good Friday", -2),
            _orthodox("Orthodox Easter Monday", 1), asex.LabourDay, _orthodox("Orthodox Whit Monday", 50),
            asex.AssumptionDay, asex.NationalHoliday2, asex.ChristmasEve, asex.ChristmasDay,
            asex.SecondDayOfChristmas,
        ])


_OWN_CALENDARS: dict[str, type[xcals.ExchangeCalendar]] = {"ASEX": ASEXCalendar}


def calendar(exchange: str) -> xcals.ExchangeCalendar:
    if exchange not in EXCHANGES:
        raise InvalidArgument("exchange", f"unknown exchange {exchange!r}; known: {', '.join(EXCHANGES)}")
    return _build(xcals.resolve_alias(exchange))  # XNAS is the XNYS calendar: built once


@functools.cache
def _build(name: str) -> xcals.ExchangeCalendar:
    factory = _OWN_CALENDARS.get(name) or xcals.calendar_utils.global_calendar_dispatcher._calendar_factories[name]
    start = max(CALENDAR_START, factory.bound_min() or CALENDAR_START)
    end = min(CALENDAR_END, factory.bound_max() or CALENDAR_END)
    return factory(start=start, end=end)


def session_days(exchange: str) -> SessionDays | None:
    """The sessions of a known exchange (None for any other: validation then knows only that
    no listed exchange trades on a Saturday or Sunday)."""
    return _session_days(xcals.resolve_alias(exchange)) if exchange in EXCHANGES else None


@functools.cache
def _session_days(name: str) -> SessionDays:
    cal = _build(name)
    return SessionDays(cal.first_session.date(), cal.last_session.date(), frozenset(cal.sessions.date))


def _intervals(cal: xcals.ExchangeCalendar, session: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The open intervals of a session: one, or two around a lunch break."""
    opens, closes = cal.session_open(session), cal.session_close(session)
    if cal.session_has_break(session):
        return [(opens, cal.session_break_start(session)), (cal.session_break_end(session), closes)]
    return [(opens, closes)]


def session_at(cal: xcals.ExchangeCalendar, moment: pd.Timestamp) -> pd.Timestamp:
    """The session trading at `moment` (UTC, inside the calendar's span), else the next one: the
    library's `minute_to_session(direction="next")` from its per-session arrays only. Its own
    call, and `first_minute`, build an array of every trading minute of the span first (about
    200 MiB resident for XNYS over 1970-2060, per exchange, for the life of the process)."""
    return cal.sessions[_session_index(cal, moment)]


def _session_index(cal: xcals.ExchangeCalendar, moment: pd.Timestamp) -> int:
    return int(np.searchsorted(cal.last_minutes_nanos, moment.floor("min").value))


@functools.lru_cache(maxsize=256)
def market_status(exchange: str, at: datetime) -> MarketStatus:
    """Open or closed at `at` (timezone-aware), with the next open and close after it; a lunch
    break counts as closed (it closes at the break and opens again after it). Raises
    OutsideCalendar when `at` or the following session lies outside the calendar's span.
    A function of its arguments and the fixed calendars: the last answers are kept (a cycle asks
    about its instant several times), and each session's intervals (_session_intervals)."""
    cal = calendar(exchange)
    name = xcals.resolve_alias(exchange)
    moment = (at - _EPOCH) // _MICROSECOND * 1000  # in nanoseconds, exact: a datetime holds microseconds
    first_minute, last_close = _status_span(name)
    if not first_minute <= moment < last_close:
        raise OutsideCalendar(exchange, at, cal.first_session.date(), cal.last_session.date())
    index = int(np.searchsorted(cal.last_minutes_nanos, moment - moment % _MINUTE))  # _session_index
    session, today = _session_intervals(name, index)
    intervals = today + _session_intervals(name, index + 1)[1]
    is_open = any(start <= moment < end for start, end in intervals)
    next_open = next(start for start, _ in intervals if start > moment)
    next_close = next(end for _, end in intervals if end > moment)
    return MarketStatus(exchange, is_open, _instant(next_open), _instant(next_close), session)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MINUTE = 60 * 10**9  # in nanoseconds


def _instant(nanos: int) -> datetime:
    """A session edge (UTC nanoseconds, a whole minute) as a datetime in UTC."""
    return _EPOCH + nanos // 1000 * _MICROSECOND


@functools.cache
def _status_span(name: str) -> tuple[int, int]:
    """The instants (UTC nanoseconds) market_status answers for: the session at one and the one
    after it must both lie inside the calendar's span."""
    cal = _build(name)
    return cal.session_first_minute(cal.first_session).value, cal.session_close(cal.sessions[-2]).value


@functools.lru_cache(maxsize=1024)
def _session_intervals(name: str, index: int) -> tuple[date, tuple[tuple[int, int], ...]]:
    """The date of the session at `index` of `name`'s calendar and its open intervals in UTC
    nanoseconds (_intervals_at's, as integers): one look-up per session, not per question."""
    cal = _build(name)
    return cal.sessions[index].date(), tuple((start.value, end.value) for start, end in _intervals_at(cal, index))


_NAT = np.iinfo(np.int64).min  # a session without a lunch break has NaT (this) as its break times


def _intervals_at(cal: xcals.ExchangeCalendar, index: int) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """_intervals of the session at `index`, from the calendar's arrays (no per-call table look-up)."""
    opens, closes = cal.opens_nanos[index], cal.closes_nanos[index]
    starts, ends = cal.break_starts_nanos[index], cal.break_ends_nanos[index]
    edges = [opens, closes] if starts == _NAT else [opens, starts, ends, closes]
    stamps = [pd.Timestamp(int(nanos), tz=UTC) for nanos in edges]
    return list(zip(stamps[::2], stamps[1::2], strict=True))


@dataclass(frozen=True)
class Session:
    """One trading session: its date and its first open and final close (UTC)."""

    day: date
    open: datetime
    close: datetime


MAX_SESSION_DAYS = 50 * 366  # the longest span one ListSessions answers


def sessions(exchange: str, start: date, end: date) -> list[Session]:
    """The sessions of `exchange` from `start` to `end` (inclusive), with each session's open and
    close from exchange-calendars (half days, daylight saving; a lunch break lies inside).
    Raises OutsideCalendar when the range leaves the calendar's span."""
    cal = calendar(exchange)
    first, last = cal.first_session.date(), cal.last_session.date()
    for day in (start, end):
        if not first <= day <= last:
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            raise OutsideCalendar(exchange, moment, first, last)
    days = cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))
    opens, closes = cal.opens[days], cal.closes[days]
    return [Session(d.date(), o.to_pydatetime(), c.to_pydatetime())
            for d, o, c in zip(days, opens, closes, strict=True)]


def exchange_from_name(name: str) -> str | None:
    """The MIC of a provider's exchange name (e.g. Yahoo's fullExchangeName), if known."""
    key = name.strip().upper()
    if key in EXCHANGES:
        return key
    return EXCHANGE_NAMES.get(key) or next((mic for n, mic in EXCHANGE_NAMES.items() if key.startswith(n)), None)
