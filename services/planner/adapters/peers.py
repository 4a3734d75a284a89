"""Reads from the other services the planner needs, returned as plain dataclasses (never
protobufs). One method, and one call, per kind of data whatever the number of securities
(market status: one per strict exchange, at most four). The optimiser and the scoring share
them: the securities, quotes, metrics, fundamentals and the portfolio are read once and handed
to both."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import grpc
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common.background import ContextExecutor
from services.common.client import Clients
from services.common.timestamps import from_timestamp, to_timestamp
from services.planner.adapters.closes import ClosesCache, history_records
from services.planner.eligibility import Listing, Quote, TradingRules
from services.planner.optimizer.risk import Closes
from services.planner.optimizer.sectors import GroupTargets
from services.planner.scoring.inputs import Fundamentals, Holding, Metrics
from services.planner.settings import NO_ALLOCATIONS_HASH

SIDES = {trading_pb2.BUY: "BUY", trading_pb2.SELL: "SELL"}


@dataclass(frozen=True)
class PortfolioView:
    portfolio_hash: str
    base_currency: str
    total_value_base: float
    cash_base: dict[str, float]   # currency -> balance valued in the base currency
    holdings: dict[str, Holding] = field(default_factory=dict)  # symbol -> position (quantity > 0)
    cash: dict[str, float] = field(default_factory=dict)  # currency -> balance in that currency

    @property
    def held_value_base(self) -> dict[str, float]:
        """symbol -> market value in the base currency."""
        return {symbol: holding.value_base for symbol, holding in self.holdings.items()}

    @property
    def quantities(self) -> dict[str, int]:
        """symbol -> shares held."""
        return {symbol: holding.quantity for symbol, holding in self.holdings.items()}


@dataclass(frozen=True)
class Fill:
    """A trade trading executed (ListTrades)."""

    symbol: str
    side: str                # BUY or SELL
    executed_at: datetime
    client_order_id: str


@dataclass(frozen=True)
class Regime:
    name: str    # bull, bear or sideways
    note: str    # why it is sideways by default, when it could not be read


@dataclass(frozen=True)
class AllocationTargets:
    groups: GroupTargets
    allocations_hash: str


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
        self._pool = ContextExecutor(max_workers=2, thread_name_prefix="planner-reads")
        self._closes = ClosesCache()
        # GetPriceHistories as received (bytes): the cache compares each history's bytes with the
        # last ones it converted, instead of serializing the parsed reply again.
        self._price_histories = clients.channel("data").unary_unary(
            "/trader.data.v1.MarketData/GetPriceHistories",
            request_serializer=data_pb2.GetPriceHistoriesRequest.SerializeToString, response_deserializer=None,
            _registered_method=True)
        self._listings = _Converted(_listings)
        self._fundamentals = _Converted(_fundamentals_view)

    def together(self, first: Callable[[], Any], *others: Callable[[], Any]) -> list[Any]:
        """read_together on this adapter's pool. Each read should go to another service than
        the rest (a service still answers one call of a cycle at a time, as when read in order)."""
        return read_together(self._pool, first, *others)

    def portfolio(self) -> PortfolioView:
        """The positions (quantity, average cost, price, value, the dates of their fills) and
        cash. This is the one place that reads positions."""
        return portfolio_view(self._portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest()))

    def portfolio_or_none(self) -> PortfolioView | None:
        """`portfolio()`, or None when the portfolio service cannot answer (ScoreSecurities then
        scores diversification neutral rather than not at all)."""
        try:
            return self.portfolio()
        except grpc.RpcError:
            return None

    def allocation_targets(self) -> AllocationTargets:
        """The portfolio's country and industry group targets, which group each country and
        industry belongs to, and their hash. No targets: no sector constraints. This is the one
        place that reads them."""
        reply = self._portfolio.GetAllocationTargets(portfolio_pb2.GetAllocationTargetsRequest())
        country_groups = {m: g.name for g in reply.country_groups for m in g.members}
        industry_groups = {m: g.name for g in reply.industry_groups for m in g.members}
        for security in reply.securities:  # the mapping as the portfolio applies it, defaults included
            if security.country and security.country_group:
                country_groups.setdefault(security.country, security.country_group)
            if security.industry and security.industry_group:
                industry_groups.setdefault(security.industry, security.industry_group)
        groups = GroupTargets(
            country={g.name: g.target for g in reply.country_groups if g.HasField("target")},
            industry={g.name: g.target for g in reply.industry_groups if g.HasField("target")},
            country_groups=country_groups, industry_groups=industry_groups)
        return AllocationTargets(groups, reply.allocations_hash or NO_ALLOCATIONS_HASH)

    def bucket_kind(self, bucket_id: str) -> str:
        """"core" or "satellite" (portfolio GetBucket; its NOT_FOUND is passed on)."""
        return self._portfolio.GetBucket(portfolio_pb2.GetBucketRequest(id=bucket_id)).kind

    def trading_rules(self) -> TradingRules:
        reply = self._trading.GetSettings(trading_pb2.GetSettingsRequest())
        return TradingRules(reply.max_price_age_days, reply.buy_cooldown_days, reply.price_band,
                            reply.auto_convert_currency, reply.min_hold_days, reply.sell_cooldown_days,
                            reply.max_sell_loss)

    def fills(self, since: datetime | None = None, limit: int = 1000) -> list[Fill]:
        """The newest trades (executed at or after `since`), newest first."""
        request = trading_pb2.ListTradesRequest(limit=limit)
        if since is not None:
            request.since.CopyFrom(to_timestamp(since))
        trades = self._trading.ListTrades(request).trades
        return [Fill(t.symbol, SIDES.get(t.side, ""), from_timestamp(t.executed_at, "trades.executed_at"),
                     t.client_order_id) for t in trades]

    def listings(self) -> list[Listing]:
        return list(self._listings(self._data.ListSecurities(data_pb2.ListSecuritiesRequest())))

    def market_open(self, exchange: str, now: datetime) -> bool | None:
        """Whether `exchange` is open at `now`; None when it cannot be told (counted closed)."""
        try:
            return self._data.GetMarketStatus(data_pb2.GetMarketStatusRequest(
                exchange=exchange, as_of=now.isoformat())).open
        except grpc.RpcError:
            return None

    def market_regime(self) -> Regime:
        """The data service's regime (index against its 200-day average); sideways, with the
        reason, when it cannot be read (planner.md section 5: any error counts sideways)."""
        try:
            return Regime(self._data.GetMarketRegime(data_pb2.GetMarketRegimeRequest()).regime, "")
        except grpc.RpcError as exc:
            return Regime("sideways", f"market regime unknown ({exc.details()}): sideways assumed")

    def fx_rates(self) -> tuple[str, dict[str, float]]:
        reply = self._data.GetFxRates(data_pb2.GetFxRatesRequest())
        return reply.base_currency, {r.currency: r.rate for r in reply.rates}

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """The quotes trading checks orders against; a symbol without one is absent."""
        if not symbols:
            return {}
        reply = self._data.GetQuotes(data_pb2.GetQuotesRequest(symbols=symbols))
        return {q.symbol: Quote(q.price, date.fromisoformat(q.date)) for q in reply.quotes}

    def valid_closes(self, symbols: Sequence[str], start: date, lookback: int) -> dict[str, Closes]:
        """symbol -> its last `lookback` valid daily closes from `start` up to now (one call):
        eligibility.valid_closes of its daily bars, only the bars not seen before converted
        (adapters/closes.py)."""
        if not symbols:
            return {}
        received = self._price_histories(data_pb2.GetPriceHistoriesRequest(
            symbols=list(symbols), start=start.isoformat(), interval=data_pb2.DAILY))
        histories = data_pb2.GetPriceHistoriesResponse.FromString(received).histories
        return {h.symbol: self._closes.closes(h, lookback, record)
                for h, record in zip(histories, history_records(received, len(histories)), strict=True)}

    def metrics(self, symbols: Sequence[str]) -> dict[str, MetricsView]:
        """symbol -> its metrics as of now (data GetMetrics, one call): what the scoring reads,
        and the CAGR of the optimiser's expected returns."""
        if not symbols:
            return {}
        reply = self._data.GetMetrics(data_pb2.GetMetricsRequest(symbols=list(symbols)))
        return {m.symbol: MetricsView(Metrics.from_values(m.values, m.daily_bars, m.monthly_bars),
                                      date.fromisoformat(m.as_of) if m.as_of else None) for m in reply.metrics}

    def fundamentals(self, symbols: Sequence[str]) -> dict[str, FundamentalsView]:
        """symbol -> its fundamentals as of now (data GetFundamentals, one call): what the
        scoring reads, and the dividend yield of the optimiser's expected returns; a field
        nobody observed is None (unknown, never 0)."""
        if not symbols:
            return {}
        reply = self._data.GetFundamentals(data_pb2.GetFundamentalsRequest(symbols=list(symbols)))
        return {f.symbol: self._fundamentals(f) for f in reply.fundamentals}


class _Converted:
    """A conversion of protobuf messages that reuses its last result for a message whose bytes
    (serialized, in C) are those it was converted from: equal bytes are the same message, so the
    result is the same. Keeps the last result per kind of message and symbol; thread-safe (a race
    converts again)."""

    def __init__(self, convert: Callable[[Any], Any], capacity: int = 4096):
        self._convert = convert
        self._capacity = capacity
        self._kept: dict[tuple[str, str], tuple[bytes, Any]] = {}

    def __call__(self, message: Any) -> Any:
        key = (type(message).__name__, getattr(message, "symbol", ""))
        raw = message.SerializeToString(deterministic=True)
        kept = self._kept.get(key)
        if kept is not None and kept[0] == raw:
            return kept[1]
        value = self._convert(message)
        if len(self._kept) >= self._capacity and key not in self._kept:
            self._kept.clear()
        self._kept[key] = (raw, value)
        return value


def _listings(reply: data_pb2.ListSecuritiesResponse) -> tuple[Listing, ...]:
    return tuple(Listing(s.symbol, s.currency, s.lot_size, s.allow_buy, s.kind == data_pb2.EQUITY,
                         s.min_portfolio_target if s.HasField("min_portfolio_target") else None,
                         s.max_portfolio_target if s.HasField("max_portfolio_target") else None, s.exchange,
                         s.allow_sell, s.country, s.industry)
                 for s in reply.securities)


def read_together(pool: ContextExecutor, first: Callable[[], Any], *others: Callable[[], Any]) -> list[Any]:
    """The results of `first` and `others`, in order, read at the same time: `first` in this
    thread, each other in a `pool` thread within a copy of this thread's context, so its calls
    carry the request's as-of time and trace (services/common/client.py). Every read finishes
    before an error is raised: the first failing read's in order, as if they had been read one
    after the other."""
    futures = [pool.submit(read) for read in others]
    outcomes = [_outcome(read) for read in (first, *(future.result for future in futures))]
    for _, error in outcomes:
        if error is not None:
            raise error
    return [result for result, _ in outcomes]


def _outcome(read: Callable[[], Any]) -> tuple[Any, Exception | None]:
    try:
        return read(), None
    except Exception as error:  # noqa: BLE001 - raised by Peers.together once every read finished
        return None, error


def _fundamentals_view(message: data_pb2.Fundamentals) -> FundamentalsView:
    names = [name for name in Fundamentals.__dataclass_fields__ if name != "recommendation_key"]
    values = {name: getattr(message, name) if message.HasField(name) else None for name in names}
    facts = Fundamentals(recommendation_key=message.recommendation_key or None, **values)
    observed = sorted(message.observed_on.items())
    key = "" if not observed else hashlib.sha256(json.dumps(
        [observed, sorted((k, v) for k, v in vars(facts).items() if v is not None)]).encode()).hexdigest()[:16]
    as_of = max((date.fromisoformat(day) for _, day in observed), default=None)
    return FundamentalsView(facts, key, as_of)


def portfolio_view(reply: portfolio_pb2.GetPortfolioResponse, field: str = "positions") -> PortfolioView:
    """The planner's view of a GetPortfolio reply (the positions held, quantity > 0); a fill
    time out of range is InvalidArgument naming `field`[index].<name>."""
    holdings = {p.symbol: Holding(p.symbol, p.quantity, p.average_cost, p.price, p.market_value_base,
                                  first_buy=_day(p, "first_bought_at", f"{field}[{i}]"),
                                  last_buy=_day(p, "last_bought_at", f"{field}[{i}]"),
                                  last_sell=_day(p, "last_sold_at", f"{field}[{i}]"), dates_known=True)
                for i, p in enumerate(reply.positions) if p.quantity > 0}
    return PortfolioView(reply.portfolio_hash, reply.base_currency, reply.total_value_base,
                         {c.currency: c.amount_base for c in reply.cash}, holdings,
                         {c.currency: c.amount for c in reply.cash})


def _day(position: portfolio_pb2.Position, name: str, field: str) -> date | None:
    """The date of one of a position's fill times; None when there is no such fill."""
    return from_timestamp(getattr(position, name), f"{field}.{name}").date() if position.HasField(name) else None
