"""Reads from the other services that the checks need. A read that fails returns None (the
check then refuses: fail closed), except an unknown symbol, which is the caller's mistake."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import grpc
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.common.client import Clients
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.common.timestamps import from_timestamp
from services.trading.adapters.broker import DividendPerShare


@dataclass(frozen=True)
class MarketSession:
    """An exchange at an instant: open or not, and the session an order placed then trades in
    (the current one, or the next while closed) with its close."""

    open: bool
    session_date: date
    close: datetime


class ServiceReads:
    def __init__(self, clients: Clients):
        self._data = clients.stub("data", data_pb2_grpc.MarketDataStub)
        self._portfolio = clients.stub("portfolio", portfolio_pb2_grpc.PortfolioStub)

    def security(self, symbol: str) -> data_pb2.Security:
        try:
            return self._data.GetSecurity(data_pb2.GetSecurityRequest(symbol=symbol))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"unknown symbol {symbol!r}") from exc
            raise Unavailable(f"market data: {exc.details()}") from exc

    def market_session(self, exchange: str, now: datetime) -> MarketSession | None:
        """The exchange at `now` (one GetMarketStatus); None when it cannot be told."""
        if not exchange:
            return None
        try:
            reply = self._data.GetMarketStatus(data_pb2.GetMarketStatusRequest(exchange=exchange,
                                                                              as_of=now.isoformat()))
            return MarketSession(reply.open, date.fromisoformat(reply.session_date),
                                 from_timestamp(reply.next_close, "next_close"))
        except (grpc.RpcError, ValueError, InvalidArgument):  # unreadable or a malformed reply: unknown
            return None

    def closes(self, symbols: Sequence[str], start: date) -> dict[str, list[tuple[date, float]]] | None:
        """symbol -> (date, close) of its valid daily bars from `start` up to now (one
        GetPriceHistories; flagged bars left out); None when the market data cannot be read."""
        try:
            reply = self._data.GetPriceHistories(data_pb2.GetPriceHistoriesRequest(
                symbols=list(symbols), start=start.isoformat(), interval=data_pb2.DAILY))
        except grpc.RpcError:
            return None
        return {h.symbol: [(date.fromisoformat(b.date), b.close) for b in h.bars if not b.flag]
                for h in reply.histories}

    def quote(self, symbol: str) -> tuple[float, date] | None:
        try:
            quotes = self._data.GetQuotes(data_pb2.GetQuotesRequest(symbols=[symbol])).quotes
        except grpc.RpcError:
            return None
        return (quotes[0].price, date.fromisoformat(quotes[0].date)) if quotes else None

    def rates(self) -> tuple[str, dict[str, float]]:
        try:
            reply = self._data.GetFxRates(data_pb2.GetFxRatesRequest())
        except grpc.RpcError as exc:
            raise Unavailable(f"market data: FX rates: {exc.details()}") from exc
        return reply.base_currency, {r.currency: r.rate for r in reply.rates}

    def dividends(self, symbols: list[str], start: date, end: date) -> list[DividendPerShare] | None:
        """Dividends per share by ex-date for the symbols (one GetDividends); None when unreadable."""
        try:
            reply = self._data.GetDividends(data_pb2.GetDividendsRequest(symbols=symbols, start=start.isoformat(),
                                                                         end=end.isoformat()))
        except grpc.RpcError:
            return None
        return [DividendPerShare(d.symbol, date.fromisoformat(d.date), d.amount) for d in reply.dividends]

    def daily_pnl(self, today: date) -> tuple[bool, float | None]:
        """(armed, P&L vs the last snapshot before today, deposits and withdrawals since
        excluded), one GetDailyPnl. Not armed without such a snapshot; a failed read is armed and
        unknown (None), so the breaker refuses (fail closed)."""
        try:
            reply = self._portfolio.GetDailyPnl(portfolio_pb2.GetDailyPnlRequest(as_of=today.isoformat()))
        except grpc.RpcError:
            return True, None
        if not reply.armed:
            return False, None
        return True, reply.daily_pnl if reply.HasField("daily_pnl") else None
