"""The one evaluation function (issue 14 item 4; decisions.md rule 21): the vectorised
evaluation equals the plain per-sequence reference on random books (to 1e-9), its modes wrap
it, and the beam search's stopping rule."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.planner import batch, evaluation
from services.planner.config import preset
from services.planner.evaluation import (
    BUY_SIDE,
    SELL_SIDE,
    Costs,
    EncodedSequences,
    EvaluationBook,
    beam_done,
    beam_update,
    evaluate,
    evaluate_reference,
    score,
)
from services.planner.opportunities.book import Action
from services.planner.scoring.end_state import END_STATE_WEIGHTS, Outlook
from services.planner.sequences import ActionSequence

GROUPS = ("US", "EU", "ASIA", "OTHER")


@st.composite
def evaluation_books(draw):
    count = draw(st.integers(1, 12))
    symbols = [f"S{i}" for i in range(count)]
    currencies = [draw(st.sampled_from(["EUR", "EUR", "USD", "GBP"])) for _ in symbols]
    outlooks = {s: Outlook(draw(st.floats(0, 1)), draw(st.floats(0, 1)), draw(st.floats(0, 1)),
                           draw(st.none() | st.floats(0, 0.08)), draw(st.none() | st.floats(0, 1)),
                           draw(st.sampled_from(GROUPS)))
                for s in symbols if draw(st.booleans())}
    cash = {c: draw(st.floats(-2_000, 50_000)) for c in ("EUR", "USD", "GBP") if draw(st.booleans())}
    targets = {g: draw(st.floats(0, 0.6)) for g in GROUPS[:3] if draw(st.booleans())}
    return EvaluationBook.build(
        symbols, [draw(st.floats(0.5, 2_000)) for _ in symbols],
        [draw(st.integers(0, 500)) for _ in symbols], currencies, cash, "EUR", draw(st.floats(0, 2_000)),
        draw(st.booleans()), draw(st.sampled_from([0.0, 0.05])), outlooks, targets,
        [draw(st.none() | st.floats(0.05, 1.5)) for _ in symbols],
        Costs(draw(st.floats(0, 10)), draw(st.floats(0, 0.01)), draw(st.floats(0, 1))),
        END_STATE_WEIGHTS[draw(st.sampled_from(sorted(END_STATE_WEIGHTS)))], draw(st.booleans()))


def random_sequences(rng: np.random.Generator, book: EvaluationBook, count: int, depth: int) -> EncodedSequences:
    """Anything, feasible or not: sells of more than held, buys that do not fit, padding."""
    index = rng.integers(0, len(book.symbols), (count, depth))
    side = rng.choice([SELL_SIDE, BUY_SIDE, 0], (count, depth), p=[0.4, 0.45, 0.15]).astype(np.int8)
    index[side == 0] = -1
    return EncodedSequences(index, side, rng.integers(1, 80, (count, depth)).astype(float))


def reference(book, encoded, multiplier=None) -> np.ndarray:
    return np.array([evaluate_reference(book, list(zip(encoded.index[r], encoded.side[r], encoded.quantity[r],
                                                       strict=True)), multiplier)
                     for r in range(len(encoded))])


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(evaluation_books(), st.integers(0, 2**32 - 1), st.integers(0, 6))
def test_the_vectorised_evaluation_equals_the_reference(book, seed, depth):
    rng = np.random.default_rng(seed)
    encoded = random_sequences(rng, book, 25, depth)
    assert evaluate(book, encoded).scores == pytest.approx(reference(book, encoded), abs=1e-9)
    multiplier = rng.uniform(0.5, 2.0, len(book.symbols))
    assert evaluate(book, encoded, multiplier).scores == pytest.approx(reference(book, encoded, multiplier), abs=1e-9)


def small_book(**changes) -> EvaluationBook:
    parts = {"A": Outlook(0.9, 0.8, 0.7, None, 0.8, "US"), "B": Outlook(0.3, 0.4, 0.5, None, 0.4, "EU")}
    base = dict(symbols=["A", "B"], prices_base=[100.0, 50.0], quantities=[10, 40], currencies_of=["EUR", "USD"],
                cash={"EUR": 1_000.0, "USD": 0.0}, base="EUR", reserve_base=0.0, auto_convert=True, price_band=0.0,
                outlooks=parts, country_targets={})
    return EvaluationBook.build(**{**base, **changes})


def encoded(*sequences) -> EncodedSequences:
    depth = max(len(s) for s in sequences)
    index = np.full((len(sequences), depth), -1)
    side = np.zeros((len(sequences), depth), dtype=np.int8)
    quantity = np.zeros((len(sequences), depth))
    for row, steps in enumerate(sequences):
        for column, (i, s, q) in enumerate(steps):
            index[row, column], side[row, column], quantity[row, column] = i, s, q
    return EncodedSequences(index, side, quantity)


def test_the_simulation_written_out():
    """Selling 20 B (1,000 at 50, a USD security) brings 1,000 - (2 + 2) = 996 USD (valued in
    EUR). Buying 15 A (an EUR security) then needs 1,500 + 2 + 3 = 1,505 of EUR, and only 1,000
    EUR is there (USD is never converted into EUR): skipped. Buying 9 A needs 903.80: done."""
    book = small_book()
    out = evaluate(book, encoded([(1, SELL_SIDE, 20), (0, BUY_SIDE, 15)], [(1, SELL_SIDE, 20), (0, BUY_SIDE, 9)]))
    assert out.done.tolist() == [[True, False], [True, True]]
    assert out.costs.tolist() == pytest.approx([4.0, 4.0 + 3.8])
    assert out.end_cash.tolist() == pytest.approx([1_000 + 996, 1_000 + 996 - 903.8])
    # a USD BUY uses USD first, then converts from EUR (auto-conversion on): B 30 at 50 = 1,500 + 5
    out = evaluate(small_book(cash={"EUR": 1_000.0, "USD": 600.0}), encoded([(1, BUY_SIDE, 30)]))
    assert out.done.tolist() == [[True]] and out.end_cash.tolist() == pytest.approx([1_600 - 1_505])
    off = evaluate(small_book(cash={"EUR": 1_000.0, "USD": 600.0}, auto_convert=False), encoded([(1, BUY_SIDE, 30)]))
    assert off.done.tolist() == [[False]]  # without conversion only the 600 USD count
    reserved = evaluate(small_book(reserve_base=500.0), encoded([(0, BUY_SIDE, 6)]))
    assert reserved.done.tolist() == [[False]]  # 603.20 needed, 500 spendable above the reserve


def test_the_score_is_the_end_state_minus_the_cost_penalty():
    book = small_book(costs=Costs(2.0, 0.002, 0.5))
    out = evaluate(book, encoded([(1, SELL_SIDE, 20)]))
    assert out.scores[0] == pytest.approx(max(0.0, out.end_scores[0] - 4.0 / book.total_value_base * 0.5))
    timeframes = evaluate(small_book(multi_timeframe=True), encoded([(1, SELL_SIDE, 20)]))
    assert timeframes.end_scores[0] == pytest.approx(min(1.0, evaluate(small_book(), encoded(
        [(1, SELL_SIDE, 20)])).end_scores[0] * 1.015))


def test_the_modes_wrap_the_same_function():
    book = small_book(volatility=[0.3, None])
    sequences = encoded([(1, SELL_SIDE, 20), (0, BUY_SIDE, 9)], [(0, BUY_SIDE, 5)], [])
    stochastic = sum(w * evaluate(book, sequences, np.full(2, 1 + shift)).scores
                     for shift, w in zip((-0.1, -0.05, 0.0, 0.05, 0.1), (0.15, 0.15, 0.4, 0.15, 0.15), strict=True))
    assert score(book, sequences, "stochastic") == pytest.approx(stochastic)
    paths = evaluation.monte_carlo_multipliers(book, 50, 11)
    assert paths.shape == (50, 2) and ((paths >= 0.5) & (paths <= 2.0)).all()
    by_path = np.stack([evaluate(book, sequences, m).scores for m in paths])
    expected = 0.4 * by_path.min(0) + 0.3 * np.percentile(by_path, 10, axis=0) + 0.3 * by_path.mean(0)
    assert score(book, sequences, "monte_carlo", 50, 11) == pytest.approx(expected)
    assert (score(book, sequences, "monte_carlo", 50, 11) == score(book, sequences, "monte_carlo", 50, 11)).all()
    assert score(book, sequences) == pytest.approx(evaluate(book, sequences).scores)
    with pytest.raises(ValueError):
        score(book, sequences, "guess")


def test_many_sequences_in_chunks_give_the_same_scores(monkeypatch):
    rng = np.random.default_rng(3)
    book = small_book()
    sequences = random_sequences(rng, book, 1_000, 4)
    whole = evaluate(book, sequences).scores
    monkeypatch.setattr(evaluation, "CHUNK", 64)
    assert (evaluate(book, sequences).scores == whole).all()


def test_books_survive_their_stored_form():
    book = small_book(volatility=[0.3, None], country_targets={"US": 0.4}, costs=Costs(1.0, 0.001, 0.2),
                      weights=END_STATE_WEIGHTS["aggressive"], multi_timeframe=True)
    stored = batch.book_to_json(book)
    assert stored["outlooks"] == {s: asdict(o) for s, o in book.outlooks.items()}
    again = batch.book_from_json(stored)
    sequences = encoded([(1, SELL_SIDE, 20), (0, BUY_SIDE, 9)])
    assert (evaluate(again, sequences).scores == evaluate(book, sequences).scores).all()
    assert math.isnan(again.volatility[1]) and again.weights == book.weights


def test_beam_search_stops_on_a_plateau():
    beam, plateau = beam_update([], 0, [0.5, 0.4], 3)
    assert (beam, plateau) == ([0.5, 0.4], 0)
    beam, plateau = beam_update(beam, plateau, [0.45], 3)
    assert (beam, plateau) == ([0.5, 0.45, 0.4], 0)   # the beam was not full: anything enters
    beam, plateau = beam_update(beam, plateau, [0.3, 0.2], 3)
    assert (beam, plateau) == ([0.5, 0.45, 0.4], 1)   # nothing above the beam's worst
    beam, plateau = beam_update(beam, plateau, [0.41], 3)
    assert (beam, plateau) == ([0.5, 0.45, 0.41], 0)
    assert not beam_done(9, 7) and not beam_done(10, 6) and beam_done(10, 7)


def test_full_mode_runs_the_beam_search_and_incremental_mode_evaluates_everything():
    """120 one-step sequences, best first: in full mode (beam 3) the first chunk of 5 fills the
    beam, the next 7 chunks change nothing, so 40 are evaluated and the other 80 skipped; the
    best is the best of all. Incremental mode evaluates all 120 and finds the same best."""
    book = small_book(cash={"EUR": 100_000.0, "USD": 0.0})
    sequences = [ActionSequence((Action("BUY", symbol, quantity, price, "EUR", quantity * price, 1.0,
                                        "opportunity_buys", "test"),), "test")
                 for symbol, price in (("A", 100.0), ("B", 50.0)) for quantity in range(1, 61)]
    default = preset("default")
    everything, scored = batch.evaluate_all(book, default, sequences)
    assert (everything.evaluated, everything.skipped) == (120, 0)
    assert all(type(x) is float for s in scored for x in (s.score, s.end_score, s.end_cash_base, s.cost_base))
    by_score = {s.sequence_hash: s.score for s in scored}
    sequences.sort(key=lambda s: -by_score[s.sequence_hash])
    full = replace(default, planner=replace(default.planner, mode="full", beam_width=3))
    progress, searched = batch.evaluate_all(book, full, sequences)
    assert (progress.evaluated, progress.skipped, progress.plateau) == (40, 80, 7)
    assert [s.sequence_hash for s in searched] == [s.sequence_hash for s in sequences[:40]]
    assert progress.best_hash == everything.best_hash == sequences[0].sequence_hash
    assert progress.best_score == pytest.approx(max(by_score.values()))
    assert list(progress.beam) == pytest.approx(sorted(by_score.values(), reverse=True)[:3])
