"""Reads from the other services the planner needs, returned as plain dataclasses (never
protobufs). One call per kind of data, except price history, which data serves per symbol."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import grpc
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common.client import Clients
from services.common.timestamps import from_timestamp
from services.planner.eligibility import Listing, PriceBar, Quote, TradingRules


@dataclass(frozen=True)
class PortfolioView:
    portfolio_hash: str
    base_currency: str
    total_value_base: float
    held_value_base: dict[str, float]  # symbol -> market value in the base currency
    cash_base: dict[str, float]        # currency -> balance valued in the base currency


class Peers:
    def __init__(self, clients: Clients):
        self._data = clients.stub("data", data_pb2_grpc.MarketDataStub)
        self._portfolio = clients.stub("portfolio", portfolio_pb2_grpc.PortfolioStub)
        self._trading = clients.stub("trading", trading_pb2_grpc.TradingStub)

    def portfolio(self) -> PortfolioView:
        reply = self._portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest())
        return PortfolioView(reply.portfolio_hash, reply.base_currency, reply.total_value_base,
                             {p.symbol: p.market_value_base for p in reply.positions},
                             {c.currency: c.amount_base for c in reply.cash})

    def trading_rules(self) -> TradingRules:
        reply = self._trading.GetSettings(trading_pb2.GetSettingsRequest())
        return TradingRules(reply.max_price_age_days, reply.buy_cooldown_days, reply.price_band,
                            reply.auto_convert_currency)

    def buys(self, limit: int = 1000) -> list[tuple[str, datetime]]:
        """(symbol, executed_at) of the newest BUY fills."""
        trades = self._trading.ListTrades(trading_pb2.ListTradesRequest(limit=limit)).trades
        return [(t.symbol, from_timestamp(t.executed_at)) for t in trades if t.side == trading_pb2.BUY]

    def listings(self) -> list[Listing]:
        securities = self._data.ListSecurities(data_pb2.ListSecuritiesRequest()).securities
        return [Listing(s.symbol, s.currency, s.lot_size, s.allow_buy, s.kind == data_pb2.EQUITY,
                        s.min_portfolio_target if s.HasField("min_portfolio_target") else None,
                        s.max_portfolio_target if s.HasField("max_portfolio_target") else None, s.exchange)
                for s in securities]

    def market_open(self, exchange: str, now: datetime) -> bool | None:
        """Whether `exchange` is open at `now`; None when it cannot be told (counted closed)."""
        try:
            return self._data.GetMarketStatus(data_pb2.GetMarketStatusRequest(
                exchange=exchange, as_of=now.isoformat())).open
        except grpc.RpcError:
            return None

    def fx_rates(self) -> tuple[str, dict[str, float]]:
        reply = self._data.GetFxRates(data_pb2.GetFxRatesRequest())
        return reply.base_currency, {r.currency: r.rate for r in reply.rates}

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """The quotes trading checks orders against; a symbol without one is absent."""
        if not symbols:
            return {}
        reply = self._data.GetQuotes(data_pb2.GetQuotesRequest(symbols=symbols))
        return {q.symbol: Quote(q.price, date.fromisoformat(q.date)) for q in reply.quotes}

    def daily_bars(self, symbol: str, start: date) -> list[PriceBar]:
        bars = self._data.GetPriceHistory(data_pb2.GetPriceHistoryRequest(
            symbol=symbol, start=start.isoformat(), interval=data_pb2.DAILY)).bars
        return [PriceBar(b.date, b.close, b.adj_close if b.HasField("adj_close") else None, b.flag) for b in bars]
