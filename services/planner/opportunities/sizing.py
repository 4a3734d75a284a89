"""Trade sizes in whole lots, and the minimum economical trade (planner.md sections 2 and 4).
Pure."""

from __future__ import annotations

import math

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import PositionView, SecurityView
from services.planner.scoring.sell import floor_to_lots


def min_trade_base(config: PlannerConfig) -> float:
    """The smallest trade whose fixed fee stays under 1%: fixed / (0.01 - percent); 1000 when
    the percent leaves no room (planner.md section 4). 2 EUR + 0.2% -> 250 EUR."""
    fixed, percent = config.planner.transaction_cost_fixed, config.planner.transaction_cost_percent
    return fixed / (0.01 - percent) if 0.01 - percent > 0 else 1000.0


def commission_base(value_base: float, config: PlannerConfig) -> float:
    return config.planner.transaction_cost_fixed + config.planner.transaction_cost_percent * abs(value_base)


def base_trade_quantity(security: SecurityView, target_base: float) -> int:
    """Whole lots worth at least `target_base` (one lot when a lot costs more): the heuristic
    BUYs' size. The original rounded down, which put most of its 250 EUR trades under 250."""
    return max(1, math.ceil(target_base / security.lot_value_base - 1e-9)) * security.lot


def sell_quantity(position: PositionView, security: SecurityView, value_base: float) -> int:
    """Whole lots worth at most `value_base`, never more than the holding."""
    unit = position.value_base / position.quantity if position.quantity > 0 else 0.0
    if unit <= 0:
        return 0
    return min(floor_to_lots(value_base / unit, security.lot), floor_to_lots(position.quantity, security.lot))


def unit_value_base(position: PositionView) -> float:
    return position.value_base / position.quantity if position.quantity > 0 else 0.0
