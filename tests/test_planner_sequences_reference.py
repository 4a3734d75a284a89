"""The fast sequence generation and batch rows against the plain ones they replaced (same
samples, same order, same hashes, same stored JSON): `reference_enhanced_combinatorial` and
`reference_action_to_json` are the former implementations, kept verbatim as the yardsticks,
run over random opportunities (hypothesis) with repeated symbols, equal priorities, equal
actions in two places and a wide range of generator settings."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.planner import batch
from services.planner.config import preset
from services.planner.opportunities.book import BUY, CATEGORIES, SELL, SELL_CATEGORIES, Action, by_priority
from services.planner.sequences import (
    JACCARD_LIMIT,
    JACCARD_WINDOW,
    ActionSequence,
    _choices,
    _draws,
    _sampling_weights,
    _sides,
    enhanced_combinatorial,
)


def _ordered(sells, buys):
    actions = tuple(by_priority(list(sells))) + tuple(by_priority(list(buys)))
    return actions if len({a.symbol for a in actions}) == len(actions) else None


def _jaccard(a, b):
    return len(a & b) / len(a | b) if a | b else 1.0


def reference_enhanced_combinatorial(opportunities, config, depth):
    params = config.sequence_generators.enhanced_combinatorial
    sells, buys = _sides(opportunities, config.planner.priority_threshold, params.max_candidates)
    most_sells, most_buys = min(params.max_sells, depth // 2, len(sells)), min(params.max_buys, depth, len(buys))
    if most_sells + most_buys == 0:
        return []
    rng = np.random.default_rng([config.evaluation.seed, depth])
    attempts = params.max_attempts
    n_sells = rng.integers(1 if most_sells else 0, most_sells + 1, attempts).tolist()
    n_buys = rng.integers(1 if most_buys else 0, most_buys + 1, attempts).tolist()
    drawn_sells = rng.choice(len(sells), (attempts, most_sells), p=_sampling_weights(sells)).tolist() \
        if most_sells else None
    drawn_buys = rng.choice(len(buys), (attempts, most_buys), p=_sampling_weights(buys)).tolist() \
        if most_buys else None
    groups = {a.key: (a.group_tags("COUNTRY:"), a.group_tags("INDUSTRY:")) for a in sells + buys}
    possible = sum(math.comb(len(sells), k) * math.comb(len(buys), j)
                   for k in range(1 if most_sells else 0, most_sells + 1)
                   for j in range(1 if most_buys else 0, most_buys + 1) if 0 < k + j <= depth)
    accepted, seen, recent = [], set(), []
    for attempt in range(attempts):
        if len(accepted) >= params.max_combinations or len(seen) >= possible:
            break
        count_sells, count_buys = n_sells[attempt], n_buys[attempt]
        if count_sells + count_buys == 0 or count_sells + count_buys > depth:
            continue
        chosen_sells = [sells[i] for i in drawn_sells[attempt][:count_sells]] if count_sells else []
        chosen_buys = [buys[i] for i in drawn_buys[attempt][:count_buys]] if count_buys else []
        actions = _ordered(dict.fromkeys(chosen_sells), dict.fromkeys(chosen_buys))
        if actions is None:
            continue
        key = tuple(a.key for a in actions)
        if key in seen:
            continue
        countries = frozenset().union(*(groups[a.key][0] for a in actions))
        industries = frozenset().union(*(groups[a.key][1] for a in actions))
        if any(_jaccard(countries, c) > JACCARD_LIMIT and _jaccard(industries, i) > JACCARD_LIMIT
               for c, i in recent[-JACCARD_WINDOW:]):
            continue
        seen.add(key)
        recent.append((countries, industries))
        accepted.append(ActionSequence(actions, "enhanced_combinatorial"))
    return accepted


GROUPS = ("US", "EU", "ASIA", "OTHER")
INDUSTRIES = ("Tech", "Energy", "Health")


@st.composite
def actions(draw, category: str, symbols: int = 9):
    side = SELL if category in SELL_CATEGORIES else BUY
    tags = tuple(f"COUNTRY:{g}" for g in draw(st.sets(st.sampled_from(GROUPS), max_size=2))) + \
        tuple(f"INDUSTRY:{g}" for g in draw(st.sets(st.sampled_from(INDUSTRIES), max_size=2)))
    return Action(side, f"S{draw(st.integers(0, symbols - 1))}", draw(st.integers(1, 50)), 10.0, "EUR",
                  100.0, draw(st.sampled_from([0.2, 0.5, 0.5, 0.9, 1.0, 1.3])), category, "r", tags)


@st.composite
def opportunities(draw, most: int = 7):
    """Few symbols: (symbol, side) keys repeat (EnhancedSampler's sample-by-sample path); many:
    they do not (its bit-mask path)."""
    symbols = draw(st.sampled_from([9, 60]))
    found = {c: draw(st.lists(actions(c, symbols), max_size=most)) for c in CATEGORIES}
    if draw(st.booleans()):  # an equal action twice in its category
        category = draw(st.sampled_from([c for c in CATEGORIES if found[c]] or [CATEGORIES[0]]))
        if found[category]:
            found[category].append(found[category][draw(st.integers(0, len(found[category]) - 1))])
    return {c: by_priority(a) for c, a in found.items()}


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(opportunities(), st.integers(1, 10), st.integers(1, 6), st.integers(1, 6), st.integers(1, 60),
       st.integers(1, 14), st.integers(1, 400), st.integers(0, 2**31))
def test_enhanced_combinatorial_gives_the_reference_samples(found, depth, max_sells, max_buys, max_combinations,
                                                            max_candidates, max_attempts, seed):
    config = preset("default")
    params = replace(config.sequence_generators.enhanced_combinatorial, max_sells=max_sells, max_buys=max_buys,
                     max_combinations=max_combinations, max_candidates=max_candidates, max_attempts=max_attempts)
    config = replace(config, evaluation=replace(config.evaluation, seed=seed),
                     sequence_generators=replace(config.sequence_generators, enhanced_combinatorial=params))
    expected = reference_enhanced_combinatorial(found, config, depth)
    got = enhanced_combinatorial(found, config, depth)
    assert [(s.actions, s.generator, s.sequence_hash) for s in got] == \
        [(s.actions, s.generator, s.sequence_hash) for s in expected]


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(opportunities(most=40), st.integers(2, 10), st.integers(0, 2**31))
def test_more_candidates_than_a_bit_mask_holds_give_the_reference_samples(found, depth, seed):
    config = preset("default")
    params = replace(config.sequence_generators.enhanced_combinatorial, max_candidates=100, max_sells=5, max_buys=8)
    config = replace(config, evaluation=replace(config.evaluation, seed=seed),
                     sequence_generators=replace(config.sequence_generators, enhanced_combinatorial=params))
    assert [(s.actions, s.sequence_hash) for s in enhanced_combinatorial(found, config, depth)] == \
        [(s.actions, s.sequence_hash) for s in reference_enhanced_combinatorial(found, config, depth)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=14), st.integers(1, 300), st.integers(1, 10),
       st.integers(0, 2**31))
def test_choices_draw_what_generator_choice_draws(priorities, attempts, most, seed):
    found = [Action(BUY, f"S{i}", 1, 1.0, "EUR", 1.0, p, "opportunity_buys", "r") for i, p in enumerate(priorities)]
    expected = np.random.default_rng(seed).choice(len(found), (attempts, most), p=_sampling_weights(found))
    assert _choices(found, np.random.default_rng(seed).random((attempts, most))) == expected.tolist()


def test_the_draws_are_shared_read_only():
    first = _draws(20260101, 3, 150, 1, 2)
    assert _draws(20260101, 3, 150, 1, 2) is first
    for drawn in first:
        with pytest.raises(ValueError):
            drawn[0] = 0


def reference_action_to_json(action: Action) -> dict:
    data = asdict(action)
    data["tags"] = list(action.tags)
    if not math.isfinite(action.priority):
        data["priority"] = None
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(opportunities(), st.sampled_from([1.0, math.inf]), st.integers(1, 6))
def test_sequence_rows_store_what_json_dumps_of_the_actions_gives(found, priority, depth):
    config = preset("default")
    mandatory = Action(SELL, "M", 3, 10.0, "EUR", 30.0, priority, "emergency", "cash", ("COUNTRY:EU",))
    sequences = [ActionSequence((mandatory, *s.actions), s.generator)
                 for s in enhanced_combinatorial(found, config, depth)]
    sequences += sequences[:3]  # equal hashes: the first kept
    rows = batch.sequence_rows(sequences)
    assert len(rows) == len({s.sequence_hash for s in sequences})
    for row, sequence in zip(rows, sequences, strict=False):
        assert row["steps"] == json.dumps([reference_action_to_json(a) for a in sequence.actions])
        assert batch.action_to_json(sequence.actions[0]) == reference_action_to_json(sequence.actions[0])
        assert batch.actions_of(row["steps"]) == list(sequence.actions)
