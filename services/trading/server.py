"""gRPC servicer for trader.trading.v1.Trading: proto <-> domain; the order path is engine.py."""

from __future__ import annotations

from dataclasses import asdict

from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common import clock
from services.common.config import CommonConfig
from services.common.db import Database
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.maintenance import Maintenance
from services.common.maintenance_rpc import MaintenanceRpc
from services.common.revisions import KeptSince
from services.common.timestamps import from_timestamp, to_timestamp
from services.common.validate import currency_code, finite_amount, positive_amount, required_text
from services.trading import orders, store
from services.trading.engine import OrderEngine
from services.trading.risk import RiskSettings

_SIDES = {trading_pb2.BUY: orders.BUY, trading_pb2.SELL: orders.SELL}


def order_to_proto(row: store.OrderRow, events: list[store.OrderEventRow] = ()) -> trading_pb2.Order:
    return trading_pb2.Order(
        id=row.id, client_order_id=row.client_order_id, symbol=row.symbol,
        side=trading_pb2.Side.Value(row.side), quantity=row.quantity,
        state=trading_pb2.OrderState.Value(row.state), reason=row.reason, currency=row.currency,
        fill_price=row.fill_price, commission=row.commission, filled_quantity=row.filled_quantity or 0,
        limit_price=row.limit_price or 0.0, realized_pnl=row.realized_pnl or 0.0, bucket=row.bucket or "core",
        created_at=to_timestamp(row.created_at), updated_at=to_timestamp(row.updated_at),
        events=[trading_pb2.OrderEvent(state=trading_pb2.OrderState.Value(e.state), reason=e.reason,
                                       at=to_timestamp(e.at)) for e in events],
    )


def trade_to_proto(row) -> trading_pb2.Trade:
    """`row`: a store.TradeRow, or a row of its columns (store.trades)."""
    return trading_pb2.Trade(
        id=row.id, broker_trade_id=row.broker_trade_id, order_id=row.order_id or 0,
        client_order_id=row.client_order_id, symbol=row.symbol, side=trading_pb2.Side.Value(row.side),
        quantity=row.quantity, price=row.price, currency=row.currency, commission=row.commission,
        executed_at=to_timestamp(row.executed_at), realized_pnl=row.realized_pnl or 0.0, bucket=row.bucket or "core",
    )


def cash_movement_to_proto(row: store.CashMovementRow) -> trading_pb2.CashMovement:
    return trading_pb2.CashMovement(id=row.id, broker_id=row.broker_id, kind=row.kind, amount=row.amount,
                                    currency=row.currency, at=to_timestamp(row.at), description=row.description,
                                    symbol=row.symbol or "", reference=row.reference or "")


def settings_to_proto(settings: RiskSettings) -> trading_pb2.Settings:
    return trading_pb2.Settings(**asdict(settings))


def _encoded_trades(session, since) -> list[tuple]:
    """(executed at, the trade encoded as a ListTradesResponse.trades element) of the trades
    executed at or after `since`, newest first."""
    return [(row.executed_at, trading_pb2.ListTradesResponse(trades=[trade_to_proto(row)]).SerializeToString())
            for row in store.trades(session, None, 0, since)]


def _limit(value: int) -> int:
    if value < 0:
        raise InvalidArgument("limit", "must not be negative")
    return min(value or 100, 1000)


def _before_id(value: int) -> int:
    if value < 0:
        raise InvalidArgument("before_id", "must not be negative")
    return value


def _intent(request) -> tuple[orders.OrderIntent, float | None]:
    intent = orders.validate_intent(request.client_order_id, request.symbol, _SIDES.get(request.side, ""),
                                    request.quantity, request.reason)
    limit_price = None
    if request.HasField("limit_price"):
        limit_price = positive_amount("limit_price", finite_amount("limit_price", request.limit_price))
    return intent, limit_price


class TradingServicer(MaintenanceRpc, trading_pb2_grpc.TradingServicer):
    def __init__(self, config: CommonConfig, db: Database, engine: OrderEngine, maintenance: Maintenance | None = None):
        self.use_maintenance(maintenance)
        self._config = config
        self._db = db
        self._engine = engine
        # ListTrades' trades since a date, newest first, each encoded once until a trade is recorded.
        self._recent_trades = KeptSince(db.revisions, ("trades",))
        self._last_settings: tuple[RiskSettings, trading_pb2.Settings] | None = None

    def SubmitOrder(self, request, context):
        intent, limit_price = _intent(request)
        return order_to_proto(self._engine.submit(intent, limit_price, clock.now()))

    def CheckOrder(self, request, context):
        intent, limit_price = _intent(request)
        try:
            approval, currency = self._engine.check(intent, limit_price, clock.now())
        except FailedPrecondition as refusal:
            return trading_pb2.CheckOrderResponse(allowed=False, rule=refusal.rule, detail=refusal.message)
        return trading_pb2.CheckOrderResponse(
            allowed=True, quantity=approval.quantity, reference_price=approval.reference_price,
            limit_price=approval.limit_price, required_cash=approval.required_cash, currency=currency)

    def ExecutePlan(self, request, context):
        response = trading_pb2.ExecutePlanResponse()
        if not request.steps:
            response.outcome = trading_pb2.ExecutePlanResponse.NOTHING_TO_DO
            return response
        plan_id = required_text("plan_id", request.plan_id, 64)
        step = request.steps[0]  # one trade per cycle (decisions.md rule 22)
        side = _SIDES.get(step.side, "")
        orders.validate_intent("plan", step.symbol, side, step.quantity, step.reason)
        already, row = self._engine.execute_plan(plan_id, step.symbol, side, step.quantity, step.reason,
                                                 clock.now())
        response.outcome = (trading_pb2.ExecutePlanResponse.ALREADY_EXECUTED if already
                            else trading_pb2.ExecutePlanResponse.EXECUTED)
        response.order.CopyFrom(order_to_proto(row))
        return response

    def GetOrder(self, request, context):
        with self._db.transaction() as session:
            row = self._find(session, request)
            return order_to_proto(row, store.order_events(session, row.id))

    def CancelOrder(self, request, context):
        with self._db.transaction() as session:
            row = self._find(session, request)
        return order_to_proto(self._engine.cancel(row, clock.now()))

    def _find(self, session, request) -> store.OrderRow:
        if request.id:
            row = store.find_order_by_id(session, request.id)
        elif request.client_order_id:
            row = store.find_order(session, request.client_order_id)
        else:
            raise InvalidArgument("id", "give an id or a client_order_id")
        if row is None:
            raise NotFound(f"no order {request.id or request.client_order_id!r}")
        return row

    def ListOrders(self, request, context):
        with self._db.transaction() as session:
            rows = store.orders(session, _limit(request.limit), _before_id(request.before_id))
            return trading_pb2.ListOrdersResponse(orders=[order_to_proto(r) for r in rows])

    def ListTrades(self, request, context):
        since = from_timestamp(request.since, "since") if request.HasField("since") else None
        limit, before_id = _limit(request.limit), _before_id(request.before_id)
        if since is None or before_id:
            with self._db.transaction() as session:
                rows = store.trades(session, limit, before_id, since)
            return trading_pb2.ListTradesResponse(trades=[trade_to_proto(r) for r in rows])
        response = trading_pb2.ListTradesResponse()  # the cycle's question: the trades since a date
        trades = self._recent_trades.values(self._db.transaction, since, _encoded_trades)
        response.MergeFromString(b"".join(trades[:limit]))
        return response

    def SyncBroker(self, request, context):
        after = None
        if request.HasField("after"):
            if request.after.trade_id < 0 or request.after.cash_movement_id < 0:
                raise InvalidArgument("after", "ledger ids must not be negative")
            after = (request.after.trade_id, request.after.cash_movement_id)
        now = clock.now()
        imported, moved, account = self._engine.sync_account(now)
        response = trading_pb2.SyncBrokerResponse(broker=self._engine.broker.name, trades_imported=imported,
                                                  cash_movements_imported=moved, synced_at=to_timestamp(now))
        if after is not None and after == self._engine.ledger_end():
            response.cursor.trade_id, response.cursor.cash_movement_id = after  # nothing after the ledger's end
        elif after is not None:
            with self._db.transaction() as session:
                trades, movements, cursor, more = store.ledger_after(session, *after)
                response.trades.extend(trade_to_proto(t) for t in trades)
                response.cash_movements.extend(cash_movement_to_proto(m) for m in movements)
            response.cursor.trade_id, response.cursor.cash_movement_id = cursor
            response.more_entries = more
        for p in account.positions:
            response.positions.add(symbol=p.symbol, quantity=p.quantity, average_cost=p.average_cost,
                                   currency=p.currency)
        for currency, amount in sorted(account.cash.items()):
            response.cash.add(currency=currency, amount=amount)
        return response

    def GetTradingStatus(self, request, context):
        now = clock.now()
        status = self._engine.status(now)
        reply = trading_pb2.TradingStatus(
            mode=self._config.mode, broker=self._engine.broker.name,
            trading_enabled=status["settings"].trading_enabled, breaker=status["breaker"],
            trades_today=status["trades_today"], trades_last_7_days=status["trades_week"],
            next_trade_allowed_at=to_timestamp(status["next_allowed"]),
            reconciled=self._engine.reconciliation.reconciled,
            reconciliation_issues=self._engine.reconciliation.issues, open_orders=status["open_orders"])
        if status["daily_pnl"] is not None:
            reply.daily_pnl = status["daily_pnl"]
        if status["last_trade_at"] is not None:
            reply.last_trade_at.CopyFrom(to_timestamp(status["last_trade_at"]))
        return reply

    def GetSettings(self, request, context):
        settings = self._engine.settings()
        last = self._last_settings  # converted once per settings object (the engine's, while unchanged)
        if last is None or last[0] is not settings:
            last = self._last_settings = (settings, settings_to_proto(settings))
        response = trading_pb2.Settings()
        response.CopyFrom(last[1])
        return response

    def UpdateSettings(self, request, context):
        changes = {name: getattr(request, name) for name in RiskSettings.names() if request.HasField(name)}
        return settings_to_proto(self._engine.update_settings(changes, clock.wall_now()))

    def ResolveNegativeBalances(self, request, context):
        conversions, placed, remaining = self._engine.resolve_negative_balances(clock.now())
        return trading_pb2.ResolveNegativeBalancesResponse(
            conversions=[trading_pb2.Conversion(from_currency=c.from_currency, from_amount=c.from_amount,
                                                to_currency=c.to_currency, to_amount=c.to_amount) for c in conversions],
            orders=[order_to_proto(o) for o in placed],
            remaining=[trading_pb2.BrokerCash(currency=c, amount=a) for c, a in sorted(remaining.items())])

    def AcceptBrokerPositions(self, request, context):
        reason = required_text("reason", request.reason, 300)
        self._engine.accept_broker_positions(reason, clock.now())
        return self.GetTradingStatus(request, context)

    def FundPaperAccount(self, request, context):
        amount = positive_amount("amount", request.amount, maximum=1e9)
        currency = currency_code("currency", request.currency, default=self._config.base_currency)
        reference = required_text("reference", request.reference)
        applied = self._engine.fund_paper_account(amount, currency, reference, clock.now())
        cash = sorted(self._engine.broker.account().cash.items())
        return trading_pb2.FundPaperAccountResponse(
            applied=applied, cash=[trading_pb2.BrokerCash(currency=c, amount=a) for c, a in cash])
