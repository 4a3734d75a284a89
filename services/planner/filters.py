"""Filters over generated sequences (planner.md section 2 "Filters"). Pure.

- feasibility (always): SELLs before BUYs, no symbol twice, mean priority at least the
  threshold, every step executable in turn from the book (feasibility.infeasibility: running
  cash, holdings, lots, and each side's eligibility, which no configuration turns off);
- eligibility: every SELL passes the holding rules and every BUY the buy rules (the guard the
  original ran; the calculators already propose nothing else);
- recently_traded (planner.md: buy cooldown 30 d, sell cooldown 180 d): no BUY of a security
  bought within the buy cooldown, no SELL of one sold within the sell cooldown, and no BUY of
  one sold within the sell cooldown (a sale is not bought back while it could not be sold
  again); the same days as the eligibility rules (opportunities/eligibility.py);
- correlation_aware: no two BUYs whose daily returns correlate above the threshold (no data:
  passes);
- diversity: per sequence length, the `max_sequences` best by (1 - w) x mean priority + w x
  diversity, diversity = 0.4 x unique symbols / length + 0.3 x (1 - the largest share of a
  2-letter symbol prefix) + 0.3 x unique tags / min(length, 5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.planner.config import PlannerConfig
from services.planner.feasibility import infeasibility
from services.planner.opportunities.book import BUY, SELL, Book
from services.planner.sequences import ActionSequence

Correlations = Mapping[frozenset[str], float]  # {a, b} -> rho of their daily returns


def feasible(sequences: Sequence[ActionSequence], book: Book, threshold: float) -> list[ActionSequence]:
    return [s for s in sequences if s.mean_priority >= threshold and not infeasibility(s.actions, book)]


def eligibility(sequences: Sequence[ActionSequence], book: Book) -> list[ActionSequence]:
    def eligible(sequence: ActionSequence) -> bool:
        return all(a.symbol in book.securities and not (book.securities[a.symbol].sell_block if a.side == SELL
                                                        else book.securities[a.symbol].buy_block)
                   for a in sequence.actions)
    return [s for s in sequences if eligible(s)]


def recently_traded(sequences: Sequence[ActionSequence], book: Book) -> list[ActionSequence]:
    def sold_recently(symbol: str) -> bool:
        sold = book.last_sells.get(symbol)
        return sold is not None and (book.today - sold).days <= book.sell_cooldown_days

    def bought_recently(symbol: str) -> bool:
        bought = book.last_buys.get(symbol)
        return bought is not None and (book.today - bought).days < book.buy_cooldown_days

    def recent(action) -> bool:
        return sold_recently(action.symbol) or (action.side == BUY and bought_recently(action.symbol))
    return [s for s in sequences if not any(recent(a) for a in s.actions)]


def correlation_aware(sequences: Sequence[ActionSequence], correlations: Correlations,
                      threshold: float) -> list[ActionSequence]:
    def correlated(sequence: ActionSequence) -> bool:
        buys = [a.symbol for a in sequence.actions if a.side == BUY]
        return any(abs(correlations.get(frozenset((a, b)), 0.0)) > threshold
                   for i, a in enumerate(buys) for b in buys[i + 1:])
    return [s for s in sequences if not correlated(s)]


def diversity_score(sequence: ActionSequence) -> float:
    actions = sequence.actions
    length = len(actions)
    prefixes: dict[str, int] = {}
    for action in actions:
        prefixes[action.symbol[:2]] = prefixes.get(action.symbol[:2], 0) + 1
    tags = {t for a in actions for t in a.tags}
    return (0.4 * len({a.symbol for a in actions}) / length + 0.3 * (1 - max(prefixes.values()) / length)
            + 0.3 * len(tags) / min(length, 5))


def diversity(sequences: Sequence[ActionSequence], weight: float, max_sequences: int) -> list[ActionSequence]:
    """The best `max_sequences` of each length, in the order given."""
    combined = {id(s): (1 - weight) * s.mean_priority + weight * diversity_score(s) for s in sequences}
    kept: set[int] = set()
    for length in sorted({len(s.actions) for s in sequences}):
        same = [s for s in sequences if len(s.actions) == length]
        same.sort(key=lambda s: (-combined[id(s)], s.sequence_hash))
        kept.update(id(s) for s in same[:max_sequences])
    return [s for s in sequences if id(s) in kept]


def apply(sequences: Sequence[ActionSequence], book: Book, config: PlannerConfig,
          correlations: Correlations) -> list[ActionSequence]:
    """Feasibility, then each enabled filter, in the order of the module's docstring."""
    filters = config.filters
    kept = feasible(sequences, book, config.planner.priority_threshold)
    if filters.eligibility.enabled:
        kept = eligibility(kept, book)
    if filters.recently_traded.enabled:
        kept = recently_traded(kept, book)
    if filters.correlation_aware.enabled:
        kept = correlation_aware(kept, correlations, filters.correlation_aware.threshold)
    if filters.diversity.enabled:
        kept = diversity(kept, config.planner.diversity_weight, filters.diversity.max_sequences)
    return kept
