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
from collections.abc import Callable, Iterable, Mapping, Sequence
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
           most_buys: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One depth's seeded draws, in the generator's order: per attempt the number of sells and
    of buys, then the uniforms, (attempts, most) per side, that Generator.choice(n, size, p)
    turns into candidates (_cdf). They depend on nothing else, so they are drawn once per key.
    Read-only: shared by every call with the key."""
    rng = np.random.default_rng([seed, depth])
    n_sells = rng.integers(1 if most_sells else 0, most_sells + 1, attempts)
    n_buys = rng.integers(1 if most_buys else 0, most_buys + 1, attempts)
    uniform_sells = rng.random((attempts, most_sells)) if most_sells else None
    uniform_buys = rng.random((attempts, most_buys)) if most_buys else None
    for drawn in (n_sells, n_buys, uniform_sells, uniform_buys):
        if drawn is not None:
            drawn.flags.writeable = False
    return n_sells, n_buys, uniform_sells, uniform_buys


def _cdf(actions: Sequence[Action]) -> np.ndarray:
    """The normalised cumulative _sampling_weights: Generator.choice(len(actions), size,
    p=weights) draws cdf.searchsorted(uniforms, side="right") (inverse CDF), without its
    checks of p."""
    cdf = _sampling_weights(actions).cumsum()
    cdf /= cdf[-1]
    return cdf


def _choices(actions: Sequence[Action], uniforms: np.ndarray) -> list[list[int]]:
    """The indices into `actions` drawn from `uniforms` as Generator.choice draws them."""
    return _cdf(actions).searchsorted(uniforms, side="right").tolist()


def enhanced_combinatorial(opportunities: Opportunities, config: PlannerConfig, depth: int) -> list[ActionSequence]:
    """Seeded samples of sells and buys (planner.md: nS in [1, min(max_sells, depth // 2)],
    nB in [1, min(max_buys, depth)], nS + nB <= depth; a side without candidates draws 0),
    weighted by priority; a sample too like one of the last 10 accepted (country and industry
    Jaccard both above 0.8) is redrawn; at most max_combinations per depth and max_attempts draws.
    Every draw is made at once up front (one generator seeded by the configuration and depth),
    so the same opportunities always give the same samples. (EnhancedSampler: for every depth.)"""
    return EnhancedSampler(opportunities, config).sample(depth)


class EnhancedSampler:
    """enhanced_combinatorial for any depth of one set of opportunities; what does not depend
    on the depth (each side's candidates by priority, their sampling CDFs, _SampleTable) is
    made once.

    A sample is SELLs then BUYs, each by priority (as `_ordered`), with no symbol twice. It is
    worked out on indices into the candidates (sells then buys): each side is already by
    priority, so a sample's distinct indices in ascending order are its actions by priority
    (equal sort keys mean one symbol twice, a sample refused either way); equal actions count
    once (the first index); country and industry groups are bit masks (the same Jaccard ratios
    of the same counts). With at most 62 candidates, 62 groups and one candidate per (symbol,
    side) key, every attempt's sample is a bit mask of indices computed for all attempts at
    once (numpy); otherwise attempt by attempt. Only the acceptance (seen, the recent window)
    runs in order."""

    def __init__(self, opportunities: Opportunities, config: PlannerConfig) -> None:
        self._params = config.sequence_generators.enhanced_combinatorial
        self._seed = config.evaluation.seed
        self._sells, self._buys = _sides(opportunities, config.planner.priority_threshold, self._params.max_candidates)
        self._cdfs = (_cdf(self._sells) if self._sells else None, _cdf(self._buys) if self._buys else None)
        self._table = _SampleTable(self._sells + self._buys)

    def sample(self, depth: int) -> list[ActionSequence]:
        params, sells, buys = self._params, self._sells, self._buys
        most_sells, most_buys = min(params.max_sells, depth // 2, len(sells)), min(params.max_buys, depth, len(buys))
        if most_sells + most_buys == 0:
            return []
        n_sells, n_buys, uniform_sells, uniform_buys = _draws(self._seed, depth, params.max_attempts, most_sells,
                                                              most_buys)
        drawn_sells = self._cdfs[0].searchsorted(uniform_sells, side="right") if most_sells else None
        drawn_buys = self._cdfs[1].searchsorted(uniform_buys, side="right") + len(sells) if most_buys else None
        possible = sum(math.comb(len(sells), k) * math.comb(len(buys), j)  # at most this many samples differ
                       for k in range(1 if most_sells else 0, most_sells + 1)
                       for j in range(1 if most_buys else 0, most_buys + 1) if 0 < k + j <= depth)
        sampled = self._table.masked if self._table.fits_masks else self._table.listed
        keys, countries, industries, actions_of = sampled(depth, n_sells, n_buys, drawn_sells, drawn_buys)
        accepted: list[ActionSequence] = []
        seen: set = set()
        recent: list[tuple[int, int]] = []
        alike: dict[tuple[int, int], bool] = {}  # (countries, industries) -> too like the recent window
        for attempt, key in enumerate(keys):
            if len(accepted) >= params.max_combinations or len(seen) >= possible:
                break
            if key is None or key in seen:  # a refused draw, or a sample already taken
                continue
            groups = (countries[attempt], industries[attempt])
            too_alike = alike.get(groups)
            if too_alike is None:
                too_alike = alike[groups] = any(
                    _jaccard_bits(groups[0], c) > JACCARD_LIMIT and _jaccard_bits(groups[1], i) > JACCARD_LIMIT
                    for c, i in recent[-JACCARD_WINDOW:])
            if too_alike:
                continue
            seen.add(key)
            recent.append(groups)
            alike.clear()  # the answers held for the window before this sample
            accepted.append(ActionSequence(actions_of(attempt), "enhanced_combinatorial"))
        return accepted


MASK_BITS = 62  # indices and groups that fit an int64 bit mask (and its popcount)


class _SampleTable:
    """Per candidate (sells then buys, one index space): the first index of an equal action,
    a number per symbol and per (symbol, side) key, and its country and industry groups as bit
    masks (those of the last candidate with its key, as a dict built over them would hold).

    `masked` and `listed` give, per attempt, the sample's key (None: refused: no candidate,
    more than `depth`, or a symbol twice) and its groups' masks, and the function from an
    attempt to its sample's actions in order. The key is what tells two samples apart: their ordered
    (symbol, side) keys, as numbers (listed) or, where each candidate has its own key, the bit
    mask of the candidates (masked)."""

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
        distinct = set(self.first)
        self.fits_masks = (len(actions) <= MASK_BITS and len(bits) <= MASK_BITS
                           and len({self.key[i] for i in distinct}) == len(distinct))
        if self.fits_masks:
            self._bit = np.array([1 << i for i in self.first], dtype=np.int64)
            self._symbol_bit = np.array([1 << s for s in self.symbol], dtype=np.int64)
            self._country_bits = np.array(self.countries, dtype=np.int64)
            self._industry_bits = np.array(self.industries, dtype=np.int64)

    @staticmethod
    def _mask(groups: frozenset[str], bits: dict[str, int]) -> int:
        mask = 0
        for group in groups:
            mask |= 1 << bits.setdefault(group, len(bits))
        return mask

    def masked(self, depth: int, n_sells: np.ndarray, n_buys: np.ndarray, drawn_sells: np.ndarray | None,
               drawn_buys: np.ndarray | None) -> tuple[list, list[int], list[int], Callable]:
        def union(bits: np.ndarray) -> np.ndarray:  # per attempt, the OR of its drawn candidates' bits
            total = np.zeros(len(n_sells), dtype=np.int64)
            for drawn, counts in ((drawn_sells, n_sells), (drawn_buys, n_buys)):
                if drawn is not None:
                    taken = np.arange(drawn.shape[1]) < counts[:, None]  # the first `count` draws
                    total |= np.bitwise_or.reduce(np.where(taken, bits[drawn], 0), axis=1)
            return total
        chosen, symbols = union(self._bit), union(self._symbol_bit)
        size = n_sells + n_buys
        kept = (size > 0) & (size <= depth) & (np.bitwise_count(chosen) == np.bitwise_count(symbols))
        keys = [m if k else None for m, k in zip(chosen.tolist(), kept.tolist(), strict=True)]
        return (keys, union(self._country_bits).tolist(), union(self._industry_bits).tolist(),
                lambda attempt: self._of_mask(keys[attempt]))

    def listed(self, depth: int, n_sells: np.ndarray, n_buys: np.ndarray, drawn_sells: np.ndarray | None,
               drawn_buys: np.ndarray | None) -> tuple[list, list[int], list[int], Callable]:
        first, symbol_of, key_of = self.first, self.symbol, self.key
        sells_drawn = drawn_sells.tolist() if drawn_sells is not None else None
        buys_drawn = drawn_buys.tolist() if drawn_buys is not None else None
        keys: list = []
        countries: list[int] = []
        industries: list[int] = []
        orders: list[list[int]] = []
        for attempt, (count_sells, count_buys) in enumerate(zip(n_sells.tolist(), n_buys.tolist(), strict=True)):
            order = sorted({first[i] for i in sells_drawn[attempt][:count_sells]}) if count_sells else []
            if count_buys:
                order += sorted({first[i] for i in buys_drawn[attempt][:count_buys]})
            orders.append(order)
            if count_sells + count_buys == 0 or count_sells + count_buys > depth or \
                    len({symbol_of[i] for i in order}) != len(order):
                keys.append(None)
                countries.append(0)
                industries.append(0)
                continue
            key = tuple([key_of[i] for i in order])
            keys.append(key)
            country = industry = 0
            for i in order:
                country |= self.countries[i]
                industry |= self.industries[i]
            countries.append(country)
            industries.append(industry)
        return keys, countries, industries, lambda attempt: tuple([self.actions[i] for i in orders[attempt]])

    def _of_mask(self, mask: int) -> tuple[Action, ...]:
        return tuple([self.actions[i] for i in range(len(self.actions)) if mask >> i & 1])


def _jaccard_bits(a: int, b: int) -> float:
    """The Jaccard index |a & b| / |a | b| (1 when both are empty) of two sets given as bit
    masks."""
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
    sampler = EnhancedSampler(opportunities, config) if generators.enhanced_combinatorial.enabled else None
    found: list[ActionSequence] = []
    for depth in range(1, config.planner.max_depth + 1):
        found += [ActionSequence(tuple(actions), name) for name, build in enabled
                  if (actions := build(pattern_inputs, depth))]
        if sampler is not None:
            found += sampler.sample(depth)
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
