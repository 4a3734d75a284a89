"""The holistic planner's pure core (planner.md section 2): from the books and the configuration
to the candidate sequences, the books the evaluation starts from, and the plan built from the
best sequence. Pure: plain data in and out; the engine persists and evaluates in batches.

1. Mandatory steps first: emergency SELLs (a negative balance), then over-cap SELLs
   (opportunities/emergency.py, caps.py). Everything after is planned on the books after them.
2. Opportunities (opportunities/), sequences for depths 1..max_depth (sequences.py), filters
   (filters.py), in evaluation order: highest total priority first, then by sequence hash.
3. The evaluation (evaluation.py) scores every sequence's end state; the best wins if it beats
   doing nothing (the books as they are), else the plan is the mandatory steps alone. Books
   without a position are the exception (batch.beat): the end-state score of an empty
   portfolio is a convention (0.5), not a measure, so there the best sequence wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from services.planner.config import PlannerConfig
from services.planner.evaluation import Costs, EvaluationBook
from services.planner.filters import Correlations
from services.planner.filters import apply as apply_filters
from services.planner.opportunities import Opportunities, caps, emergency, identify
from services.planner.opportunities.book import BUY, SELL, Action, Book, PositionView
from services.planner.opportunities.sizing import commission_base
from services.planner.plan import Step
from services.planner.scoring.end_state import END_STATE_WEIGHTS, Outlook
from services.planner.sequences import ActionSequence, GenerationInputs, generate


@dataclass(frozen=True)
class Candidates:
    mandatory: tuple[Action, ...]         # emergency, then over-cap SELLs
    book: Book                            # the books after the mandatory steps
    opportunities: Opportunities
    sequences: list[ActionSequence]       # filtered, in evaluation order
    generated: int                        # before the filters


def after(book: Book, actions: Sequence[Action], config: PlannerConfig) -> Book:
    """The books once `actions` are done at their prices (commission the configuration's)."""
    positions, cash = dict(book.positions), book.cash
    for action in actions:
        commission = commission_base(action.value_base, config)
        held = positions.get(action.symbol)
        if action.side == SELL and held is not None:
            left = held.quantity - action.quantity
            unit = held.value_base / held.quantity
            if left > 0:
                positions[action.symbol] = replace(held, quantity=left, value_base=left * unit)
            else:
                del positions[action.symbol]
            cash = cash.receive(action.currency, action.value_base - commission)
        elif action.side == BUY:
            positions[action.symbol] = (replace(held, quantity=held.quantity + action.quantity,
                                                value_base=held.value_base + action.value_base) if held else
                                        PositionView(action.symbol, action.quantity, action.price, action.value_base))
            cash = cash.spend(action.currency, action.value_base + commission)
    return replace(book, positions=positions, cash=cash)


def candidates(book: Book, config: PlannerConfig, inputs: GenerationInputs,
               correlations: Correlations) -> Candidates:
    mandatory = tuple(emergency.calculate(book, config))
    start = after(book, mandatory, config)
    sold = {a.symbol for a in mandatory}
    over_cap = tuple(a for a in caps.calculate(start, config) if a.symbol not in sold)
    mandatory += over_cap
    start = after(start, over_cap, config)
    sold |= {a.symbol for a in over_cap}
    found = identify(start, config)
    opportunities = {c: [a for a in actions if a.symbol not in sold] for c, actions in found.items()}
    generated = generate(start, opportunities, config, inputs)
    kept = apply_filters(generated, start, config, correlations)
    kept.sort(key=lambda s: (-s.priority, s.sequence_hash))
    return Candidates(mandatory, start, opportunities, kept, len(generated))


def evaluation_book(book: Book, outlooks: Mapping[str, Outlook], config: PlannerConfig) -> EvaluationBook:
    """The books as the evaluation's arrays: every priced security, in symbol order."""
    symbols = sorted(book.securities)
    securities = [book.securities[s] for s in symbols]
    planner = config.planner
    return EvaluationBook.build(
        symbols, [s.price_base for s in securities],
        [book.positions[s].quantity if s in book.positions else 0 for s in symbols],
        [s.currency for s in securities], book.cash.balances, book.base, book.cash.reserve_base,
        book.cash.auto_convert, book.price_band, outlooks, book.country_targets, [s.volatility for s in securities],
        Costs(planner.transaction_cost_fixed, planner.transaction_cost_percent, planner.cost_penalty_factor),
        END_STATE_WEIGHTS[planner.end_state_weights], config.evaluation.multi_timeframe)


# --- the plan ---


@dataclass(frozen=True)
class HolisticPlan:
    steps: list[Step]
    current_score: float          # 0..100: the end-state score of doing nothing
    end_state_score: float        # 0..100: of the plan's end state
    cash_required_base: float     # the BUYs' value and commission
    cash_generated_base: float    # the SELLs' value less commission
    feasible: bool                # required <= spendable cash now + generated
    narrative: str

    @property
    def improvement(self) -> float:
        return self.end_state_score - self.current_score


def build_plan(book: Book, actions: Sequence[Action], current: float, end: float,
               config: PlannerConfig) -> HolisticPlan:
    """The plan of `actions` (mandatory steps, then the chosen sequence) from `book`; scores
    0..1 in, shown x 100."""
    cash = sum(book.cash.balances.values())
    required = generated = 0.0
    steps = []
    for number, action in enumerate(actions, start=1):
        commission = commission_base(action.value_base, config)
        if action.side == BUY:
            required += action.value_base + commission
            cash -= action.value_base + commission
        else:
            generated += action.value_base - commission
            cash += action.value_base - commission
        verb = "buy" if action.side == BUY else "sell"
        narrative = (f"Step {number}: {verb} {action.quantity} {action.symbol} for about {book.base} "
                     f"{action.value_base:,.0f} ({action.reason}); cash afterwards about {book.base} {cash:,.0f}.")
        steps.append(Step(action.symbol, action.side, action.quantity, action.price, action.currency,
                          action.value_base, action.reason, narrative=narrative, category=action.category,
                          priority=action.priority if math.isfinite(action.priority) else 0.0))
    feasible = required <= max(0.0, book.cash.pooled) + generated + 1e-6
    return HolisticPlan(steps, 100 * current, 100 * end, required, generated, feasible,
                        _summary(steps, current, end, book.base, required, generated, not book.positions))


def _summary(steps: Sequence[Step], current: float, end: float, base: str, required: float, generated: float,
             empty: bool) -> str:
    if empty and steps:
        return (f"The portfolio holds nothing yet: {len(steps)} buys start it with an end-state score of "
                f"{100 * end:.1f}; they use {base} {required:,.0f}. Only the first step is executed now; the rest is "
                f"planned again from the books the broker confirms.")
    if not steps:
        return f"No trade improves the portfolio's end-state score ({100 * current:.1f}): hold."
    sells = sum(s.side == SELL for s in steps)
    return (f"{len(steps)} steps ({sells} sells, {len(steps) - sells} buys) move the end-state score from "
            f"{100 * current:.1f} to {100 * end:.1f}; they generate {base} {generated:,.0f} and use "
            f"{base} {required:,.0f}. Only the first step is executed now; the rest is planned again from the "
            f"books the broker confirms.")
