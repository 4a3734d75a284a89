"""Weight-based opportunities: trades toward the optimiser's target weights (planner.md
section 2 "(A) Weight-based", with decisions.md winning). Pure.

For every security the optimiser placed, gap = target - current weight (a held security it
placed at no weight has target 0). Kept when |gap| exceeds `min_gap` and the trade is
worthwhile: at least the minimum economical trade and at least twice its own cost.
- BUY (the security may be bought now): whole lots for the gap at the base-currency price (the
  original used the native price without FX), no more than the cash spendable now;
  category averaging_down when held above the price, else rebalance_buys.
- SELL (the holding may be sold now, and is more than one lot): whole lots for the gap,
  keeping one lot unless the target is 0; never more than the holding; rebalance_sells.
Priority |gap| x 100 (the original's scale, unlike the heuristics' 0.3..2).
"""

from __future__ import annotations

import math

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import (
    AVERAGING_DOWN,
    BUY,
    REBALANCE_BUYS,
    REBALANCE_SELLS,
    SELL,
    Action,
    Book,
    group_tags,
)
from services.planner.opportunities.sizing import commission_base, min_trade_base, sell_quantity, unit_value_base
from services.planner.plan import value_for_cash
from services.planner.scoring.sell import floor_to_lots


def calculate(book: Book, config: PlannerConfig) -> list[Action]:
    params = config.opportunity_calculators.weight_based
    total = book.total_value_base
    if total <= 0:
        return []
    minimum = min_trade_base(config)
    actions = []
    for symbol in sorted(book.optimised):
        security = book.securities.get(symbol)
        if security is None:
            continue
        target, current = book.target_weights.get(symbol, 0.0), book.weight(symbol)
        gap = target - current
        gap_base = abs(gap) * total
        if abs(gap) <= params.min_gap or gap_base < max(minimum, 2 * commission_base(gap_base, config)):
            continue
        tags = (*group_tags(security), "weight_based")
        if gap > 0 and not security.buy_block:
            affordable = value_for_cash(book.cash.spendable(security.currency), book.price_band)
            lots = math.floor(min(gap_base, affordable, book.room_base(symbol)) / security.lot_value_base)
            value = lots * security.lot_value_base
            if lots < 1 or value < minimum:
                continue
            position = book.positions.get(symbol)
            below_cost = position is not None and position.average_cost > security.price
            actions.append(Action(BUY, symbol, lots * security.lot, security.price, security.currency, value,
                                  abs(gap) * 100, AVERAGING_DOWN if below_cost else REBALANCE_BUYS,
                                  f"rebalance toward target weight {target:.1%} (now {current:.1%})", tags))
        elif gap < 0 and not security.sell_block and symbol in book.positions:
            position = book.positions[symbol]
            if position.quantity <= security.lot:
                continue
            quantity = sell_quantity(position, security, gap_base)
            if 0 < position.quantity - quantity < security.lot and target > 0:
                # keep at least a lot, in whole lots (a holding need not be a whole number of lots)
                quantity = floor_to_lots(position.quantity - security.lot, security.lot)
            value = quantity * unit_value_base(position)
            if quantity < security.lot or value < minimum:
                continue
            actions.append(Action(SELL, symbol, quantity, security.price, security.currency, value, abs(gap) * 100,
                                  REBALANCE_SELLS, f"reduce toward target weight {target:.1%} (now {current:.1%})",
                                  tags))
    return actions
