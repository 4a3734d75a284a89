"""Sequence generation (planner.md section 2 "Sequence generation"): for every depth 1..max_depth,
the enabled patterns on a diverse selection of each category's best candidates, then the
enhanced combinatorial sampling (seeded: the same state gives the same sequences) and, as an
option, the exhaustive combinations; duplicates of an ordered (symbol, side) tuple dropped; in
full mode the extras (prefixes, larger buys). Filters (filters.py) then keep what may be
executed. Pure.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.planner.config import PlannerConfig
from services.planner.feasibility import RunningCash, infeasibility, start
from services.planner.opportunities import Opportunities
from services.planner.opportunities.book import (
    AVERAGING_DOWN,
    BUY,
    OPPORTUNITY_BUYS,
    PROFIT_TAKING,
    REBALANCE_BUYS,
    REBALANCE_SELLS,
    SELL,
    Action,
    Book,
    by_priority,
)
from services.planner.patterns import FULL_MODE_ONLY, PATTERNS, PatternInputs

JACCARD_LIMIT = 0.8         # a sample this close in countries and industries to a recent one is redrawn
JACCARD_WINDOW = 10         # ... compared with the last 10 accepted
RELAXATION_FACTORS = (1.1, 1.2, 1.3)
HELD_RELAXATION_FACTOR = 1.5
INCREMENTAL, FULL = "incremental", "full"


@dataclass(frozen=True)
class ActionSequence:
    """Immutable: its key, priority and hash are computed once (they are asked many times)."""

    actions: tuple[Action, ...]
    generator: str                  # the pattern or generator that made it

    @functools.cached_property
    def key(self) -> tuple[tuple[str, str], ...]:
        """The ordered (symbol, side) tuple duplicates are recognised by."""
        return tuple(a.key for a in self.actions)

    @functools.cached_property
    def priority(self) -> float:
        """The sum of its actions' priorities (the batch order)."""
        return float(sum(a.priority for a in self.actions))

    @property
    def mean_priority(self) -> float:
        return self.priority / len(self.actions) if self.actions else 0.0

    @functools.cached_property
    def sequence_hash(self) -> str:
        """MD5 of the JSON of the ordered [symbol, side, quantity] list (planner.md section 2)."""
        steps = [[a.symbol, a.side, a.quantity] for a in self.actions]
        return hashlib.md5(json.dumps(steps).encode()).hexdigest()

    @property
    def pattern_type(self) -> str:
        """single_best (one step), mixed_strategy (both sides), multi_sell or multi_buy."""
        sides = {a.side for a in self.actions}
        if len(self.actions) == 1:
            return "single_best"
        if sides == {BUY, SELL}:
            return "mixed_strategy"
        return "multi_sell" if sides == {SELL} else "multi_buy"


@dataclass(frozen=True)
class GenerationInputs:
    """What generation needs beyond the book and the opportunities."""

    mode: str = INCREMENTAL
    regime: str = "sideways"
    country_gaps: Mapping[str, float] = field(default_factory=dict)    # group -> target - share
    industry_gaps: Mapping[str, float] = field(default_factory=dict)


# --- diverse selection ---


def cluster(action: Action) -> str:
    """Its country group, else its industry group, else the first 3 characters of its symbol."""
    for prefix in ("COUNTRY:", "INDUSTRY:"):
        tagged = sorted(t for t in action.tags if t.startswith(prefix))
        if tagged:
            return tagged[0]
    return action.symbol[:3]


def diverse_selection(actions: Sequence[Action], count: int, weight: float) -> list[Action]:
    """`count` of `actions` (sorted by priority) spread over clusters: max(1, count // clusters)
    from each cluster (clusters by priority sum), the rest by priority; then ordered by
    (1 - w) x priority / 100 + w / (1 + 0.5 x same-cluster peers)."""
    if not actions:
        return []
    members: dict[str, list[Action]] = {}
    for action in actions:
        members.setdefault(cluster(action), []).append(action)
    clusters = sorted(members, key=lambda c: (-sum(a.priority for a in members[c]), c))
    each = max(1, count // len(clusters))
    chosen = [a for c in clusters for a in members[c][:each]][:count]
    chosen += [a for a in actions if a not in chosen][:count - len(chosen)]
    peers = {c: sum(cluster(a) == c for a in chosen) - 1 for c in members}
    return sorted(chosen, key=lambda a: (-((1 - weight) * a.priority / 100 + weight / (1 + 0.5 * peers[cluster(a)])),
                                         a.symbol, a.side))


def selection(opportunities: Opportunities, config: PlannerConfig) -> Opportunities:
    count = config.planner.max_opportunities_per_category
    if not config.planner.enable_diverse_selection:
        return {c: list(actions[:count]) for c, actions in opportunities.items()}
    return {c: diverse_selection(actions, count, config.planner.diversity_weight)
            for c, actions in opportunities.items()}


# --- combinations ---


def _sides(opportunities: Opportunities, threshold: float, limit: int) -> tuple[list[Action], list[Action]]:
    sells = by_priority([a for c in (PROFIT_TAKING, REBALANCE_SELLS) for a in opportunities.get(c, [])])
    buys = by_priority([a for c in (AVERAGING_DOWN, REBALANCE_BUYS, OPPORTUNITY_BUYS)
                        for a in opportunities.get(c, [])])
    return ([a for a in sells if a.priority >= threshold][:limit], [a for a in buys if a.priority >= threshold][:limit])


def _ordered(sells: Iterable[Action], buys: Iterable[Action]) -> tuple[Action, ...] | None:
    """SELLs then BUYs, each by priority; None when a symbol repeats."""
    actions = tuple(by_priority(list(sells))) + tuple(by_priority(list(buys)))
    return actions if len({a.symbol for a in actions}) == len(actions) else None


def _sampling_weights(actions: Sequence[Action]) -> np.ndarray:
    """((p - min) / (max - min))^2 + 0.1, normalised (uniform when all priorities are equal)."""
    priorities = np.array([a.priority for a in actions], dtype=float)
    spread = priorities.max() - priorities.min()
    weights = ((priorities - priorities.min()) / spread) ** 2 + 0.1 if spread > 0 else np.ones(len(actions))
    return weights / weights.sum()


@functools.lru_cache(maxsize=512)
def _draws(seed: int, depth: int, attempts: int, most_sells: int,
           most_buys: int) -> tuple[tuple[int, ...], tuple[int, ...], np.ndarray | None, np.ndarray | None]:
    """One depth's seeded draws, in the generator's order: per attempt the number of sells and
    of buys, then the uniforms, (attempts, most) per side, that Generator.choice(n, size, p)
    turns into candidates (_choices). They depend on nothing else, so they are drawn once per
    key. Read-only: shared by every call with the key."""
    rng = np.random.default_rng([seed, depth])
    # As Python lists: indexing numpy arrays one scalar at a time is slow.
    n_sells = rng.integers(1 if most_sells else 0, most_sells + 1, attempts).tolist()
    n_buys = rng.integers(1 if most_buys else 0, most_buys + 1, attempts).tolist()
    uniform_sells = rng.random((attempts, most_sells)) if most_sells else None
    uniform_buys = rng.random((attempts, most_buys)) if most_buys else None
    for uniforms in (uniform_sells, uniform_buys):
        if uniforms is not None:
            uniforms.flags.writeable = False
    return tuple(n_sells), tuple(n_buys), uniform_sells, uniform_buys


def _choices(actions: Sequence[Action], uniforms: np.ndarray) -> list[list[int]]:
    """The indices into `actions` drawn with _sampling_weights from `uniforms`, as numpy's
    Generator.choice(len(actions), uniforms.shape, p=weights) draws them (inverse CDF: the
    normalised cumulative weights searched right of each uniform), without its checks of p."""
    cdf = _sampling_weights(actions).cumsum()
    cdf /= cdf[-1]
    return cdf.searchsorted(uniforms, side="right").tolist()


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def enhanced_combinatorial(opportunities: Opportunities, config: PlannerConfig, depth: int) -> list[ActionSequence]:
    """Seeded samples of sells and buys (planner.md: nS in [1, min(max_sells, depth // 2)],
    nB in [1, min(max_buys, depth)], nS + nB <= depth; a side without candidates draws 0),
    weighted by priority; a sample too like one of the last 10 accepted (country and industry
    Jaccard both above 0.8) is redrawn; at most max_combinations per depth and max_attempts draws.
    Every draw is made at once up front (one generator seeded by the configuration and depth),
    so the same opportunities always give the same samples.

    A sample is SELLs then BUYs, each by priority (as `_ordered`), with no symbol twice. The
    loop works on indices into the candidates: each side is already by priority, so a sample's
    distinct indices in ascending order are its actions by priority (equal sort keys mean one
    symbol twice, a sample refused either way); equal actions count once (the first index);
    country and industry groups are bit masks (the same Jaccard ratios of the same counts)."""
    params = config.sequence_generators.enhanced_combinatorial
    sells, buys = _sides(opportunities, config.planner.priority_threshold, params.max_candidates)
    most_sells, most_buys = min(params.max_sells, depth // 2, len(sells)), min(params.max_buys, depth, len(buys))
    if most_sells + most_buys == 0:
        return []
    attempts = params.max_attempts
    n_sells, n_buys, uniform_sells, uniform_buys = _draws(config.evaluation.seed, depth, attempts, most_sells,
                                                          most_buys)
    drawn_sells = _choices(sells, uniform_sells) if most_sells else None
    drawn_buys = _choices(buys, uniform_buys) if most_buys else None
    possible = sum(math.comb(len(sells), k) * math.comb(len(buys), j)  # at most this many samples differ
                   for k in range(1 if most_sells else 0, most_sells + 1)
                   for j in range(1 if most_buys else 0, most_buys + 1) if 0 < k + j <= depth)
    table = _SampleTable(sells + buys)
    first_sell, first_buy = table.first[:len(sells)], table.first[len(sells):]
    symbol_of, key_of, countries_of, industries_of = table.symbol, table.key, table.countries, table.industries
    accepted: list[ActionSequence] = []
    seen: set[tuple[int, ...]] = set()
    recent: list[tuple[int, int]] = []
    alike: dict[tuple[int, int], bool] = {}  # (countries, industries) -> too like the recent window
    for attempt in range(attempts):
        if len(accepted) >= params.max_combinations or len(seen) >= possible:
            break
        count_sells, count_buys = n_sells[attempt], n_buys[attempt]
        if count_sells + count_buys == 0 or count_sells + count_buys > depth:
            continue
        order = sorted({first_sell[i] for i in drawn_sells[attempt][:count_sells]}) if count_sells else []
        if count_buys:
            order += sorted({first_buy[i] for i in drawn_buys[attempt][:count_buys]})
        if len({symbol_of[i] for i in order}) != len(order):
            continue
        key = tuple([key_of[i] for i in order])
        if key in seen:
            continue
        countries = industries = 0
        for i in order:
            countries |= countries_of[i]
            industries |= industries_of[i]
        groups = (countries, industries)
        too_alike = alike.get(groups)
        if too_alike is None:
            too_alike = alike[groups] = any(
                _jaccard_bits(countries, c) > JACCARD_LIMIT and _jaccard_bits(industries, i) > JACCARD_LIMIT
                for c, i in recent[-JACCARD_WINDOW:])
        if too_alike:
            continue
        seen.add(key)
        recent.append(groups)
        alike.clear()  # the answers held for the window before this sample
        accepted.append(ActionSequence(tuple([table.actions[i] for i in order]), "enhanced_combinatorial"))
    return accepted


class _SampleTable:
    """Per candidate (sells then buys, one index space): the first index of an equal action,
    a number per symbol and per (symbol, side) key, and its country and industry groups as bit
    masks (those of the last candidate with its key, as a dict built over them would hold)."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = actions
        firsts: dict[Action, int] = {}
        self.first = [firsts.setdefault(a, i) for i, a in enumerate(actions)]
        symbols: dict[str, int] = {}
        self.symbol = [symbols.setdefault(a.symbol, len(symbols)) for a in actions]
        keys: dict[tuple[str, str], int] = {}
        self.key = [keys.setdefault(a.key, len(keys)) for a in actions]
        bits: dict[str, int] = {}
        by_key = {a.key: (self._mask(a.group_tags("COUNTRY:"), bits), self._mask(a.group_tags("INDUSTRY:"), bits))
                  for a in actions}
        self.countries = [by_key[a.key][0] for a in actions]
        self.industries = [by_key[a.key][1] for a in actions]

    @staticmethod
    def _mask(groups: frozenset[str], bits: dict[str, int]) -> int:
        mask = 0
        for group in groups:
            mask |= 1 << bits.setdefault(group, len(bits))
        return mask


def _jaccard_bits(a: int, b: int) -> float:
    """_jaccard of two sets given as bit masks."""
    union = (a | b).bit_count()
    return (a & b).bit_count() / union if union else 1.0


def exhaustive(opportunities: Opportunities, config: PlannerConfig, depth: int) -> list[ActionSequence]:
    """Every choice of k sells and j buys (k <= max_sells, j <= max_buys, 1 <= k + j <= depth),
    best candidates first, at most max_combinations per depth."""
    params = config.sequence_generators.combinatorial
    sells, buys = _sides(opportunities, config.planner.priority_threshold, params.max_candidates)
    found: list[ActionSequence] = []
    for k in range(min(params.max_sells, depth, len(sells)) + 1):
        for j in range(min(params.max_buys, depth - k, len(buys)) + 1):
            if k + j == 0:
                continue
            for chosen_sells, chosen_buys in itertools.product(itertools.combinations(sells, k),
                                                               itertools.combinations(buys, j)):
                actions = _ordered(chosen_sells, chosen_buys)
                if actions is not None:
                    found.append(ActionSequence(actions, "combinatorial"))
                if len(found) >= params.max_combinations:
                    return found
    return found


# --- extras (full mode) ---


def partial_executions(sequences: Iterable[ActionSequence]) -> list[ActionSequence]:
    """Every proper prefix of every sequence."""
    return [ActionSequence(s.actions[:n], "partial_execution") for s in sequences for n in range(1, len(s.actions))]


def constraint_relaxations(sequences: Iterable[ActionSequence], book: Book) -> list[ActionSequence]:
    """Copies with every BUY 10, 20 and 30% larger (a held security's also 50%), in whole lots,
    kept only where the running cash still covers them."""
    found = []
    for sequence in sequences:
        if not any(a.side == BUY for a in sequence.actions):
            continue
        factors = RELAXATION_FACTORS + ((HELD_RELAXATION_FACTOR,) if any(
            a.side == BUY and a.symbol in book.positions for a in sequence.actions) else ())
        for factor in factors:
            actions = tuple(_scaled(a, factor, book) if a.side == BUY else a for a in sequence.actions)
            if actions != sequence.actions and not infeasibility(actions, book):
                found.append(ActionSequence(actions, "constraint_relaxation"))
    return found


def _scaled(action: Action, factor: float, book: Book) -> Action:
    security = book.securities[action.symbol]
    quantity = max(action.quantity, int(action.quantity * factor) // security.lot * security.lot)
    return Action(action.side, action.symbol, quantity, action.price, action.currency,
                  quantity * security.price_base, action.priority, action.category, action.reason, action.tags)


# --- the depth loop ---


def dedupe(sequences: Iterable[ActionSequence]) -> list[ActionSequence]:
    """The first sequence of each ordered (symbol, side) tuple; none with a repeated symbol."""
    kept: dict[tuple, ActionSequence] = {}
    for sequence in sequences:
        if sequence.actions and len({a.symbol for a in sequence.actions}) == len(sequence.actions):
            kept.setdefault(sequence.key, sequence)
    return list(kept.values())


def generate(book: Book, opportunities: Opportunities, config: PlannerConfig,
             inputs: GenerationInputs = GenerationInputs()) -> list[ActionSequence]:
    """Every candidate sequence for depths 1..max_depth, deduplicated by ordered (symbol, side)
    (before filters). In full mode the extras follow: prefixes not already present, and larger
    buys of the same steps (which differ only in quantity, so they are kept beside them)."""
    chosen = selection(opportunities, config)
    patterns = config.patterns
    regime = patterns.market_regime.regime if patterns.market_regime.regime != "auto" else inputs.regime
    pattern_inputs = PatternInputs(chosen, start(book), regime, inputs.country_gaps, inputs.industry_gaps)
    enabled = [(name, build) for name, build in PATTERNS.items()
               if getattr(patterns, name).enabled and (name not in FULL_MODE_ONLY or inputs.mode == FULL)]
    generators = config.sequence_generators
    found: list[ActionSequence] = []
    for depth in range(1, config.planner.max_depth + 1):
        found += [ActionSequence(tuple(actions), name) for name, build in enabled
                  if (actions := build(pattern_inputs, depth))]
        if generators.enhanced_combinatorial.enabled:
            found += enhanced_combinatorial(opportunities, config, depth)
        if generators.combinatorial.enabled:
            found += exhaustive(opportunities, config, depth)
    found = dedupe(found)
    if inputs.mode != FULL:
        return found
    extras = dedupe(partial_executions(found)) if generators.partial_execution.enabled else []
    extras = [s for s in extras if s.key not in {f.key for f in found}]
    if generators.constraint_relaxation.enabled:
        extras += constraint_relaxations(found, book)  # the same steps in larger sizes: kept beside them
    return found + extras


__all__ = ["ActionSequence", "GenerationInputs", "RunningCash", "generate"]
