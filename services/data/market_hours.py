"""Market hours from exchange-calendars: holidays, half days and lunch breaks included.

The exchanges are the original's (data-display.md section 6). An unknown exchange is refused;
callers that must decide whether to trade treat "unknown" as closed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime

import exchange_calendars as xcals
import pandas as pd

from services.common.errors import InvalidArgument

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


@dataclass(frozen=True)
class MarketStatus:
    exchange: str
    open: bool
    next_open: datetime
    next_close: datetime
    session: date


@functools.cache
def calendar(exchange: str) -> xcals.ExchangeCalendar:
    if exchange not in EXCHANGES:
        raise InvalidArgument("exchange", f"unknown exchange {exchange!r}; known: {', '.join(EXCHANGES)}")
    return xcals.get_calendar(exchange)


def _intervals(cal: xcals.ExchangeCalendar, session: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The open intervals of a session: one, or two around a lunch break."""
    opens, closes = cal.session_open(session), cal.session_close(session)
    if cal.session_has_break(session):
        return [(opens, cal.session_break_start(session)), (cal.session_break_end(session), closes)]
    return [(opens, closes)]


def market_status(exchange: str, at: datetime) -> MarketStatus:
    """Open or closed at `at` (timezone-aware), with the next open and close after it; a lunch
    break counts as closed (it closes at the break and opens again after it)."""
    cal = calendar(exchange)
    moment = pd.Timestamp(at.astimezone(UTC))
    if not cal.first_minute <= moment.floor("min") <= cal.last_minute:
        raise InvalidArgument("as_of", f"outside the {exchange} calendar ({cal.first_session.date()} to "
                                       f"{cal.last_session.date()})")
    session = cal.minute_to_session(moment.floor("min"), direction="next")
    intervals = _intervals(cal, session) + _intervals(cal, cal.next_session(session))
    is_open = any(start <= moment < end for start, end in intervals)
    next_open = next(start for start, _ in intervals if start > moment)
    next_close = next(end for _, end in intervals if end > moment)
    return MarketStatus(exchange, is_open, next_open.to_pydatetime(), next_close.to_pydatetime(), session.date())


def exchange_from_name(name: str) -> str | None:
    """The MIC of a provider's exchange name (e.g. Yahoo's fullExchangeName), if known."""
    key = name.strip().upper()
    if key in EXCHANGES:
        return key
    return EXCHANGE_NAMES.get(key) or next((mic for n, mic in EXCHANGE_NAMES.items() if key.startswith(n)), None)
