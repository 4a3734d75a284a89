"""Profit taking: sell part of a holding whose gain is a windfall, luck beyond its usual growth
(planner.md section 1 "Windfall rules", section 2 "(B) Heuristic"). Pure.

excess = gain - ((1 + CAGR)^years - 1) (scoring.windfall). A holding that may be sold now is a
candidate when its excess reaches `windfall_threshold` or its gain is 100% or more; it sells the
windfall fraction of the holding (50% / 30% / 40% / 20%), in whole lots, at least the minimum
trade. Priority (windfall score + 0.5) x priority_weight.
"""

from __future__ import annotations

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import PROFIT_TAKING, SELL, Action, Book, group_tags
from services.planner.opportunities.sizing import min_trade_base, unit_value_base
from services.planner.scoring.sell import floor_to_lots
from services.planner.scoring.windfall import excess_gain, profit_taking_fraction, windfall_score


def calculate(book: Book, config: PlannerConfig) -> list[Action]:
    params = config.opportunity_calculators.profit_taking
    minimum = min_trade_base(config)
    actions = []
    for symbol, position in sorted(book.positions.items()):
        security = book.securities.get(symbol)
        if security is None or security.sell_block:
            continue
        gain = position.gain(security.price)
        if gain is None:
            continue
        days = (book.today - position.first_buy).days if position.first_buy is not None else None
        excess = excess_gain(gain, days, security.cagr_5y, security.cagr_10y)
        if excess < params.windfall_threshold and gain < 1.0:
            continue
        fraction = profit_taking_fraction(gain, excess)
        quantity = min(floor_to_lots(position.quantity * fraction, security.lot), position.quantity)
        value = quantity * unit_value_base(position)
        if quantity < security.lot or value < minimum:
            continue
        actions.append(Action(SELL, symbol, quantity, security.price, security.currency, value,
                              (windfall_score(excess) + 0.5) * params.priority_weight, PROFIT_TAKING,
                              f"take profit: up {gain:.0%}, {excess:.0%} above its usual growth; "
                              f"sell {fraction:.0%} of the holding", (*group_tags(security), "windfall")))
    return actions
