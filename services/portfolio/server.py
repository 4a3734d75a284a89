"""gRPC servicer for trader.portfolio.v1.Portfolio."""

from __future__ import annotations

from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.common import clock
from services.common.client import Clients
from services.common.config import CommonConfig
from services.common.db import Database
from services.common.errors import AlreadyExists, InvalidArgument
from services.common.timestamps import from_timestamp, to_timestamp
from services.common.validate import (
    MAX_QUANTITY,
    currency_code,
    finite_amount,
    non_negative_amount,
    parse_day,
    positive_amount,
    required_text,
)
from services.portfolio import store
from services.portfolio.valuation import Holding, Quote, UniverseEntry, portfolio_hash, value_portfolio


class PortfolioServicer(portfolio_pb2_grpc.PortfolioServicer):
    def __init__(self, config: CommonConfig, db: Database, clients: Clients):
        self._config = config
        self._db = db
        self._data = clients.stub("data", data_pb2_grpc.MarketDataStub)

    def _universe(self) -> list[UniverseEntry]:
        securities = self._data.ListSecurities(data_pb2.ListSecuritiesRequest()).securities
        return [universe_entry(s) for s in securities]

    def _hash(self, holdings, cash) -> str:
        return portfolio_hash(holdings, cash, self._universe())

    def GetPortfolio(self, request, context):
        return self._portfolio()

    def _portfolio(self) -> portfolio_pb2.GetPortfolioResponse:
        with self._db.transaction() as session:
            holdings = store.holdings(session)
            cash = store.cash(session)
            synced_at = store.broker_synced_at(session)
        quotes = {}
        if holdings:
            reply = self._data.GetQuotes(data_pb2.GetQuotesRequest(symbols=[h.symbol for h in holdings]))
            quotes = {q.symbol: Quote(q.price, q.currency, q.date) for q in reply.quotes}
        rates = self._data.GetFxRates(data_pb2.GetFxRatesRequest())
        valuation = value_portfolio(holdings, cash, quotes, rates.base_currency,
                                    {r.currency: r.rate for r in rates.rates})
        response = portfolio_pb2.GetPortfolioResponse(
            base_currency=rates.base_currency,
            positions_value_base=valuation.positions_value_base,
            cash_base=valuation.cash_base,
            total_value_base=valuation.total_value_base,
            portfolio_hash=self._hash(holdings, cash),
        )
        for p in valuation.positions:
            response.positions.add(
                symbol=p.holding.symbol, quantity=p.holding.quantity, average_cost=p.holding.average_cost,
                currency=p.holding.currency, price=p.price, price_date=p.price_date,
                market_value=p.market_value, market_value_base=p.market_value_base,
            )
        for currency, amount, amount_base in valuation.cash:
            response.cash.add(currency=currency, amount=amount, amount_base=amount_base)
        if synced_at is not None:
            response.broker_synced_at.CopyFrom(to_timestamp(synced_at))
        return response

    def TakeSnapshot(self, request, context):
        now = clock.now()
        valued = self._portfolio()
        row = store.SnapshotRow(date=now.date(), positions_value_base=valued.positions_value_base,
                                cash_base=valued.cash_base, total_value_base=valued.total_value_base,
                                base_currency=valued.base_currency, taken_at=now)
        with self._db.transaction() as session:
            store.save_snapshot(session, row)
        return _snapshot_to_proto(row)

    def ListSnapshots(self, request, context):
        if request.limit < 0:
            raise InvalidArgument("limit", "must not be negative")
        before = parse_day("before", request.before)
        with self._db.transaction() as session:
            rows = store.snapshots(session, before, min(request.limit or 100, 1000))
            return portfolio_pb2.ListSnapshotsResponse(snapshots=[_snapshot_to_proto(r) for r in rows])

    def RecordDeposit(self, request, context):
        amount = positive_amount("amount", request.amount, maximum=1e9)
        currency = currency_code("currency", request.currency, default=self._config.base_currency)
        reference = required_text("reference", request.reference)
        with self._db.transaction() as session:
            row = store.find_cash_flow(session, reference)
            if row is not None and (row.kind, row.amount, row.currency) != ("deposit", amount, currency):
                raise AlreadyExists(f"reference {reference!r} is already used by another cash flow")
            if row is None:
                row = store.add_cash_flow(session, "deposit", amount, currency, reference, clock.now())
        return _cash_flow_to_proto(row)

    def ListCashFlows(self, request, context):
        if request.limit < 0:
            raise InvalidArgument("limit", "must not be negative")
        with self._db.transaction() as session:
            rows = store.cash_flows(session, request.limit or 100)
        return portfolio_pb2.ListCashFlowsResponse(cash_flows=[_cash_flow_to_proto(r) for r in rows])

    def ApplyBrokerState(self, request, context):
        holdings = _holdings_from_request(request.positions)
        cash: dict[str, float] = {}
        for i, balance in enumerate(request.cash):
            currency = currency_code(f"cash[{i}].currency", balance.currency)
            if currency in cash:
                raise InvalidArgument(f"cash[{i}].currency", f"{currency} is listed twice")
            cash[currency] = finite_amount(f"cash[{i}].amount", balance.amount)
        synced_at = from_timestamp(request.synced_at, "synced_at") if request.HasField("synced_at") else clock.now()
        with self._db.transaction() as session:
            before = (store.holdings(session), store.cash(session))
            store.replace_broker_state(session, holdings, cash, synced_at)
        changed = before != (holdings, cash)
        return portfolio_pb2.ApplyBrokerStateResponse(changed=changed, portfolio_hash=self._hash(holdings, cash))


def universe_entry(security: data_pb2.Security) -> UniverseEntry:
    """The hash inputs of one security: allow flags, min/max portfolio targets (absent stays
    None, never 0), country and industry."""
    return UniverseEntry(
        security.symbol, security.allow_buy, security.allow_sell, security.country, security.industry,
        security.min_portfolio_target if security.HasField("min_portfolio_target") else None,
        security.max_portfolio_target if security.HasField("max_portfolio_target") else None,
    )


def _holdings_from_request(positions) -> list[Holding]:
    holdings = []
    seen = set()
    for i, p in enumerate(positions):
        symbol = required_text(f"positions[{i}].symbol", p.symbol, 32)
        if symbol in seen:
            raise InvalidArgument(f"positions[{i}].symbol", f"{symbol} is listed twice")
        seen.add(symbol)
        if not 0 <= p.quantity <= MAX_QUANTITY:
            raise InvalidArgument(f"positions[{i}].quantity", f"must be between 0 and {MAX_QUANTITY}")
        cost = non_negative_amount(f"positions[{i}].average_cost", p.average_cost)
        currency = currency_code(f"positions[{i}].currency", p.currency)
        if p.quantity > 0:
            holdings.append(Holding(symbol, p.quantity, cost, currency))
    return sorted(holdings, key=lambda h: h.symbol)


def _snapshot_to_proto(row: store.SnapshotRow) -> portfolio_pb2.Snapshot:
    return portfolio_pb2.Snapshot(date=row.date.isoformat(), positions_value_base=row.positions_value_base,
                                  cash_base=row.cash_base, total_value_base=row.total_value_base,
                                  base_currency=row.base_currency)


def _cash_flow_to_proto(row: store.CashFlowRow) -> portfolio_pb2.CashFlow:
    return portfolio_pb2.CashFlow(id=row.id, kind=row.kind, amount=row.amount, currency=row.currency,
                                  reference=row.reference, occurred_at=to_timestamp(row.occurred_at))
