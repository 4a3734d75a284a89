"""Over-cap sells: a holding above the owner's `max_portfolio_target` is brought back under it
(the target is a hard upper bound: issue 13 item 5). Pure.

The end-state score knows nothing of the owner's caps, so no sequence would ever be chosen
for breaking one less; these SELLs are therefore not candidates but steps of their own, placed
after the emergency steps and before the best sequence (which is evaluated on the books after
them). Only holdings that may be sold now (eligibility.py); whole lots, rounded up so the
holding ends at or under its cap, never more than the holding; an excess worth less than the
minimum economical trade is left.
"""

from __future__ import annotations

import math

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import OVER_CAP, SELL, Action, Book, group_tags
from services.planner.opportunities.sizing import min_trade_base, unit_value_base


def calculate(book: Book, config: PlannerConfig) -> list[Action]:
    if not config.planner.allow_sell or book.total_value_base <= 0:
        return []
    minimum = min_trade_base(config)
    actions = []
    for symbol, position in sorted(book.positions.items()):
        security = book.securities.get(symbol)
        if security is None or security.max_weight is None or security.sell_block:
            continue
        excess = position.value_base - security.max_weight * book.total_value_base
        if excess < minimum:
            continue
        unit = unit_value_base(position)
        lots = min(math.ceil(excess / (unit * security.lot) - 1e-9), position.quantity // security.lot)
        if lots < 1:
            continue
        quantity = lots * security.lot
        weight = book.weight(symbol)
        actions.append(Action(SELL, symbol, quantity, security.price, security.currency, quantity * unit, math.inf,
                              OVER_CAP, f"over its cap: {weight:.1%} of the portfolio, max_portfolio_target "
                                        f"{security.max_weight:.1%}", (*group_tags(security), OVER_CAP)))
    return actions
