"""Emergency sells: when a cash balance is negative, SELLs that cover it come first in a plan
(planner.md section 7 "Emergency steps are listed first"; decisions.md rule 15). Pure.

Trading's own emergency path (ResolveNegativeBalances, run by the cycle before planning) may
bypass the holding rules; the planner's plan goes through every rule, so these SELLs are only
of holdings that may be sold now. The deficit (every negative balance, in the base currency)
plus a 10% buffer is raised from the largest such holdings, those in a currency in deficit
first, in whole lots, never more than a holding.
"""

from __future__ import annotations

import math

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import EMERGENCY, SELL, Action, Book, group_tags
from services.planner.opportunities.sizing import unit_value_base

BUFFER = 0.10


def calculate(book: Book, config: PlannerConfig) -> list[Action]:
    deficits = {c: -amount for c, amount in book.cash.balances.items() if amount < 0}
    needed = sum(deficits.values()) * (1 + BUFFER)
    if needed <= 0 or not config.planner.allow_sell:
        return []
    sellable = [(symbol, position) for symbol, position in book.positions.items()
                if symbol in book.securities and not book.securities[symbol].sell_block]
    sellable.sort(key=lambda item: (book.securities[item[0]].currency not in deficits, -item[1].value_base, item[0]))
    actions = []
    for symbol, position in sellable:
        if needed <= 0:
            break
        security = book.securities[symbol]
        unit = unit_value_base(position)
        lots = min(math.ceil(needed / (unit * security.lot)), position.quantity // security.lot)
        if lots < 1:
            continue
        quantity = lots * security.lot
        value = quantity * unit
        needed -= value
        actions.append(Action(SELL, symbol, quantity, security.price, security.currency, value, math.inf, EMERGENCY,
                              f"emergency: cover the negative cash balance ({', '.join(sorted(deficits))})",
                              (*group_tags(security), "emergency")))
    return actions
