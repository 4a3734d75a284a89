"""gRPC servicer for trader.data.v1.MarketData: translates proto <-> domain, nothing else."""

from __future__ import annotations

import threading

from trader.data.v1 import data_pb2, data_pb2_grpc

from services.common import clock
from services.common.config import CommonConfig
from services.common.db import Database
from services.common.errors import InvalidArgument, NotFound
from services.data import store
from services.data.adapters.sample_history import PROVIDER, SampleHistory
from services.data.history import Bar, last_final_date, monthly_bars, parse_date, resolve_range
from services.data.universe import Security

_INTERVALS = {data_pb2.INTERVAL_UNSPECIFIED: "DAILY", data_pb2.DAILY: "DAILY", data_pb2.MONTHLY: "MONTHLY"}


def security_to_proto(security: Security) -> data_pb2.Security:
    return data_pb2.Security(
        symbol=security.symbol, name=security.name, currency=security.currency, exchange=security.exchange,
        country=security.country, sector=security.sector, industry=security.industry,
        lot_size=security.lot_size, active=security.active, allow_buy=security.allow_buy,
        allow_sell=security.allow_sell, kind=data_pb2.SecurityKind.Value(security.kind),
    )


def bar_to_proto(bar: Bar) -> data_pb2.Bar:
    message = data_pb2.Bar(date=bar.date.isoformat(), close=bar.close)
    for field in ("open", "high", "low", "volume"):
        value = getattr(bar, field)
        if value is not None:
            setattr(message, field, value)
    return message


def sync_sample(db: Database, sample: SampleHistory) -> int:
    """Store the bundled history: securities and every bar not stored yet. Idempotent."""
    added = 0
    with db.transaction() as session:
        extent = store.stored_extent(session)
        for security in sample.securities:
            security_id = store.ensure_security(session, security)
            bars = sample.bars[security.symbol]
            if bars and extent.get(security_id) == (len(bars), bars[-1].date):
                continue  # everything the provider has is stored already
            added += store.add_missing_bars(session, security_id, bars)
    return added


class MarketDataServicer(data_pb2_grpc.MarketDataServicer):
    def __init__(self, config: CommonConfig, db: Database, sample: SampleHistory):
        self._config = config
        self._db = db
        self._sample = sample
        self._sync_lock = threading.Lock()

    def _security(self, session, symbol: str) -> tuple[int, Security]:
        if not symbol:
            raise InvalidArgument("symbol", "is required")
        found = store.find_securities(session, [symbol]).get(symbol)
        if found is None:
            raise NotFound(f"unknown symbol {symbol!r}")
        return found

    def ListSecurities(self, request, context):
        with self._db.transaction() as session:
            securities = store.list_securities(session, request.include_inactive, request.include_indices)
        return data_pb2.ListSecuritiesResponse(securities=[security_to_proto(s) for _, s in securities])

    def GetPriceHistory(self, request, context):
        if request.interval not in _INTERVALS:
            raise InvalidArgument("interval", f"unknown value {request.interval}; use DAILY or MONTHLY")
        start = parse_date("start", request.start)
        end = parse_date("end", request.end)
        now = clock.now()
        with self._db.transaction() as session:
            security_id, security = self._security(session, request.symbol)
            start, end = resolve_range(start, end, last_final_date(now, security.exchange))
            bars = store.daily_bars(session, security_id, start, end)
        interval = _INTERVALS[request.interval]
        if interval == "MONTHLY":
            bars = monthly_bars(bars)
        return data_pb2.GetPriceHistoryResponse(
            symbol=security.symbol, currency=security.currency,
            interval=data_pb2.Interval.Value(interval), bars=[bar_to_proto(b) for b in bars],
        )

    def GetQuotes(self, request, context):
        now = clock.now()
        requested = list(dict.fromkeys(request.symbols))
        for index, symbol in enumerate(requested):
            if not symbol:
                raise InvalidArgument(f"symbols[{index}]", "is empty")
        response = data_pb2.GetQuotesResponse()
        with self._db.transaction() as session:
            if requested:
                found = store.find_securities(session, requested)
                unknown = [s for s in requested if s not in found]
                if unknown:
                    raise NotFound(f"unknown symbols: {', '.join(unknown)}")
            else:
                found = {s.symbol: (i, s) for i, s in store.list_securities(session, False, False)}
                requested = sorted(found)
            for symbol in requested:
                security_id, security = found[symbol]
                bar = store.latest_bar(session, security_id, last_final_date(now, security.exchange))
                if bar is None:
                    response.unavailable.append(symbol)
                else:
                    response.quotes.add(symbol=symbol, price=bar.close, currency=security.currency,
                                        date=bar.date.isoformat())
        return response

    def GetFxRates(self, request, context):
        return data_pb2.GetFxRatesResponse(
            base_currency=self._config.base_currency,
            rates=[data_pb2.FxRate(currency=c, rate=r) for c, r in sorted(self._config.fx_rates.items())],
            source="configured (TRADER_FX_RATES)",
        )

    def SyncPrices(self, request, context):
        now = clock.now()
        with self._sync_lock:
            added = sync_sample(self._db, self._sample)
        latest = None
        with self._db.transaction() as session:
            for security_id, security in store.list_securities(session, False, True):
                bar = store.latest_bar(session, security_id, last_final_date(now, security.exchange))
                if bar is not None and (latest is None or bar.date > latest):
                    latest = bar.date
        return data_pb2.SyncPricesResponse(
            provider=PROVIDER, bars_added=added, latest_bar_date=latest.isoformat() if latest else ""
        )
