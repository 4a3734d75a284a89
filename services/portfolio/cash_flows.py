"""The book of money: every change of cash as a cash flow of one kind (trading-portfolio-jobs.md
section 5, decisions.md rule 18). Pure functions on plain data.

Signs: + into the account, - out of it, in the flow's currency. A fill books its settlement
(trade_buy: -quantity * price, trade_sell: +quantity * price) and its commission (trading_fee)
as two flows, so the flows of a currency add up to its broker balance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.portfolio.positions import BUY, FillRecord

DEPOSIT, WITHDRAWAL, DIVIDEND, COUPON, INTEREST, TAX = "deposit", "withdrawal", "dividend", "coupon", "interest", "tax"
TRADING_FEE, FEE, FX_CONVERSION, TRADE_BUY, TRADE_SELL, OTHER = (
    "trading_fee", "fee", "fx_conversion", "trade_buy", "trade_sell", "other")
KINDS = (DEPOSIT, WITHDRAWAL, DIVIDEND, COUPON, INTEREST, TAX, TRADING_FEE, FEE, FX_CONVERSION, TRADE_BUY,
         TRADE_SELL, OTHER)
EXTERNAL_KINDS = frozenset({DEPOSIT, WITHDRAWAL})  # money the owner moves: not a return
INCOME_KINDS = frozenset({DIVIDEND, COUPON, INTEREST})
MANUAL, BROKER, MANUAL_AND_BROKER = "manual", "broker", "manual+broker"
# Trading's movement kinds (the paper broker's, Tradernet's CPS and corporate-action kinds) ->
# the book's. Anything else (type_297 structured products, maturities, ...) is `other`, with
# the broker's kind kept in the description.
MOVEMENT_KINDS = {
    "deposit": DEPOSIT, "refill": DEPOSIT, "transfer_in": DEPOSIT,
    "withdrawal": WITHDRAWAL, "transfer_out": WITHDRAWAL,
    "dividend": DIVIDEND, "coupon": COUPON, "interest": INTEREST,
    "tax": TAX, "withholding_tax": TAX,
    "trading_fee": TRADING_FEE, "withdrawal_fee": FEE, "structured_product_fee": FEE, "fee": FEE,
    "conversion_out": FX_CONVERSION, "conversion_in": FX_CONVERSION,
}
CENT = 0.005  # book and broker agree when they differ by less than half a cent


@dataclass(frozen=True)
class Movement:
    """A cash movement from trading's ledger."""

    broker_id: str
    kind: str        # trading's kind
    amount: float    # signed
    currency: str
    at: datetime
    description: str = ""
    symbol: str = ""
    reference: str = ""


@dataclass(frozen=True)
class Flow:
    kind: str
    amount: float
    currency: str
    occurred_at: datetime
    broker_id: str | None
    symbol: str = ""
    description: str = ""
    broker_reference: str = ""


def fill_key(broker_trade_id: str) -> str:
    """The cash flow key of a fill's settlement (its fee's adds ":fee"). Fills and cash movements
    are keyed apart, so a broker that numbers both from 1 never has one taken for the other."""
    return f"fill:{broker_trade_id}"


def movement_key(broker_id: str) -> str:
    return f"movement:{broker_id}"


def book_kind(broker_kind: str) -> str:
    return MOVEMENT_KINDS.get(broker_kind, OTHER)


def flows_of_fill(fill: FillRecord) -> list[Flow]:
    """The settlement and, when charged, the commission of one fill (keys `fill:<id>` and
    `fill:<id>:fee`)."""
    value = fill.quantity * fill.price
    settlement = Flow(TRADE_BUY if fill.side == BUY else TRADE_SELL, -value if fill.side == BUY else value,
                      fill.currency, fill.executed_at, fill_key(fill.broker_trade_id), fill.symbol,
                      f"{fill.side} {fill.quantity} {fill.symbol} @ {fill.price:g}", fill.client_order_id)
    if not fill.commission:
        return [settlement]
    fee = Flow(TRADING_FEE, -fill.commission, fill.currency, fill.executed_at, f"{fill_key(fill.broker_trade_id)}:fee",
               fill.symbol, f"commission on {fill.side} {fill.quantity} {fill.symbol}", fill.client_order_id)
    return [settlement, fee]


def flow_of_movement(movement: Movement) -> Flow:
    kind = book_kind(movement.kind)
    description = movement.description if kind != OTHER else f"{movement.kind}: {movement.description}".rstrip(": ")
    return Flow(kind, movement.amount, movement.currency, movement.at, movement_key(movement.broker_id),
                movement.symbol, description[:300], movement.reference)


def balances(flows: Iterable[tuple[str, float]]) -> dict[str, float]:
    """(currency, amount) pairs -> the sum per currency."""
    totals: dict[str, float] = {}
    for currency, amount in flows:
        totals[currency] = totals.get(currency, 0.0) + amount
    return totals


def cash_differences(book: Mapping[str, float], broker: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(currency, book, broker) for every currency where the flows do not add up to the balance."""
    return [(c, book.get(c, 0.0), broker.get(c, 0.0)) for c in sorted(set(book) | set(broker))
            if abs(book.get(c, 0.0) - broker.get(c, 0.0)) >= CENT]


def same_deposit(manual_amount: float, manual_currency: str, movement: Movement) -> bool:
    """A broker deposit is the manual entry with its reference when currency and amount agree."""
    return manual_currency == movement.currency and abs(manual_amount - movement.amount) < CENT
