"""gRPC servicer for trader.data.v1.MarketData: translates proto <-> domain, nothing else."""

from __future__ import annotations

import contextlib
import secrets
import threading
from datetime import date, datetime

import numpy as np
from sqlalchemy.orm import Session
from trader.data.v1 import data_pb2, data_pb2_grpc

from services.common import clock
from services.common.db import Database
from services.common.errors import InvalidArgument, NotFound
from services.common.maintenance import Maintenance
from services.common.maintenance_rpc import MaintenanceRpc
from services.common.money import convert
from services.common.revisions import KeptReads
from services.common.timestamps import to_timestamp
from services.common.validate import currency_code, finite_amount, parse_day, required_text
from services.data import engine, store
from services.data.adapters.csv_import import parse_yahoo_csv
from services.data.adapters.dividend_csv import parse_dividend_csv
from services.data.analytics import adjusted_closes, indicators_of
from services.data.bar_cache import BarCache, Series
from services.data.config import DataConfig
from services.data.fundamentals import IMPORT_SOURCE, TEXT_FIELDS, parse_import
from services.data.fundamentals import as_of as fundamentals_as_of
from services.data.fx import effective_rates, fixing_between, rates_as_of, reference_in_base, reference_window
from services.data.history import Bar, last_final_date, monthly_bars, resolve_range
from services.data.market_hours import MAX_SESSION_DAYS, OutsideCalendar, exchange_from_name, market_status, sessions
from services.data.providers import PriceProvider
from services.data.regime import market_regime
from services.data.universe import EQUITY, Security, detect_metadata, select_securities, validate_security

_INTERVALS = {data_pb2.INTERVAL_UNSPECIFIED: "DAILY", data_pb2.DAILY: "DAILY", data_pb2.MONTHLY: "MONTHLY"}
_KINDS = {data_pb2.SECURITY_KIND_UNSPECIFIED: EQUITY, data_pb2.EQUITY: "EQUITY", data_pb2.INDEX: "INDEX"}
SECURITIES_TABLES = ("securities",)  # what ListSecurities answers from


def security_to_proto(security: Security) -> data_pb2.Security:
    message = data_pb2.Security(
        symbol=security.symbol, name=security.name, currency=security.currency, exchange=security.exchange,
        country=security.country, sector=security.sector, industry=security.industry,
        lot_size=security.lot_size, active=security.active, allow_buy=security.allow_buy,
        allow_sell=security.allow_sell, kind=data_pb2.SecurityKind.Value(security.kind), isin=security.isin,
        bucket=security.bucket, yahoo_symbol=security.yahoo_symbol,
    )
    if security.min_target is not None:
        message.min_portfolio_target = security.min_target
    if security.max_target is not None:
        message.max_portfolio_target = security.max_target
    return message


def security_from_proto(message: data_pb2.Security) -> Security:
    if message.kind not in _KINDS:
        raise InvalidArgument("security.kind", f"unknown value {message.kind}")
    return Security(
        symbol=message.symbol.strip(), name=message.name.strip(), currency=message.currency.strip(),
        exchange=message.exchange.strip(), country=message.country.strip(), sector=message.sector.strip(),
        industry=message.industry.strip(), lot_size=message.lot_size or 1, active=message.active,
        allow_buy=message.allow_buy, allow_sell=message.allow_sell, kind=_KINDS[message.kind],
        isin=message.isin.strip().upper(), bucket=message.bucket.strip() or "core",
        yahoo_symbol=message.yahoo_symbol.strip(),
        min_target=message.min_portfolio_target if message.HasField("min_portfolio_target") else None,
        max_target=message.max_portfolio_target if message.HasField("max_portfolio_target") else None,
    )


def bar_to_proto(bar: Bar, flag: str | None = None) -> data_pb2.Bar:
    """A bar; an absent optional field (None) stays unset (protobuf's constructor skips None)."""
    return data_pb2.Bar(date=bar.date.isoformat(), close=bar.close, flag=flag, open=bar.open, high=bar.high,
                        low=bar.low, volume=bar.volume, adj_close=bar.adj_close)


def fundamentals_to_proto(symbol: str, fields: dict[str, tuple]) -> data_pb2.Fundamentals:
    """`fields`: field name -> (value, observed on, source), as fundamentals.as_of."""
    message = data_pb2.Fundamentals(symbol=symbol)
    for name, (value, observed_on, source) in fields.items():
        setattr(message, name, value if name in TEXT_FIELDS else float(value))
        message.observed_on[name] = observed_on.isoformat()
        message.sources[name] = source
    return message


def _symbols(field: str, symbols) -> list[str]:
    """The requested symbols, once each, in order; an empty one is refused naming its index."""
    for index, symbol in enumerate(symbols):
        if not symbol.strip():
            raise InvalidArgument(f"{field}[{index}]", "is empty")
    return list(dict.fromkeys(symbol.strip() for symbol in symbols))


def history_request(request) -> tuple[str, date | None, date | None]:
    """(interval, start, end) of a GetPriceHistory(ies) request, each checked."""
    if request.interval not in _INTERVALS:
        raise InvalidArgument("interval", f"unknown value {request.interval}; use DAILY or MONTHLY")
    return _INTERVALS[request.interval], parse_day("start", request.start), parse_day("end", request.end)


def history_to_proto(security: Security, rows: list[tuple[Bar, str | None, date | None]], end: date,
                     interval: str) -> data_pb2.GetPriceHistoryResponse:
    """A security's bars up to `end` (store.daily_bars_with_flags rows): daily with the flags known
    by `end`, or monthly averages of the bars valid as of `end`."""
    response = data_pb2.GetPriceHistoryResponse(symbol=security.symbol, currency=security.currency,
                                                interval=data_pb2.Interval.Value(interval))
    if interval == "MONTHLY":
        usable = [bar for bar, flag, known in rows if flag is None or known > end]
        response.bars.extend(bar_to_proto(b) for b in monthly_bars(usable))
    else:
        response.bars.extend(bar_to_proto(bar, flag if flag and known <= end else None) for bar, flag, known in rows)
    return response


class EncodedBars:
    """A series' bars, each serialized once as an element of GetPriceHistoryResponse.bars (its
    tag, length and Bar), so a reply is a join of bytes parsed by protobuf's C code instead of a
    Bar built in Python per bar and call. Encoded in blocks of BLOCK bars as replies need them."""

    BLOCK = 256

    def __init__(self, series: Series):
        self._series = series
        self._plain: list[bytes | None] = [None] * series.size  # each bar without its flag
        self._flagged: dict[int, bytes] = {}                     # a flagged bar's index -> the bar with its flag
        self._encoded: set[int] = set()                          # the blocks encoded
        self.flagged_at = np.array(sorted(series.flags), dtype=np.int64)  # the flagged indices, ascending

    def plain(self, first: int, last: int) -> list[bytes]:
        """The bars at indices first to last - 1, without their flags."""
        for block in range(first // self.BLOCK, (last - 1) // self.BLOCK + 1 if last > first else 0):
            if block not in self._encoded:
                self._encode(block)
        return self._plain[first:last]  # type: ignore[return-value]

    def flagged(self, index: int) -> bytes:
        """The flagged bar at `index` with its flag (its block is encoded)."""
        return self._flagged[index]

    def _encode(self, block: int) -> None:
        first = block * self.BLOCK
        rows = self._series.rows_at(first, min(first + self.BLOCK, self._series.size))
        for offset, (bar, flag, _) in enumerate(rows):
            self._plain[first + offset] = _element(bar_to_proto(bar))
            if flag is not None:
                self._flagged[first + offset] = _element(bar_to_proto(bar, flag))
        self._encoded.add(block)  # last: a concurrent reader encodes a block again, never reads it half done


def _element(bar: data_pb2.Bar) -> bytes:
    """`bar` as one element of GetPriceHistoryResponse.bars on the wire (proto3 leaves the other,
    unset fields out)."""
    return data_pb2.GetPriceHistoryResponse(bars=[bar]).SerializeToString()


def encoded_bars(series: Series) -> EncodedBars:
    """The series' EncodedBars, kept on the series (bar_cache.Series.memo): a Series is replaced
    when its bars or flags change, so these never outlive them."""
    found = series.memo.get(EncodedBars)
    if found is None:
        found = series.memo.setdefault(EncodedBars, EncodedBars(series))
    return found


def fill_daily_history(response: data_pb2.GetPriceHistoryResponse, security: Security, series: Series,
                       start: date | None, end: date) -> None:
    """Fill an empty `response` as history_to_proto(security, series.rows(start, end), end, "DAILY")
    does, from the series' encoded bars: a bar carries its flag when the flag is known by `end`."""
    first, last = series.span(start, end)
    encoded = encoded_bars(series)
    pieces = encoded.plain(first, last)
    flagged = encoded.flagged_at[np.searchsorted(encoded.flagged_at, first):np.searchsorted(encoded.flagged_at, last)]
    for index in flagged[series.flag_known[flagged] <= end.toordinal()].tolist():
        pieces[index - first] = encoded.flagged(index)
    response.symbol, response.currency, response.interval = security.symbol, security.currency, data_pb2.DAILY
    response.MergeFromString(b"".join(pieces))


def fill_history(response: data_pb2.GetPriceHistoryResponse, security: Security, series: Series,
                 start: date | None, end: date, interval: str) -> None:
    """Fill an empty `response` with the security's bars from `start` to `end` (history_to_proto)."""
    if interval == "DAILY":
        fill_daily_history(response, security, series, start, end)
    else:
        response.CopyFrom(history_to_proto(security, series.rows(start, end), end, interval))


class OnDemand:
    """A session of `db` in one transaction (Database.transaction), begun on first use: a call
    that only reads, answered from kept values (the securities, the bar cache, kept reads),
    begins none. Beginning and committing one (with its commit hooks) costs about as much as
    a small handler. Used as a context manager; an error rolls the transaction back."""

    def __init__(self, db: Database):
        self._db = db
        self._stack = contextlib.ExitStack()
        self._session: Session | None = None

    def _open(self) -> Session:
        if self._session is None:
            self._session = self._stack.enter_context(self._db.transaction())
        return self._session

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        """The session, begun now if not yet, for KeptReads.current (which ends nothing)."""
        return contextlib.nullcontext(self._open())

    def __getattr__(self, name: str):
        return getattr(self._open(), name)

    def __enter__(self) -> OnDemand:
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)


class MarketDataServicer(MaintenanceRpc, data_pb2_grpc.MarketDataServicer):
    def __init__(self, config: DataConfig, db: Database, provider: PriceProvider,
                 maintenance: Maintenance | None = None):
        self.use_maintenance(maintenance)
        self._config = config
        self._base = config.common.base_currency
        self._db = db
        self._provider = provider
        self._sync_lock = threading.Lock()
        self._bars = BarCache(db)
        self._kept = KeptReads(db.revisions)
        self._run = secrets.token_hex(4)  # this server run: the revisions count again from 0 after a restart

    # --- helpers ---

    def _securities_revision(self) -> str:
        """ListSecuritiesResponse.revision: this run and the securities table's revision. Taken
        before a read, so a list is never labelled newer than it is (revisions.py, coherence)."""
        return f"{self._run}:" + ".".join(map(str, self._db.revisions.of(SECURITIES_TABLES)))

    def _reading(self) -> OnDemand:
        """A session for a call that only reads, begun on first use (OnDemand)."""
        return OnDemand(self._db)

    def _kept_read(self, session, tables: tuple[str, ...], key, read):
        """self._kept.read(session, ...); for an OnDemand session, the kept value without
        beginning it (KeptReads.current)."""
        if isinstance(session, OnDemand):
            return self._kept.current(session.transaction, tables, key, read)
        return self._kept.read(session, tables, key, read)

    def _all_securities(self, session) -> tuple[tuple[int, Security], ...]:
        """store.all_securities, read once per revision of the securities."""
        return self._kept_read(session, ("securities",), "all", store.all_securities)

    def _listed(self, session, include_inactive: bool, include_indices: bool,
                **filters: str) -> list[tuple[int, Security]]:
        """store.list_securities, from the securities kept."""
        return select_securities(self._all_securities(session), include_inactive, include_indices, **filters)

    def _found(self, session, symbols) -> dict[str, tuple[int, Security]]:
        """store.find_securities, from the securities kept."""
        wanted = set(symbols)
        return {s.symbol: (i, s) for i, s in self._all_securities(session) if s.symbol in wanted}

    def _security(self, session, symbol: str, field: str = "symbol") -> tuple[int, Security]:
        if not symbol:
            raise InvalidArgument(field, "is required")
        found = self._found(session, [symbol]).get(symbol)
        if found is None:
            raise NotFound(f"unknown symbol {symbol!r}")
        return found

    def _as_of_date(self, text: str, visible: date) -> date:
        """A requested as-of date, never later than what is visible now."""
        day = parse_day("as_of", text)
        if day is None:
            return visible
        if day > visible:
            raise InvalidArgument("as_of", f"{day} is after now (latest visible date {visible})")
        return day

    def _rates(self, day: date, now: datetime) -> dict[str, tuple[float, str, str]]:
        """The rates that apply on `day` (store and fx.py decide which), as seen at `now`; kept per
        day and window until a rate is stored, from the stored rates and each year's fixings, kept
        until a rate is stored (a replay asks about a new day each cycle: no query for it)."""
        oldest, latest = reference_window(day, now)

        def read(session) -> dict[str, tuple[float, str, str]]:
            def fixings_of_year(year: int):
                return self._kept.read(session, ("reference_rates",), ("fixings", year),
                                       lambda read: store.reference_fixings(read, year))

            reference = reference_in_base(fixing_between(fixings_of_year, oldest, latest), self._base)
            stored = rates_as_of(self._kept.read(session, ("fx_rates",), "history", store.fx_rate_history), day)
            return effective_rates(self._config.common.fx_rates, stored, reference)

        return dict(self._kept.current(self._db.transaction, ("fx_rates", "reference_rates"), (day, oldest, latest),
                                       read))

    # --- universe ---

    def ListSecurities(self, request, context):
        """The reply is encoded once per revision of the securities and filter (the cycle asks the
        same several times), and parsed from those bytes for each call (protobuf's C code)."""
        filters = (request.include_inactive, request.include_indices, request.country, request.exchange,
                   request.currency, request.bucket)

        def encoded(session) -> bytes:
            securities = self._listed(session, *filters[:2], country=request.country, exchange=request.exchange,
                                      currency=request.currency, bucket=request.bucket)
            return data_pb2.ListSecuritiesResponse(
                securities=[security_to_proto(s) for _, s in securities]).SerializeToString()

        response = data_pb2.ListSecuritiesResponse(revision=self._securities_revision())
        response.MergeFromString(self._kept.current(self._db.transaction, SECURITIES_TABLES, ("listed", filters),
                                                    encoded))
        return response

    def GetSecurity(self, request, context):
        if not request.symbol and not request.isin:
            raise InvalidArgument("symbol", "give a symbol or an isin")
        with self._db.transaction() as session:
            row = store.find_security(session, request.symbol, request.isin.upper())
            if row is None:
                raise NotFound(f"unknown security {request.symbol or request.isin!r}")
            return security_to_proto(row.to_domain())

    def UpsertSecurity(self, request, context):
        if not request.HasField("security"):
            raise InvalidArgument("security", "is required")
        security = security_from_proto(request.security)
        if not security.symbol:
            raise InvalidArgument("security.symbol", "is required")
        if not (security.country and security.exchange and security.industry):
            security = detect_metadata(security, self._provider.info(security), exchange_from_name)
        security = validate_security(security)
        with self._db.transaction() as session:
            if security.isin:
                other = store.find_security(session, isin=security.isin)
                if other is not None and other.symbol != security.symbol:
                    raise InvalidArgument("security.isin", f"already used by {other.symbol}")
            before = store.find_security(session, security.symbol)
            moved = before is not None and before.exchange != security.exchange
            saved = security_to_proto(store.save_security(session, security).to_domain())
        if moved:  # another exchange, other trading days: its bars' flags change
            engine.revalidate_security(self._db, security.symbol)
        engine.load_reference_rates(self._db, {security.currency, self._base})
        return saved

    def DeactivateSecurity(self, request, context):
        with self._db.transaction() as session:
            _, security = self._security(session, request.symbol)
            row = store.find_security(session, security.symbol)
            row.active = False
            return security_to_proto(row.to_domain())

    # --- prices ---

    def GetPriceHistory(self, request, context):
        interval, start, end = history_request(request)
        now = clock.now()
        with self._reading() as session:
            security_id, security = self._security(session, request.symbol)
            start, end = resolve_range(start, end, last_final_date(now, security.exchange))
            series = self._bars.series(session, security_id)
        response = data_pb2.GetPriceHistoryResponse()
        fill_history(response, security, series, start, end, interval)
        return response

    def GetPriceHistories(self, request, context):
        interval, start, end = history_request(request)
        now = clock.now()
        with self._reading() as session:
            found = self._securities(session, list(request.symbols))
            ranges = {s: resolve_range(start, end, last_final_date(now, found[s][1].exchange)) for s in found}
            series = {s: self._bars.series(session, security_id) for s, (security_id, _) in found.items()}
        response = data_pb2.GetPriceHistoriesResponse()
        for symbol, (_, security) in found.items():
            fill_history(response.histories.add(), security, series[symbol], *ranges[symbol], interval)
        return response

    def _securities(self, session, symbols: list[str]) -> dict[str, tuple[int, Security]]:
        """symbol -> (id, security) for the requested symbols in order, repeated ones once; every
        active equity when none is requested. Raises INVALID_ARGUMENT for an empty symbol,
        NOT_FOUND naming the unknown ones."""
        for index, symbol in enumerate(symbols):
            if not symbol.strip():
                raise InvalidArgument(f"symbols[{index}]", "is empty")
        if not symbols:
            return {s.symbol: (i, s) for i, s in self._listed(session, False, False)}
        requested = list(dict.fromkeys(symbols))
        found = self._found(session, requested)
        unknown = [s for s in requested if s not in found]
        if unknown:
            raise NotFound(f"unknown symbols: {', '.join(unknown)}")
        return {s: found[s] for s in requested}

    def GetQuotes(self, request, context):
        now = clock.now()
        requested = list(dict.fromkeys(request.symbols))
        for index, symbol in enumerate(requested):
            if not symbol:
                raise InvalidArgument(f"symbols[{index}]", "is empty")
        response = data_pb2.GetQuotesResponse()
        with self._reading() as session:
            if requested:
                found = self._found(session, requested)
                unknown = [s for s in requested if s not in found]
                if unknown:
                    raise NotFound(f"unknown symbols: {', '.join(unknown)}")
            else:
                found = {s.symbol: (i, s) for i, s in self._listed(session, False, False)}
                requested = sorted(found)
            for symbol in requested:
                security_id, security = found[symbol]
                latest = self._bars.series(session, security_id).latest_valid(last_final_date(now, security.exchange))
                if latest is None:
                    response.unavailable.append(symbol)
                    continue
                day, close = latest
                response.quotes.add(symbol=symbol, price=close, currency=security.currency, date=day.isoformat())
        return response

    def ImportPrices(self, request, context):
        symbol = required_text("symbol", request.symbol, 32)
        bars = parse_yahoo_csv(request.csv)
        with self._db.transaction() as session:
            security_id, security = self._security(session, symbol)
            added, updated, unchanged = engine.store_imported(session, security_id, security, bars)
            flagged = store.flagged_count(session, security_id)
        return data_pb2.ImportPricesResponse(bars_added=added, bars_updated=updated, bars_unchanged=unchanged,
                                             bars_flagged=flagged)

    def SyncPrices(self, request, context):
        now = clock.now()
        with self._reading() as session:
            securities = self._listed(session, False, True)
        if request.symbols:
            known = {s.symbol for _, s in securities}
            unknown = [s for s in request.symbols if s not in known]
            if unknown:
                raise NotFound(f"unknown symbols: {', '.join(unknown)}")
            securities = [(i, s) for i, s in securities if s.symbol in set(request.symbols)]
        with self._sync_lock:  # Unavailable from the provider: nothing stored
            result = engine.sync_prices(self._db, self._provider, securities, now.date(),
                                        sorted(self._config.common.fx_rates), self._base, self._config.retention_days,
                                        self._kept)
        latest = None
        with self._reading() as session:
            for security_id, security in self._listed(session, False, True):
                day = self._bars.series(session, security_id).latest_stored(last_final_date(now, security.exchange))
                if day is not None and (latest is None or day > latest):
                    latest = day
        return data_pb2.SyncPricesResponse(
            provider=self._provider.name, bars_added=result.added, bars_updated=result.updated,
            bars_flagged=result.flagged, latest_bar_date=latest.isoformat() if latest else "",
            symbols_synced=result.synced, securities_revision=self._securities_revision(),
        )

    # --- indicators ---

    def _indicators(self, session, securities: list[tuple[int, Security]],
                    as_of: str) -> list[data_pb2.GetIndicatorsResponse]:
        """Each security's indicators as of `as_of` (at most what is visible now on its exchange)."""
        now = clock.now()
        wanted = [(security_id, self._as_of_date(as_of, last_final_date(now, security.exchange)))
                  for security_id, security in securities]
        return [data_pb2.GetIndicatorsResponse(
            symbol=security.symbol, as_of=found.last_day.isoformat() if found.last_day else "", values=found.values,
            cached=found.cached, daily_bars=found.daily_bars, monthly_bars=found.monthly_bars)
            for (_, security), found in zip(securities, indicators_of(session, self._bars, wanted, clock.wall_now()),
                                            strict=True)]

    def GetIndicators(self, request, context):
        with self._reading() as session:
            return self._indicators(session, [self._security(session, request.symbol)], request.as_of)[0]

    def GetMetrics(self, request, context):
        """One reply per requested symbol, in order (every active equity when none is); the
        securities are read in one query."""
        with self._reading() as session:
            if not request.symbols:
                found = self._listed(session, False, False)
            else:
                known = self._found(session, request.symbols)
                found = [self._known(known, symbol, f"symbols[{i}]") for i, symbol in enumerate(request.symbols)]
            return data_pb2.GetMetricsResponse(metrics=self._indicators(session, found, request.as_of))

    @staticmethod
    def _known(known: dict[str, tuple[int, Security]], symbol: str, field: str) -> tuple[int, Security]:
        """`symbol`'s (id, security) among those read; the errors of _security."""
        if not symbol:
            raise InvalidArgument(field, "is required")
        if symbol not in known:
            raise NotFound(f"unknown symbol {symbol!r}")
        return known[symbol]

    # --- FX ---

    def GetFxRates(self, request, context):
        now = clock.now()
        day = self._as_of_date(request.as_of, now.date())
        rates = self._rates(day, now)
        return data_pb2.GetFxRatesResponse(
            base_currency=self._base, source=", ".join(sorted({s for _, _, s in rates.values()})),
            rates=[data_pb2.FxRate(currency=c, rate=r, date=d, source=s) for c, (r, d, s) in sorted(rates.items())],
        )

    def Convert(self, request, context):
        amount = finite_amount("amount", request.amount)
        source = currency_code("from_currency", request.from_currency)
        target = currency_code("to_currency", request.to_currency)
        now = clock.now()
        day = self._as_of_date(request.as_of, now.date())
        rates = {c: r for c, (r, _, _) in self._rates(day, now).items()}
        converted = convert(amount, source, target, self._base, rates)
        rate = convert(1.0, source, target, self._base, rates)
        return data_pb2.ConvertResponse(amount=converted, rate=rate)

    # --- market hours and regime ---

    def GetMarketStatus(self, request, context):
        at = clock.parse_as_of(request.as_of, "as_of") if request.as_of else clock.now()
        exchange = request.exchange.strip().upper()
        try:
            status = market_status(exchange, at)
        except OutsideCalendar as exc:
            if request.as_of:  # the caller's own instant: a bad argument; "now": a limit of the data
                first, last = exc.span
                raise InvalidArgument("as_of", f"{request.as_of!r} is outside the {exchange} calendar "
                                               f"({first} to {last})") from exc
            raise
        return data_pb2.GetMarketStatusResponse(
            exchange=status.exchange, open=status.open, next_open=to_timestamp(status.next_open),
            next_close=to_timestamp(status.next_close), session_date=status.session.isoformat())

    def ListSessions(self, request, context):
        exchange = request.exchange.strip().upper()
        start, end = parse_day("start", request.start), parse_day("end", request.end)
        if start is None or end is None:
            raise InvalidArgument("start" if start is None else "end", "is required (YYYY-MM-DD)")
        if end < start:
            raise InvalidArgument("end", f"{end} is before start {start}")
        if (end - start).days > MAX_SESSION_DAYS:
            raise InvalidArgument("end", f"more than {MAX_SESSION_DAYS} days after start; ask in parts")
        try:
            found = sessions(exchange, start, end)
        except OutsideCalendar as exc:
            first, last = exc.span
            field = "start" if not first <= start <= last else "end"
            raise InvalidArgument(field, f"{getattr(request, field)!r} is outside the {exchange} calendar "
                                         f"({first} to {last})") from exc
        return data_pb2.ListSessionsResponse(exchange=exchange, sessions=[
            data_pb2.MarketSession(date=s.day.isoformat(), open=to_timestamp(s.open), close=to_timestamp(s.close))
            for s in found])

    def GetMarketRegime(self, request, context):
        with self._reading() as session:
            security_id, security = self._security(session, self._config.regime_index)
            through = self._as_of_date(request.as_of, last_final_date(clock.now(), security.exchange))
            series = self._bars.series(session, security_id)
        index = series.valid(through)
        regime, distance = market_regime(adjusted_closes(series, index))
        response = data_pb2.GetMarketRegimeResponse(
            regime=regime, index_symbol=security.symbol,
            as_of=date.fromordinal(int(series.days[index[-1]])).isoformat() if len(index) else "")
        if distance is not None:
            response.distance = distance
        return response

    # --- fundamentals ---

    def _equities(self, field: str, requested) -> list[str]:
        symbols = _symbols(field, requested)
        if symbols:
            return symbols
        with self._reading() as session:
            return [s.symbol for _, s in self._listed(session, False, False)]

    def GetFundamentals(self, request, context):
        day = self._as_of_date(request.as_of, clock.now().date())
        symbols = self._equities("symbols", request.symbols)
        with self._reading() as session:
            found = self._found(session, symbols)
            unknown = [symbol for symbol in symbols if symbol not in found]
            if unknown:
                raise NotFound(f"unknown symbols: {', '.join(unknown)}")
            history = self._kept_read(session, ("fundamentals",), "all", store.fundamentals_history)
        known = fundamentals_as_of(history, [found[symbol][0] for symbol in symbols], day)
        return data_pb2.GetFundamentalsResponse(as_of=day.isoformat(), fundamentals=[
            fundamentals_to_proto(symbol, known.get(found[symbol][0], {})) for symbol in symbols])

    def ImportFundamentals(self, request, context):
        observations = parse_import(request.content, request.format)
        saved = engine.save_fundamentals(self._db, observations, IMPORT_SOURCE, clock.wall_now())
        return data_pb2.ImportFundamentalsResponse(
            observations_added=saved.added, observations_updated=saved.updated,
            observations_unchanged=saved.unchanged, symbols=saved.symbols)

    def SyncFundamentals(self, request, context):
        symbols = self._equities("symbols", request.symbols)
        with self._db.transaction() as session:
            found = self._found(session, symbols)
        unknown = [symbol for symbol in symbols if symbol not in found]
        if unknown:
            raise NotFound(f"unknown symbols: {', '.join(unknown)}")
        observed_at = clock.wall_now()
        saved, unavailable = engine.sync_fundamentals(self._db, self._provider, [found[s][1] for s in symbols],
                                                      observed_at)
        return data_pb2.SyncFundamentalsResponse(
            provider=self._provider.name, observed_on=observed_at.date().isoformat(), observations_added=saved.added,
            observations_updated=saved.updated, unavailable=unavailable)

    # --- dividends ---

    def GetDividends(self, request, context):
        """Dividends per share by ex-date for many symbols; an ex-date after "now" stays hidden."""
        visible = clock.now().date()
        start, end = parse_day("start", request.start), parse_day("end", request.end)
        end = min(end, visible) if end is not None else visible
        if start is not None and start > end:
            raise InvalidArgument("start", f"{start} is after end {end}")
        requested = list(dict.fromkeys(request.symbols))
        for index, symbol in enumerate(requested):
            if not symbol:
                raise InvalidArgument(f"symbols[{index}]", "is empty")
        with self._reading() as session:
            if requested:
                found = self._found(session, requested)
                unknown = [s for s in requested if s not in found]
                if unknown:
                    raise NotFound(f"unknown symbols: {', '.join(unknown)}")
            else:
                found = {s.symbol: (i, s) for i, s in self._listed(session, False, False)}
            by_id = {security_id: security for security_id, security in found.values()}
            stored = self._kept_read(session, ("dividends",), "all", store.all_dividends)
        rows = store.dividends_between(stored, by_id, start, end)
        return data_pb2.GetDividendsResponse(dividends=sorted(
            (data_pb2.Dividend(symbol=by_id[i].symbol, date=day.isoformat(), amount=amount,
                               currency=by_id[i].currency, source=source) for i, day, amount, source in rows),
            key=lambda d: (d.symbol, d.date)))

    def ImportDividends(self, request, context):
        symbol = required_text("symbol", request.symbol, 32)
        dividends = parse_dividend_csv(request.csv)
        with self._db.transaction() as session:
            security_id, _ = self._security(session, symbol)
            added, updated, unchanged = store.upsert_dividends(session, security_id, dividends, "import")
        return data_pb2.ImportDividendsResponse(added=added, updated=updated, unchanged=unchanged)
