"""gRPC servicer for trader.trading.v1.Trading.

Every order, from a plan or submitted by hand, goes through `_submit`: validate, refuse a
repeated client order id, persist the intent, run the checks, then call the broker. A refusal
is stored on the order (REJECTED, with the rule) and returned as FAILED_PRECONDITION.
"""

from __future__ import annotations

import threading

import grpc
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common import clock
from services.common.client import Clients
from services.common.config import CommonConfig
from services.common.db import Database
from services.common.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.common.money import from_base
from services.common.timestamps import to_timestamp
from services.common.validate import currency_code, positive_amount, required_text
from services.trading import orders, store
from services.trading.adapters.broker import BrokerRejected, MarketOrder
from services.trading.adapters.paper_broker import PaperBroker

_SIDES = {trading_pb2.BUY: orders.BUY, trading_pb2.SELL: orders.SELL}


def order_to_proto(row: store.OrderRow) -> trading_pb2.Order:
    return trading_pb2.Order(
        id=row.id, client_order_id=row.client_order_id, symbol=row.symbol,
        side=trading_pb2.Side.Value(row.side), quantity=row.quantity,
        state=trading_pb2.OrderState.Value(row.state), reason=row.reason, currency=row.currency,
        fill_price=row.fill_price, commission=row.commission,
        created_at=to_timestamp(store.utc(row.created_at)), updated_at=to_timestamp(store.utc(row.updated_at)),
    )


def trade_to_proto(row: store.TradeRow) -> trading_pb2.Trade:
    return trading_pb2.Trade(
        id=row.id, broker_trade_id=row.broker_trade_id, order_id=row.order_id or 0,
        client_order_id=row.client_order_id, symbol=row.symbol, side=trading_pb2.Side.Value(row.side),
        quantity=row.quantity, price=row.price, currency=row.currency, commission=row.commission,
        executed_at=to_timestamp(store.utc(row.executed_at)),
    )


def _limit(value: int) -> int:
    if value < 0:
        raise InvalidArgument("limit", "must not be negative")
    return min(value or 100, 1000)


class TradingServicer(trading_pb2_grpc.TradingServicer):
    def __init__(self, config: CommonConfig, db: Database, broker: PaperBroker, clients: Clients):
        self._config = config
        self._db = db
        self._broker = broker
        self._data = clients.stub("data", data_pb2_grpc.MarketDataStub)
        self._lock = threading.Lock()  # one order at a time: checks and fills see a consistent account

    # --- market reads (never stored; a failure leaves nothing behind) ---

    def _security(self, symbol: str) -> data_pb2.Security:
        for security in self._data.ListSecurities(data_pb2.ListSecuritiesRequest(include_indices=True)).securities:
            if security.symbol == symbol:
                return security
        raise NotFound(f"unknown symbol {symbol!r}")

    def _quote(self, symbol: str) -> data_pb2.Quote | None:
        try:
            reply = self._data.GetQuotes(data_pb2.GetQuotesRequest(symbols=[symbol]))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"unknown symbol {symbol!r}") from exc
            raise
        return reply.quotes[0] if reply.quotes else None

    def _rates(self) -> tuple[str, dict[str, float]]:
        reply = self._data.GetFxRates(data_pb2.GetFxRatesRequest())
        return reply.base_currency, {r.currency: r.rate for r in reply.rates}

    # --- the one order path ---

    def _submit(self, intent: orders.OrderIntent) -> store.OrderRow:
        with self._lock:
            with self._db.transaction() as session:
                if store.find_order(session, intent.client_order_id) is not None:
                    raise AlreadyExists(f"client_order_id {intent.client_order_id!r} was used before")
            security = self._security(intent.symbol)
            orders.check_lot(intent.quantity, security.lot_size)
            quote = self._quote(intent.symbol)
            base, rates = self._rates()
            now = clock.now()
            with self._db.transaction() as session:
                order_id = store.add_order(session, intent, security.currency, now).id  # the intent, first
            try:
                self._check(intent, security, quote, base, rates, now)
            except DomainError as refusal:
                self._finish(order_id, orders.REJECTED, refusal.message, now)
                raise
            return self._place(order_id, intent, security.currency, quote.price, now)

    def _check(self, intent, security, quote, base, rates, now) -> None:
        allowed = security.allow_buy if intent.side == orders.BUY else security.allow_sell
        if not allowed or security.kind != data_pb2.EQUITY:
            rule = "allow_buy" if intent.side == orders.BUY else "allow_sell"
            raise FailedPrecondition(rule, f"{intent.symbol} may not be {'bought' if rule == 'allow_buy' else 'sold'}")
        if quote is None or not quote.price > 0:
            raise FailedPrecondition("price_unavailable", f"no valid price for {intent.symbol} as of now")
        account = self._broker.account()
        if intent.side == orders.SELL:
            held = next((p.quantity for p in account.positions if p.symbol == intent.symbol), 0)
            orders.check_holding(intent.quantity, held, intent.symbol)
            return
        value = intent.quantity * quote.price
        required = value + orders.commission(value, security.currency, base, rates)
        available = account.cash.get(security.currency, 0.0)
        if security.currency != base:
            convert_base = orders.conversion_for(required, available, security.currency,
                                                 account.cash.get(base, 0.0), base, rates)
            if convert_base > 0:
                amount = orders.round_cents_up(convert_base)
                self._broker.convert(base, amount, security.currency,
                                     from_base(amount, security.currency, base, rates),
                                     f"fx:{intent.client_order_id}", now)
                available = self._broker.account().cash.get(security.currency, 0.0)
        orders.check_cash(required, available, security.currency)

    def _place(self, order_id: int, intent, currency: str, price: float, now) -> store.OrderRow:
        self._finish(order_id, orders.SUBMITTED, "", now)
        order = MarketOrder(intent.client_order_id, intent.symbol, intent.side, intent.quantity, currency, price)
        try:
            execution = self._broker.place_market_order(order, now)
        except BrokerRejected as exc:
            self._finish(order_id, orders.REJECTED, f"broker: {exc}", now)
            raise FailedPrecondition("broker_rejected", str(exc)) from exc
        except Exception as exc:
            # The broker may or may not have the order: only a lookup (SyncBroker) may tell.
            self._finish(order_id, orders.UNKNOWN_OUTCOME, f"broker call failed: {type(exc).__name__}", now)
            raise Unavailable(f"broker outcome unknown for {intent.client_order_id}; resolved at next sync") from exc
        with self._db.transaction() as session:
            store.record_execution(session, execution, now)
            return session.get(store.OrderRow, order_id)

    def _finish(self, order_id: int, state: str, reason: str, now) -> None:
        with self._db.transaction() as session:
            store.set_state(session, order_id, state, reason, now)

    # --- RPCs ---

    def SubmitOrder(self, request, context):
        intent = orders.validate_intent(request.client_order_id, request.symbol,
                                        _SIDES.get(request.side, ""), request.quantity, request.reason)
        return order_to_proto(self._submit(intent))

    def ExecutePlan(self, request, context):
        response = trading_pb2.ExecutePlanResponse()
        if not request.steps:
            response.outcome = trading_pb2.ExecutePlanResponse.NOTHING_TO_DO
            return response
        plan_id = required_text("plan_id", request.plan_id, 64)
        step = request.steps[0]  # one trade per cycle (decisions.md rule 22)
        side = _SIDES.get(step.side, "")
        client_order_id = orders.plan_client_order_id(plan_id, 1, step.symbol, side)
        with self._db.transaction() as session:
            existing = store.find_order(session, client_order_id)
            if existing is not None:
                response.outcome = trading_pb2.ExecutePlanResponse.ALREADY_EXECUTED
                response.order.CopyFrom(order_to_proto(existing))
                return response
        intent = orders.validate_intent(client_order_id, step.symbol, side, step.quantity,
                                        step.reason or f"plan {plan_id} step 1")
        response.outcome = trading_pb2.ExecutePlanResponse.EXECUTED
        response.order.CopyFrom(order_to_proto(self._submit(intent)))
        return response

    def ListOrders(self, request, context):
        with self._db.transaction() as session:
            rows = store.orders(session, _limit(request.limit))
            return trading_pb2.ListOrdersResponse(orders=[order_to_proto(r) for r in rows])

    def ListTrades(self, request, context):
        with self._db.transaction() as session:
            rows = store.trades(session, _limit(request.limit))
            return trading_pb2.ListTradesResponse(trades=[trade_to_proto(r) for r in rows])

    def SyncBroker(self, request, context):
        now = clock.now()
        with self._lock:
            imported = 0
            for execution in self._broker.executions():
                with self._db.transaction() as session:
                    imported += store.record_execution(session, execution, now)
            account = self._broker.account()
        response = trading_pb2.SyncBrokerResponse(broker=self._broker.name, trades_imported=imported,
                                                  synced_at=to_timestamp(now))
        for p in account.positions:
            response.positions.add(symbol=p.symbol, quantity=p.quantity, average_cost=p.average_cost,
                                   currency=p.currency)
        for currency, amount in sorted(account.cash.items()):
            response.cash.add(currency=currency, amount=amount)
        return response

    def FundPaperAccount(self, request, context):
        amount = positive_amount("amount", request.amount, maximum=1e9)
        currency = currency_code("currency", request.currency, default=self._config.base_currency)
        reference = required_text("reference", request.reference)
        applied = self._broker.deposit(amount, currency, reference, clock.now())
        cash = sorted(self._broker.account().cash.items())
        return trading_pb2.FundPaperAccountResponse(
            applied=applied, cash=[trading_pb2.BrokerCash(currency=c, amount=a) for c, a in cash]
        )
