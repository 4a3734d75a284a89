"""The hand-off from trading's SyncBroker to the portfolio's ApplyBrokerState: the broker's
positions and cash, and the ledger entries (fills, cash movements) after the portfolio's cursor,
translated message for message. Data flows one way: trading is asked once, the portfolio told once."""

from __future__ import annotations

from trader.portfolio.v1 import portfolio_pb2
from trader.trading.v1 import trading_pb2


def sync_request(cursor: portfolio_pb2.LedgerCursor) -> trading_pb2.SyncBrokerRequest:
    return trading_pb2.SyncBrokerRequest(after=trading_pb2.LedgerCursor(trade_id=cursor.trade_id,
                                                                        cash_movement_id=cursor.cash_movement_id))


def apply_request(broker: trading_pb2.SyncBrokerResponse, after: portfolio_pb2.LedgerCursor | None = None
                  ) -> portfolio_pb2.ApplyBrokerStateRequest:
    """`after`: the books' cursor SyncBroker was asked from, for the portfolio to check (a kept one)."""
    return portfolio_pb2.ApplyBrokerStateRequest(
        positions=[portfolio_pb2.BrokerPosition(symbol=p.symbol, quantity=p.quantity, average_cost=p.average_cost,
                                                currency=p.currency) for p in broker.positions],
        cash=[portfolio_pb2.BrokerCash(currency=c.currency, amount=c.amount) for c in broker.cash],
        synced_at=broker.synced_at,
        fills=[portfolio_pb2.BrokerFill(
            ledger_id=t.id, broker_trade_id=t.broker_trade_id, client_order_id=t.client_order_id, symbol=t.symbol,
            side=portfolio_pb2.Side.Value(trading_pb2.Side.Name(t.side)), quantity=t.quantity, price=t.price,
            currency=t.currency, commission=t.commission, executed_at=t.executed_at, bucket=t.bucket)
            for t in broker.trades],
        cash_movements=[portfolio_pb2.BrokerCashMovement(
            ledger_id=m.id, broker_id=m.broker_id, kind=m.kind, amount=m.amount, currency=m.currency, at=m.at,
            description=m.description, symbol=m.symbol, reference=m.reference) for m in broker.cash_movements],
        ledger_cursor=portfolio_pb2.LedgerCursor(trade_id=broker.cursor.trade_id,
                                                 cash_movement_id=broker.cursor.cash_movement_id),
        after=after,
    )
