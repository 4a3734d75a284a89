"""Rebalance buys: add to a country group held below its target (planner.md section 2 "(B)
Heuristic"). Pure.

A group more than `underweight_threshold` below its target share: each security in it that may
be bought now, with a quality of at least min_security_score (unscored: 0.5), buys one
minimum trade in whole lots (never above its max_portfolio_target). Priority (2 x underweight
+ 0.5 x quality) x priority_weight.
"""

from __future__ import annotations

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import BUY, REBALANCE_BUYS, Action, Book, group_tags
from services.planner.opportunities.sizing import base_trade_quantity, min_trade_base
from services.planner.scoring.curves import NEUTRAL


def calculate(book: Book, config: PlannerConfig) -> list[Action]:
    params = config.opportunity_calculators.rebalance_buys
    minimum = min_trade_base(config)
    shares = book.country_shares()
    actions = []
    for group, target in sorted(book.country_targets.items()):
        under = target - shares.get(group, 0.0)
        if under <= params.underweight_threshold:
            continue
        for symbol, security in sorted(book.securities.items()):
            quality = NEUTRAL if security.quality is None else security.quality
            if security.country_group != group or security.buy_block or quality < config.planner.min_security_score:
                continue
            quantity = base_trade_quantity(security, minimum)
            if quantity * security.price_base > book.room_base(symbol):
                continue
            actions.append(Action(BUY, symbol, quantity, security.price, security.currency,
                                  quantity * security.price_base, (2 * under + 0.5 * quality) * params.priority_weight,
                                  REBALANCE_BUYS, f"rebalance: {group} is {shares.get(group, 0.0):.0%} of the "
                                                  f"portfolio, target {target:.0%}", group_tags(security)))
    return actions
