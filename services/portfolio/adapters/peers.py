"""The other services the portfolio asks, as plain dataclasses (never protobufs). One batched
call per kind of data: the universe, the quotes of many symbols, the FX rates, the dividends of
many symbols. A failed call raises the gRPC error; the servicer reports it (UNAVAILABLE when the
peer is down), never a guess."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

import grpc
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.display.v1 import display_pb2, display_pb2_grpc

from services.common.background import ContextExecutor
from services.common.client import Clients
from services.common.clock import PerInstant
from services.common.logs import event
from services.portfolio.valuation import Quote

log = logging.getLogger("trader.portfolio.peers")
ALERT_TTL_SECONDS = 24 * 3600
_READS = ContextExecutor(max_workers=4, thread_name_prefix="portfolio-reads")
T = TypeVar("T")
# data's securities revision a caller handed forward for the call being served (universe_at)
_HANDED_REVISION: ContextVar[str] = ContextVar("universe_revision", default="")


@contextmanager
def universe_at(revision: str) -> Iterator[None]:
    """Within: the universe last read serves without a ListSecurities if it was read at
    `revision` (data's securities revision as the caller last heard it, e.g. the cycle's
    SyncPricesResponse.securities_revision); "" or another revision: it is read. Reads started
    in_background inside go along (they run in a copy of this context)."""
    token = _HANDED_REVISION.set(revision)
    try:
        yield
    finally:
        _HANDED_REVISION.reset(token)


def in_background(read: Callable[..., T], *args) -> Future[T]:
    """Start a read of another service while this call reads its own database; `.result()`
    returns its answer or raises its error. It runs in a copy of this call's context, so the
    as-of time and the trace go along."""
    return _READS.submit(read, *args)


@dataclass(frozen=True)
class Security:
    symbol: str
    currency: str
    country: str
    sector: str
    industry: str
    bucket: str
    lot_size: int
    allow_buy: bool
    allow_sell: bool
    min_target: float | None
    max_target: float | None


@dataclass(frozen=True)
class Rates:
    base: str
    rates: dict[str, float]  # units of the currency per 1 base unit (decisions.md rule 1)

    def rate(self, currency: str) -> float | None:
        return 1.0 if currency == self.base else self.rates.get(currency)


@dataclass(frozen=True)
class DividendPerShare:
    symbol: str
    day: date       # ex-date (Yahoo's dividend date)
    amount: float   # per share, in the security's currency


class Peers:
    """In simulated time the rates and the quotes read for the current as-of instant are kept
    for it (clock.PerInstant): a replay cycle values the account three times at one instant
    (snapshot, planner, loss breaker) with one read of each. The universe is read every time:
    the owner may change a security's targets or flags at any instant, and the hash must follow;
    an answer the same as the last one (byte for byte) is the same list, converted once, so what
    was computed from it is recognised by identity. Within universe_at(revision) the last list
    serves as it is when it was read at that revision of data's securities (nothing changed since)."""

    def __init__(self, clients: Clients):
        self._data = clients.stub("data", data_pb2_grpc.MarketDataStub)
        self._display = clients.stub("display", display_pb2_grpc.DisplayStub)
        self._instant = PerInstant()
        # (the reply's bytes without its revision, its securities, the revision it was read at)
        self._universe: tuple[bytes, list[Security], str] | None = None

    def securities(self) -> list[Security]:
        """Every active equity of the universe (one ListSecurities, none within universe_at of
        the revision it was last read at). Shared between calls: never change the list."""
        kept = self._universe
        handed = _HANDED_REVISION.get()
        if handed and kept is not None and kept[2] == handed:
            return kept[1]
        reply = self._data.ListSecurities(data_pb2.ListSecuritiesRequest())
        revision = reply.revision
        reply.ClearField("revision")
        encoded = reply.SerializeToString(deterministic=True)
        if kept is not None and kept[0] == encoded:
            self._universe = (encoded, kept[1], revision)
            return kept[1]
        securities = self._securities(reply)
        self._universe = (encoded, securities, revision)
        return securities

    @staticmethod
    def _securities(reply: data_pb2.ListSecuritiesResponse) -> list[Security]:
        return [Security(s.symbol, s.currency, s.country, s.sector, s.industry, s.bucket or "core",
                         max(1, s.lot_size), s.allow_buy, s.allow_sell,
                         s.min_portfolio_target if s.HasField("min_portfolio_target") else None,
                         s.max_portfolio_target if s.HasField("max_portfolio_target") else None)
                for s in reply.securities]

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        if not symbols:
            return {}
        wanted = tuple(sorted(set(symbols)))
        return self._instant.get(("quotes", wanted), lambda: self._quotes(wanted))

    def _quotes(self, symbols: tuple[str, ...]) -> dict[str, Quote]:
        reply = self._data.GetQuotes(data_pb2.GetQuotesRequest(symbols=symbols))
        return {q.symbol: Quote(q.price, q.currency, q.date) for q in reply.quotes}

    def rates(self) -> Rates:
        return self._instant.get("rates", self._rates)

    def _rates(self) -> Rates:
        reply = self._data.GetFxRates(data_pb2.GetFxRatesRequest())
        return Rates(reply.base_currency, {r.currency: r.rate for r in reply.rates if r.rate > 0})

    def dividends(self, symbols: list[str], start: date, end: date) -> list[DividendPerShare]:
        """Dividends per share with ex-dates in [start, end], for many symbols (one GetDividends)."""
        if not symbols:
            return []
        reply = self._data.GetDividends(data_pb2.GetDividendsRequest(symbols=sorted(set(symbols)),
                                                                     start=start.isoformat(), end=end.isoformat()))
        return [DividendPerShare(d.symbol, date.fromisoformat(d.date), d.amount) for d in reply.dividends]

    def post_alert(self, source: str, text: str) -> bool:
        """On the display's error pool; False (logged) when the display cannot be reached."""
        try:
            self._display.PostMessage(display_pb2.PostMessageRequest(
                pool=display_pb2.ERROR, text=text[:200], ttl_seconds=ALERT_TTL_SECONDS, source=source))
            return True
        except grpc.RpcError as exc:
            event(log, "alert not shown: the display is unreachable", logging.WARNING, source=source, text=text,
                  code=exc.code().name if hasattr(exc, "code") else "")
            return False

    def clear_alert(self, source: str) -> bool:
        """Off the display's error pool; False (logged) when the display cannot be reached."""
        try:
            self._display.ClearMessage(display_pb2.ClearMessageRequest(pool=display_pb2.ERROR, source=source))
            return True
        except grpc.RpcError:
            event(log, "alert not cleared: the display is unreachable", logging.WARNING, source=source)
            return False
