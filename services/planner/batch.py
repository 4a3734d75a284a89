"""Incremental batches (planner.md section 2 "Incremental batch mode"), the pure part: the key
of a batch, what is stored of it (the books as arrays, actions, sequence rows) and the
evaluation of the next chunk of sequences with the progress it makes. The engine stores and
loads; this module decides.

A batch holds every candidate sequence of one state and day (`batch_key`: the recommendation
state, trading's rules, the markets, the regime and the day; a new key discards the other
batches). Sequences are evaluated in their stored order (highest total priority first):
- incremental mode: every sequence is evaluated; the best score wins (the first of equals);
- full mode: the beam search (planner.md "Full mode selection"): chunks of 5, a beam of the
  configuration's `beam_width` best scores; once at least 10 are evaluated and 7 chunks in a
  row left the beam unchanged, the rest is skipped.
A batch is complete when every sequence is evaluated or skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from services.planner.config import PlannerConfig
from services.planner.evaluation import (
    BEAM_CHUNK,
    DETERMINISTIC,
    Costs,
    EvaluationBook,
    beam_done,
    beam_update,
    encode,
    evaluate,
    score_with,
)
from services.planner.opportunities.book import Action
from services.planner.scoring.end_state import END_STATE_WEIGHTS, Outlook
from services.planner.sequences import FULL, ActionSequence


def batch_key(cache_key: Mapping, day: str) -> str:
    """32 hex digits of the SHA-256 of what the plan depends on and the day."""
    return hashlib.sha256(json.dumps([cache_key, day], sort_keys=True, default=str).encode()).hexdigest()[:32]


# --- what is stored ---


def action_to_json(action: Action) -> dict:
    """Its fields in their order (as dataclasses.asdict, whose deep copy of plain values
    changes nothing), the tags as a list, an infinite priority as null."""
    return {"side": action.side, "symbol": action.symbol, "quantity": action.quantity, "price": action.price,
            "currency": action.currency, "value_base": action.value_base,
            "priority": action.priority if math.isfinite(action.priority) else None,  # the mandatory steps'
            "category": action.category, "reason": action.reason, "tags": list(action.tags)}


def action_from_json(data: Mapping) -> Action:
    priority = math.inf if data["priority"] is None else data["priority"]
    return Action(**{**data, "priority": priority, "tags": tuple(data["tags"])})


def sequence_rows(sequences: Sequence[ActionSequence]) -> list[dict]:
    """One row per sequence (the first of equal hashes), `position` in the given order."""
    rows, seen = [], set()
    encoded: dict[int, str] = {}  # id(action) -> its JSON (actions recur across sequences; all alive here)
    for sequence in sequences:
        if sequence.sequence_hash in seen:
            continue
        seen.add(sequence.sequence_hash)
        steps = [encoded.get(id(a)) or encoded.setdefault(id(a), json.dumps(action_to_json(a)))
                 for a in sequence.actions]
        rows.append({"sequence_hash": sequence.sequence_hash, "position": len(rows), "priority": sequence.priority,
                     "depth": len(sequence.actions), "pattern_type": sequence.pattern_type,
                     "generator": sequence.generator, "completed": False,
                     "steps": "[" + ", ".join(steps) + "]"})  # json.dumps of the list, its separator
    return rows


def actions_of(steps_json: str) -> list[Action]:
    return [action_from_json(a) for a in json.loads(steps_json)]


_OUTLOOK_FIELDS = tuple(f.name for f in fields(Outlook))  # asdict's keys (its values are plain: no copy needed)


def book_to_json(book: EvaluationBook) -> dict:
    return {"symbols": list(book.symbols), "prices_base": book.prices_base.tolist(),
            "quantities": book.quantities.tolist(), "currencies_of": [book.currencies[i] for i in book.currency_of],
            "cash": dict(zip(book.currencies, book.cash.tolist(), strict=True)),
            "base": book.currencies[book.base_index], "reserve_base": book.reserve_base,
            "auto_convert": book.auto_convert, "price_band": book.price_band,
            "outlooks": {s: {f: getattr(o, f) for f in _OUTLOOK_FIELDS} for s, o in book.outlooks.items()},
            "country_targets": dict(book.country_targets),
            "volatility": [None if math.isnan(v) else v for v in book.volatility.tolist()],
            "costs": asdict(book.costs), "weights": _weights_name(book),
            "multi_timeframe": book.multi_timeframe}


def book_from_json(data: Mapping) -> EvaluationBook:
    return EvaluationBook.build(
        data["symbols"], data["prices_base"], data["quantities"], data["currencies_of"], data["cash"], data["base"],
        data["reserve_base"], data["auto_convert"], data["price_band"],
        {s: Outlook(**o) for s, o in data["outlooks"].items()}, data["country_targets"], data["volatility"],
        Costs(**data["costs"]), END_STATE_WEIGHTS[data["weights"]], data["multi_timeframe"])


def _weights_name(book: EvaluationBook) -> str:
    return next(name for name, weights in END_STATE_WEIGHTS.items() if weights == book.weights)


# --- evaluating the next chunk ---


@dataclass(frozen=True)
class Progress:
    evaluated: int = 0
    skipped: int = 0
    plateau: int = 0
    beam: tuple[float, ...] = ()
    best_hash: str | None = None
    best_score: float | None = None


@dataclass(frozen=True)
class Scored:
    sequence_hash: str
    score: float           # in the configuration's evaluation mode
    end_score: float       # deterministic end-state score before the cost penalty
    end_cash_base: float
    cost_base: float


@dataclass(frozen=True)
class ChunkResult:
    scored: list[Scored] = field(default_factory=list)
    progress: Progress = Progress()
    stop: bool = False     # full mode: the beam search is done; skip the rest


def _score(book: EvaluationBook, config: PlannerConfig,
           sequences: Sequence[tuple[str, Sequence[Action]]]) -> list[Scored]:
    encoded = encode([actions for _, actions in sequences], book)
    outcome = evaluate(book, encoded)
    scores = outcome.scores if config.evaluation.mode == DETERMINISTIC else score_with(config, book, encoded)
    return [Scored(h, s, e, c, k) for (h, _), s, e, c, k in  # tolist: Python floats, as float() of each
            zip(sequences, np.asarray(scores, dtype=float).tolist(), outcome.end_scores.tolist(),
                outcome.end_cash.tolist(), outcome.costs.tolist(), strict=True)]


def _best(progress: Progress, scored: Sequence[Scored]) -> Progress:
    for item in scored:
        if progress.best_score is None or item.score > progress.best_score:
            progress = replace(progress, best_hash=item.sequence_hash, best_score=item.score)
    return replace(progress, evaluated=progress.evaluated + len(scored))


def evaluate_next(book: EvaluationBook, config: PlannerConfig, sequences: Sequence[tuple[str, Sequence[Action]]],
                  progress: Progress) -> ChunkResult:
    """Evaluate `sequences` (hash, actions), the next ones in order, and the progress after
    them. In full mode chunks of 5 go through the beam search, which may stop before the end."""
    if config.planner.mode != FULL:
        scored = _score(book, config, sequences)
        return ChunkResult(scored, _best(progress, scored))
    done: list[Scored] = []
    for start in range(0, len(sequences), BEAM_CHUNK):
        scored = _score(book, config, sequences[start:start + BEAM_CHUNK])
        beam, plateau = beam_update(list(progress.beam), progress.plateau, [s.score for s in scored],
                                    config.planner.beam_width)
        progress = replace(_best(progress, scored), beam=tuple(beam), plateau=plateau)
        done += scored
        if beam_done(progress.evaluated, progress.plateau):
            return ChunkResult(done, progress, True)
    return ChunkResult(done, progress)


def evaluate_all(book: EvaluationBook, config: PlannerConfig,
                 sequences: Sequence[ActionSequence]) -> tuple[Progress, list[Scored]]:
    """Every sequence at once, as the batches would do them one after the other (CreatePlan)."""
    result = evaluate_next(book, config, [(s.sequence_hash, s.actions) for s in sequences], Progress())
    skipped = len(sequences) - len(result.scored)
    return replace(result.progress, skipped=skipped), result.scored


def beat(best: float | None, baseline: float, holds_positions: bool = True) -> bool:
    """The best sequence is worth doing when it scores above doing nothing. Books without a
    position have no end-state score of their own (the formula's 0.5 stands for "no
    portfolio"), so there the best sequence is always worth doing."""
    return best is not None and (best > baseline + 1e-12 or not holds_positions)

