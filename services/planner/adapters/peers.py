"""Reads from the other services the planner needs, returned as plain dataclasses (never
protobufs). One call per kind of data, except price history, which data serves per symbol."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import grpc
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common.client import Clients
from services.common.timestamps import from_timestamp
from services.planner.eligibility import Listing, PriceBar, Quote, TradingRules
from services.planner.scoring.inputs import Fundamentals, Holding, Metrics, PortfolioContext


@dataclass(frozen=True)
class PortfolioView:
    portfolio_hash: str
    base_currency: str
    total_value_base: float
    held_value_base: dict[str, float]  # symbol -> market value in the base currency
    cash_base: dict[str, float]        # currency -> balance valued in the base currency


@dataclass(frozen=True)
class ScoringSecurity:
    """An active equity as the scoring sees it (data ListSecurities)."""

    symbol: str
    country: str
    industry: str


@dataclass(frozen=True)
class MetricsView:
    metrics: Metrics
    as_of: date | None  # the last daily bar the metrics used; None without bars


@dataclass(frozen=True)
class FundamentalsView:
    fundamentals: Fundamentals
    key: str             # changes when any observation used changes; "" when none is known
    as_of: date | None   # the latest observation used


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

    # --- what the scoring reads (one call per kind of data) ---

    def scoring_universe(self) -> dict[str, ScoringSecurity]:
        """symbol -> every active equity of the universe."""
        securities = self._data.ListSecurities(data_pb2.ListSecuritiesRequest()).securities
        return {s.symbol: ScoringSecurity(s.symbol, s.country, s.industry) for s in securities
                if s.kind == data_pb2.EQUITY}

    def metrics(self, symbols: Sequence[str]) -> dict[str, MetricsView]:
        """symbol -> its metrics as of now (data GetMetrics, one call)."""
        if not symbols:
            return {}
        reply = self._data.GetMetrics(data_pb2.GetMetricsRequest(symbols=list(symbols)))
        return {m.symbol: MetricsView(Metrics.from_values(m.values, m.daily_bars, m.monthly_bars),
                                      date.fromisoformat(m.as_of) if m.as_of else None) for m in reply.metrics}

    def fundamentals(self, symbols: Sequence[str]) -> dict[str, FundamentalsView]:
        """symbol -> its fundamentals as of now (data GetFundamentals, one call); a field nobody
        observed is None."""
        if not symbols:
            return {}
        reply = self._data.GetFundamentals(data_pb2.GetFundamentalsRequest(symbols=list(symbols)))
        return {f.symbol: _fundamentals_view(f) for f in reply.fundamentals}

    def portfolio_context(self, universe: dict[str, ScoringSecurity]) -> PortfolioContext | None:
        """The portfolio the securities are scored in (diversification). Degrades to neutral:
        None (every diversification part 0.5) when the portfolio cannot be read. Allocation
        targets and group mappings are not served by the portfolio service yet: until they are,
        every group is untargeted (country and industry parts 0.5). Fill dates are not read here
        (`dates_known` stays False: a sell scored from this context is blocked)."""
        try:
            reply = self._portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest())
        except grpc.RpcError:
            return None
        holdings = {p.symbol: Holding(p.symbol, p.quantity, p.average_cost, p.price, p.market_value_base)
                    for p in reply.positions if p.quantity > 0}
        return PortfolioContext(
            total_value_base=reply.total_value_base, holdings=holdings,
            country_of={s: u.country for s, u in universe.items()},
            industry_of={s: u.industry for s, u in universe.items()})


def _fundamentals_view(message: data_pb2.Fundamentals) -> FundamentalsView:
    names = [name for name in Fundamentals.__dataclass_fields__ if name != "recommendation_key"]
    values = {name: getattr(message, name) if message.HasField(name) else None for name in names}
    facts = Fundamentals(recommendation_key=message.recommendation_key or None, **values)
    observed = sorted(message.observed_on.items())
    key = "" if not observed else hashlib.sha256(json.dumps(
        [observed, sorted((k, v) for k, v in vars(facts).items() if v is not None)]).encode()).hexdigest()[:16]
    as_of = max((date.fromisoformat(day) for _, day in observed), default=None)
    return FundamentalsView(facts, key, as_of)
