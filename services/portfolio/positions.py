"""Positions with history from the books' fills: the average-cost method with fees included,
realised P&L on every SELL (decisions.md rule 16), first-buy / last-buy / last-sell times. Pure.

Average cost (per share, in the security's currency): a BUY adds quantity * price + commission to
the cost and its quantity to the holding; a SELL takes the average cost of what it sells out of
the cost and realises (price * quantity - commission) - that cost. A SELL of more than the books
hold (shares bought before the books began) realises only the part the books know; a SELL of
none of it has no realised P&L (unknown, not 0).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

BUY, SELL = "BUY", "SELL"


@dataclass(frozen=True)
class FillRecord:
    broker_trade_id: str
    symbol: str
    side: str
    quantity: int
    price: float
    currency: str
    commission: float
    executed_at: datetime
    bucket: str = "core"
    client_order_id: str = ""


@dataclass(frozen=True)
class SellResult:
    """What one SELL realised, in the security's currency; None when the books held none of it."""

    realized_pnl: float | None
    cost_basis: float | None


@dataclass(frozen=True)
class PositionHistory:
    symbol: str
    currency: str
    quantity: int
    cost: float                    # total cost of the quantity held, buy fees included
    realized_pnl: float            # over every SELL with a known cost
    first_bought_at: datetime | None  # the first BUY since the holding was last empty
    last_bought_at: datetime | None
    last_sold_at: datetime | None
    bucket: str

    @property
    def average_cost(self) -> float | None:
        return self.cost / self.quantity if self.quantity > 0 else None


def fill_order(fill: FillRecord) -> datetime:
    """The order fills are replayed in: execution time; fills of the same instant keep the
    ledger's order (the sort is stable and callers pass them in ledger order)."""
    return fill.executed_at


def replay(symbol: str, fills: Iterable[FillRecord]) -> tuple[PositionHistory, dict[str, SellResult]]:
    """The position one symbol's fills add up to, and what each SELL realised (by broker trade id)."""
    quantity, cost, realized = 0, 0.0, 0.0
    currency, bucket = "", "core"
    first_buy = last_buy = last_sell = None
    sells: dict[str, SellResult] = {}
    for fill in sorted(fills, key=fill_order):
        currency = fill.currency
        if fill.side == BUY:
            if quantity == 0:
                first_buy = fill.executed_at
            cost += fill.quantity * fill.price + fill.commission
            quantity += fill.quantity
            last_buy, bucket = fill.executed_at, fill.bucket or "core"
            continue
        last_sell = fill.executed_at
        covered = min(fill.quantity, quantity)
        if covered == 0:
            sells[fill.broker_trade_id] = SellResult(None, None)
            continue
        basis = cost * covered / quantity
        pnl = fill.price * covered - fill.commission - basis
        sells[fill.broker_trade_id] = SellResult(pnl, basis)
        realized += pnl
        quantity -= covered
        cost = 0.0 if quantity == 0 else cost - basis  # an emptied holding keeps no rounding dust
        if quantity == 0:
            first_buy = None
    return PositionHistory(symbol, currency, quantity, cost, realized, first_buy, last_buy, last_sell, bucket), sells


def quantity_differences(book: dict[str, int], broker: dict[str, int]) -> list[tuple[str, int, int]]:
    """(symbol, book quantity, broker quantity) wherever they differ; the broker stays the truth."""
    return [(s, book.get(s, 0), broker.get(s, 0)) for s in sorted(set(book) | set(broker))
            if book.get(s, 0) != broker.get(s, 0)]
