"""Opportunity calculators (planner.md section 2 "Opportunities"): one module per calculator,
each `calculate(book, config) -> list[Action]`, run by `identify` when the configuration
enables it. Sells are proposed only for holdings that may be sold now and buys only for
securities that may be bought now (eligibility.py); quantities are whole lots, a SELL never
exceeds the holding, and nothing under the minimum economical trade is proposed.

- weight_based: toward the optimiser's target weights (BUY and SELL);
- profit_taking: sell part of a windfall gain;
- rebalance_sells / rebalance_buys: country groups above / below their targets;
- averaging_down: buy more of a good holding that fell;
- opportunity_buys: buy securities of high quality;
- emergency: SELLs covering a negative balance (not a configurable calculator: always first).
"""

from __future__ import annotations

from collections.abc import Callable

from services.planner.config import PlannerConfig
from services.planner.opportunities import (
    averaging_down,
    opportunity_buys,
    profit_taking,
    rebalance_buys,
    rebalance_sells,
    weight_based,
)
from services.planner.opportunities.book import BUY, CATEGORIES, SELL, Action, Book, by_priority

Calculator = Callable[[Book, PlannerConfig], list[Action]]
CALCULATORS: dict[str, Calculator] = {
    "weight_based": weight_based.calculate,
    "profit_taking": profit_taking.calculate,
    "averaging_down": averaging_down.calculate,
    "opportunity_buys": opportunity_buys.calculate,
    "rebalance_sells": rebalance_sells.calculate,
    "rebalance_buys": rebalance_buys.calculate,
}

Opportunities = dict[str, list[Action]]  # category -> candidates, highest priority first


def identify(book: Book, config: PlannerConfig) -> Opportunities:
    """Every enabled calculator's candidates by category, each sorted by priority. The
    configuration's allow_buy / allow_sell drop a whole side."""
    enabled = config.opportunity_calculators
    allowed = {BUY: config.planner.allow_buy, SELL: config.planner.allow_sell}
    found = [a for name, calculate in CALCULATORS.items() if getattr(enabled, name).enabled
             for a in calculate(book, config) if allowed[a.side]]
    return {category: by_priority([a for a in found if a.category == category]) for category in CATEGORIES}
