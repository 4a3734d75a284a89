"""Rebalance sells: trim holdings of a country group held above its target (planner.md
section 2 "(B) Heuristic"). Pure.

A group more than `overweight_threshold` above its target share: each holding in it that may
be sold now sells min(max_sell_fraction x its value, overweight x portfolio value), in whole
lots, at least the minimum trade. Priority 2 x overweight x priority_weight.
"""

from __future__ import annotations

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import REBALANCE_SELLS, SELL, Action, Book, group_tags
from services.planner.opportunities.sizing import min_trade_base, sell_quantity, unit_value_base


def calculate(book: Book, config: PlannerConfig) -> list[Action]:
    params = config.opportunity_calculators.rebalance_sells
    minimum = min_trade_base(config)
    shares = book.country_shares()
    actions = []
    for group, target in sorted(book.country_targets.items()):
        over = shares.get(group, 0.0) - target
        if over <= params.overweight_threshold:
            continue
        for symbol, position in sorted(book.positions.items()):
            security = book.securities.get(symbol)
            if security is None or security.country_group != group or security.sell_block:
                continue
            amount = min(params.max_sell_fraction * position.value_base, over * book.total_value_base)
            quantity = sell_quantity(position, security, amount)
            value = quantity * unit_value_base(position)
            if quantity < security.lot or value < minimum:
                continue
            actions.append(Action(SELL, symbol, quantity, security.price, security.currency, value,
                                  2 * over * params.priority_weight, REBALANCE_SELLS,
                                  f"rebalance: {group} is {shares[group]:.0%} of the portfolio, target {target:.0%}",
                                  group_tags(security)))
    return actions
