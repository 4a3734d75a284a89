"""Averaging down: buy more of a good holding that fell (planner.md section 2 "(B)
Heuristic"). Pure.

A holding that may be bought now, with a quality of at least `min_quality_score` and the
planner's min_security_score (unscored: 0.5) and a loss from its average cost worse than
`dip_threshold`, buys one minimum trade in whole lots (never above the holding's
max_portfolio_target). Priority (quality + |loss|) x priority_weight.
"""

from __future__ import annotations

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import AVERAGING_DOWN, BUY, Action, Book, group_tags
from services.planner.opportunities.sizing import base_trade_quantity, min_trade_base
from services.planner.scoring.curves import NEUTRAL


def calculate(book: Book, config: PlannerConfig) -> list[Action]:
    params = config.opportunity_calculators.averaging_down
    minimum = min_trade_base(config)
    least = max(params.min_quality_score, config.planner.min_security_score)  # every heuristic BUY's floor
    actions = []
    for symbol, position in sorted(book.positions.items()):
        security = book.securities.get(symbol)
        if security is None or security.buy_block:
            continue
        quality = NEUTRAL if security.quality is None else security.quality
        loss = position.gain(security.price)
        if loss is None or quality < least or loss >= params.dip_threshold:
            continue
        quantity = base_trade_quantity(security, minimum)
        if quantity * security.price_base > book.room_base(symbol):
            continue
        actions.append(Action(BUY, symbol, quantity, security.price, security.currency,
                              quantity * security.price_base, (quality + abs(loss)) * params.priority_weight,
                              AVERAGING_DOWN, f"average down: {loss:.0%} below its average cost, quality {quality:.2f}",
                              (*group_tags(security), "averaging_down")))
    return actions
