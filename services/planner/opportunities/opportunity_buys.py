"""Opportunity buys: securities of high quality (planner.md section 2 "(B) Heuristic"). Pure.

A security that may be bought now with a quality of at least `min_quality_score` and the
planner's min_security_score (every heuristic BUY's floor) buys one minimum trade in whole
lots (unscored: quality 0.5; never above its max_portfolio_target). Priority quality x
priority_weight.
"""

from __future__ import annotations

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import BUY, OPPORTUNITY_BUYS, Action, Book, group_tags
from services.planner.opportunities.sizing import base_trade_quantity, min_trade_base
from services.planner.scoring.curves import NEUTRAL


def calculate(book: Book, config: PlannerConfig) -> list[Action]:
    params = config.opportunity_calculators.opportunity_buys
    minimum = min_trade_base(config)
    least = max(params.min_quality_score, config.planner.min_security_score)  # every heuristic BUY's floor
    actions = []
    for symbol, security in sorted(book.securities.items()):
        quality = NEUTRAL if security.quality is None else security.quality
        if security.buy_block or quality < least:
            continue
        quantity = base_trade_quantity(security, minimum)
        if quantity * security.price_base > book.room_base(symbol):
            continue
        actions.append(Action(BUY, symbol, quantity, security.price, security.currency,
                              quantity * security.price_base, quality * params.priority_weight,
                              OPPORTUNITY_BUYS, f"opportunity: quality {quality:.2f}", group_tags(security)))
    return actions
