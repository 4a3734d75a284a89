"""Running-cash feasibility of a sequence of actions (planner.md section 2 "Filters: always —
feasibility"), as trading's cash check sees each step. Pure.

A BUY needs its cash at trading's limit price with commission (plan.required_cash_base) to fit
what is spendable in its currency now (plan.Cash: its own balance, plus the base currency's
when trading converts, never the reserve); it then holds that much. A SELL brings at least its
value at the lowest price of trading's band, less commission. A sequence is feasible when every
BUY fits in turn, every SELL is of a holding that may be sold and no larger than it, every BUY
of a security that may be bought, SELLs come before BUYs and no symbol appears twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.planner.opportunities.book import BUY, SELL, Action, Book
from services.planner.plan import Cash, required_cash_base, sell_proceeds_base


@dataclass(frozen=True)
class RunningCash:
    cash: Cash
    price_band: float = 0.0

    def fits(self, action: Action) -> bool:
        return action.side == SELL or required_cash_base(action.value_base, self.price_band) <= \
            self.cash.spendable(action.currency) + 1e-9

    def after(self, action: Action) -> RunningCash:
        if action.side == SELL:
            return RunningCash(self.cash.receive(action.currency, sell_proceeds_base(action.value_base,
                                                                                     self.price_band)),
                               self.price_band)
        return RunningCash(self.cash.spend(action.currency, required_cash_base(action.value_base, self.price_band)),
                           self.price_band)

    @property
    def pooled(self) -> float:
        return self.cash.pooled


def start(book: Book) -> RunningCash:
    return RunningCash(book.cash, book.price_band)


def infeasibility(sequence: Sequence[Action], book: Book) -> str:
    """Why `sequence` cannot be executed in order from `book` ("" when it can)."""
    running, seen, buying = start(book), set(), False
    for number, action in enumerate(sequence, start=1):
        if action.symbol in seen:
            return f"step {number}: {action.symbol} appears twice"
        seen.add(action.symbol)
        security = book.securities.get(action.symbol)
        if security is None:
            return f"step {number}: {action.symbol} is not priced"
        if action.side == SELL:
            if buying:
                return f"step {number}: a SELL after a BUY"
            held = book.positions[action.symbol].quantity if action.symbol in book.positions else 0
            if security.sell_block or action.quantity > held:
                why = security.sell_block or f"holds {held}"
                return f"step {number}: SELL {action.quantity} {action.symbol}: {why}"
        elif action.side == BUY:
            buying = True
            if security.buy_block:
                return f"step {number}: BUY {action.symbol}: {security.buy_block}"
            if not running.fits(action):
                return f"step {number}: BUY {action.symbol} does not fit the running cash"
            if action.value_base > book.room_base(action.symbol) + 1e-6:
                return f"step {number}: BUY {action.symbol} would take it above its max_portfolio_target"
        else:
            return f"step {number}: unknown side {action.side!r}"
        if action.quantity <= 0 or action.quantity % security.lot:
            return f"step {number}: {action.quantity} is not a whole number of lots of {security.lot}"
        running = running.after(action)
    return ""
