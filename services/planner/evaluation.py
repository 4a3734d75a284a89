"""One evaluation function for many sequences at once (decisions.md rule 21; planner.md
section 2 "Simulation" and "Evaluation"). Pure: numpy, no loop per sequence.

`evaluate` applies S sequences (each up to D steps, encoded as arrays) to the starting books
(positions, cash per currency) and scores each end state:

- prices: each security's quote in the base currency, times a scenario's multiplier;
- SELL: the position's value falls by quantity x price (never below 0), its currency's cash
  rises by that value less the commission;
- BUY: happens only when trading's cash check would pass at that point (value at the limit
  price with trading's commission must fit the spendable cash of its currency: its own
  balance, plus the base currency's when trading converts, never the reserve; plan.Cash); the
  value is added to the position and value + commission taken from its currency, the rest from
  the base currency; a BUY that does not fit is skipped (the original's rule), so a price
  scenario can leave a sequence partly done;
- commission = the configuration's fixed fee + percent x value (2 EUR + 0.2% by default);
- end score = the end-state score (scoring.end_state.end_state_scores: the same vectorised
  function the scoring package scores portfolios with), x 1.015 capped at 1 with the
  multi-timeframe option (0.2 x 0.95e + 0.3e + 0.5 x 1.05e), less the transaction-cost
  penalty: max(0, end - costs / starting total value x cost_penalty_factor).

The modes wrap the same function: deterministic (prices as they are); stochastic (every price
shifted by 0, +-5% and +-10%, weighted 0.40 / 0.15 each, the original's evaluator's weights);
Monte Carlo (seeded paths: each security's price times exp(sigma / sqrt(252) x Z), clamped to
0.5..2, sigma its annual volatility clamped to 0.1..1.0, 0.2 when unknown; the result
0.4 x worst + 0.3 x 10th percentile + 0.3 x mean over the paths). Unlike the original, a
scenario re-prices the whole book, held positions included, so each scenario is one
consistent set of prices.

`evaluate_reference` is the same formula for one sequence, written plainly with dicts and
loops: the yardstick `evaluate` is tested against, and the baseline of bench/planner.py.
`beam_update` is the full mode's stopping rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.planner.config import PlannerConfig
from services.planner.opportunities.book import BUY, Action
from services.planner.scoring.end_state import (
    END_STATE_WEIGHTS,
    EndStateWeights,
    Outlook,
    Universe,
    end_state_score_reference,
    end_state_scores,
)
from services.trading.orders import COMMISSION_FIXED_BASE, COMMISSION_RATE  # trading's cash check

MULTI_TIMEFRAME = 0.2 * 0.95 + 0.3 + 0.5 * 1.05   # 1.015
STOCHASTIC_SHIFTS = (-0.10, -0.05, 0.0, 0.05, 0.10)
STOCHASTIC_WEIGHTS = (0.15, 0.15, 0.40, 0.15, 0.15)
MC_WORST, MC_P10, MC_MEAN = 0.4, 0.3, 0.3
MC_VOLATILITY_RANGE = (0.1, 1.0)
MC_DEFAULT_VOLATILITY = 0.2
MC_MULTIPLIER_RANGE = (0.5, 2.0)
TRADING_DAYS = 252
CHUNK = 8_192                 # sequences per pass: CHUNK x N values stay in the CPU's cache
BEAM_CHUNK = 5                # full mode: sequences per step of the beam search
BEAM_MIN_EVALUATED = 10
BEAM_PLATEAU = 7
SELL_SIDE, NO_STEP, BUY_SIDE = -1, 0, 1
DETERMINISTIC, STOCHASTIC, MONTE_CARLO = "deterministic", "stochastic", "monte_carlo"


@dataclass(frozen=True)
class Costs:
    fixed: float = 2.0            # per trade, base currency
    percent: float = 0.002        # of the trade value
    penalty_factor: float = 0.1   # cost_penalty_factor


@dataclass(frozen=True)
class EvaluationBook:
    """The starting books, as arrays in one column order (the securities' `symbols`)."""

    symbols: tuple[str, ...]
    prices_base: np.ndarray       # (N,) per share
    quantities: np.ndarray        # (N,) shares held
    currency_of: np.ndarray       # (N,) index into `currencies`
    currencies: tuple[str, ...]
    cash: np.ndarray              # (C,) balances valued in the base currency (may be negative)
    base_index: int
    reserve_base: float
    auto_convert: bool
    price_band: float
    total_value_base: float       # positions + cash at the start: the cost penalty's denominator
    volatility: np.ndarray        # (N,) annual; nan when unknown
    universe: Universe            # the securities' end-state parts, same order
    outlooks: Mapping[str, Outlook]
    country_targets: Mapping[str, float]
    costs: Costs = Costs()
    weights: EndStateWeights = END_STATE_WEIGHTS["default"]
    multi_timeframe: bool = False

    @classmethod
    def build(cls, symbols: Sequence[str], prices_base: Sequence[float], quantities: Sequence[float],
              currencies_of: Sequence[str], cash: Mapping[str, float], base: str, reserve_base: float,
              auto_convert: bool, price_band: float, outlooks: Mapping[str, Outlook],
              country_targets: Mapping[str, float], volatility: Sequence[float | None] | None = None,
              costs: Costs = Costs(), weights: EndStateWeights = END_STATE_WEIGHTS["default"],
              multi_timeframe: bool = False) -> EvaluationBook:
        currencies = tuple(sorted({base, *cash, *currencies_of}))
        prices = np.asarray(prices_base, dtype=float)
        held = np.asarray(quantities, dtype=float)
        balances = np.array([float(cash.get(c, 0.0)) for c in currencies])
        vol = np.array([math.nan if v is None else float(v)
                        for v in ([None] * len(symbols) if volatility is None else volatility)])
        return cls(tuple(symbols), prices, held, np.array([currencies.index(c) for c in currencies_of], dtype=np.intp),
                   currencies, balances, currencies.index(base), float(reserve_base), bool(auto_convert),
                   float(price_band), float((held * prices).sum() + balances.sum()), vol,
                   Universe.build(symbols, outlooks, country_targets), dict(outlooks), dict(country_targets),
                   costs, weights, multi_timeframe)

    def index(self, symbol: str) -> int:
        return self.symbols.index(symbol)


@dataclass(frozen=True)
class EncodedSequences:
    """S sequences of at most D steps: security index (-1: no step), side (+1 BUY, -1 SELL,
    0 none) and quantity, each (S, D)."""

    index: np.ndarray
    side: np.ndarray
    quantity: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, selection: slice | np.ndarray) -> EncodedSequences:
        return EncodedSequences(self.index[selection], self.side[selection], self.quantity[selection])


def encode(sequences: Sequence[Sequence[Action]], book: EvaluationBook) -> EncodedSequences:
    """Sequences of actions as arrays for `evaluate` (every symbol must be in the book)."""
    depth = max((len(s) for s in sequences), default=0)
    index = np.full((len(sequences), depth), -1, dtype=np.intp)
    side = np.zeros((len(sequences), depth), dtype=np.int8)
    quantity = np.zeros((len(sequences), depth))
    position = {symbol: i for i, symbol in enumerate(book.symbols)}
    for row, actions in enumerate(sequences):
        for step, action in enumerate(actions):
            index[row, step] = position[action.symbol]
            side[row, step] = BUY_SIDE if action.side == BUY else SELL_SIDE
            quantity[row, step] = action.quantity
    return EncodedSequences(index, side, quantity)


@dataclass(frozen=True)
class Outcome:
    scores: np.ndarray            # (S,) the final score, 0..1
    end_scores: np.ndarray        # (S,) the end-state score before the cost penalty
    costs: np.ndarray             # (S,) commissions of the steps done, base currency
    end_cash: np.ndarray          # (S,) cash at the end, base currency
    done: np.ndarray              # (S, D) which steps happened


def _required(value: np.ndarray, band: float) -> np.ndarray:
    """Trading's cash check: the value at the limit price plus trading's commission on it."""
    limit = value * (1 + band)
    return limit + COMMISSION_FIXED_BASE + COMMISSION_RATE * limit


def _evaluate_chunk(book: EvaluationBook, encoded: EncodedSequences, multiplier: np.ndarray) -> Outcome:
    count, depth = encoded.index.shape
    prices = book.prices_base * multiplier
    values = np.repeat((book.quantities * prices)[None, :], count, axis=0)
    flat_values = values.reshape(-1)  # a view: one flat index per row is cheaper than two
    cash = np.repeat(book.cash[None, :], count, axis=0)
    flat_cash = cash.reshape(-1)
    costs = np.zeros(count)
    done = np.zeros((count, depth), dtype=bool)
    rows = np.arange(count)
    base = book.base_index
    width, currencies = values.shape[1], cash.shape[1]
    fixed, percent = book.costs.fixed, book.costs.percent
    for step in range(depth):
        side = encoded.side[:, step]
        column = np.maximum(encoded.index[:, step], 0)
        currency = book.currency_of[column]
        value = encoded.quantity[:, step] * prices[column]
        at, at_cash = rows * width + column, rows * currencies + currency
        held = flat_values[at]
        sold = np.minimum(value, held)
        sell = (side == SELL_SIDE) & (sold > 0)
        own = flat_cash[at_cash]
        spendable = own + np.where(book.auto_convert & (currency != base), cash[:, base], 0.0)
        spendable = np.maximum(0.0, np.minimum(cash.sum(axis=1) - book.reserve_base, spendable))
        buy = (side == BUY_SIDE) & (_required(value, book.price_band) <= spendable)
        traded = np.where(sell, sold, np.where(buy, value, 0.0))
        commission = np.where(sell | buy, fixed + percent * traded, 0.0)
        paid = np.where(buy, value + commission, 0.0)
        from_own = np.where(buy, np.clip(np.minimum(paid, own), 0.0, None), 0.0)
        flat_values[at] = held + np.where(buy, value, 0.0) - np.where(sell, sold, 0.0)
        flat_cash[at_cash] = own + np.where(sell, sold - commission, 0.0) - from_own
        cash[:, base] -= paid - from_own
        costs += commission
        done[:, step] = sell | buy
    end_cash = cash.sum(axis=1)
    end = end_state_scores(values, end_cash, book.universe, book.weights)
    if book.multi_timeframe:
        end = np.minimum(1.0, end * MULTI_TIMEFRAME)
    penalty = costs / book.total_value_base * book.costs.penalty_factor if book.total_value_base > 0 else 0.0
    return Outcome(np.maximum(0.0, end - penalty), end, costs, end_cash, done)


def evaluate(book: EvaluationBook, encoded: EncodedSequences, multiplier: np.ndarray | None = None) -> Outcome:
    """Every sequence's outcome under one price scenario (`multiplier` (N,), 1 by default)."""
    scale = np.ones(len(book.symbols)) if multiplier is None else np.asarray(multiplier, dtype=float)
    parts = [_evaluate_chunk(book, encoded.rows(slice(start, start + CHUNK)), scale)
             for start in range(0, max(len(encoded), 1), CHUNK)]
    if len(parts) == 1:
        return parts[0]
    return Outcome(*(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("scores", "end_scores", "costs", "end_cash", "done")))


def monte_carlo_multipliers(book: EvaluationBook, paths: int, seed: int) -> np.ndarray:
    """(paths, N) seeded price multipliers: exp(sigma / sqrt(252) x Z) clamped to 0.5..2."""
    sigma = np.where(np.isnan(book.volatility), MC_DEFAULT_VOLATILITY, book.volatility)
    sigma = np.clip(sigma, *MC_VOLATILITY_RANGE)
    z = np.random.default_rng(seed).standard_normal((paths, len(book.symbols)))
    return np.clip(np.exp(sigma / math.sqrt(TRADING_DAYS) * z), *MC_MULTIPLIER_RANGE)


def score(book: EvaluationBook, encoded: EncodedSequences, mode: str = DETERMINISTIC, paths: int = 100,
          seed: int = 0) -> np.ndarray:
    """(S,) scores in the evaluation mode; every mode runs `evaluate`."""
    if mode == DETERMINISTIC:
        return evaluate(book, encoded).scores
    if mode == STOCHASTIC:
        return sum(weight * evaluate(book, encoded, np.full(len(book.symbols), 1 + shift)).scores
                   for shift, weight in zip(STOCHASTIC_SHIFTS, STOCHASTIC_WEIGHTS, strict=True))
    if mode == MONTE_CARLO:
        by_path = np.stack([evaluate(book, encoded, m).scores for m in monte_carlo_multipliers(book, paths, seed)])
        return (MC_WORST * by_path.min(axis=0) + MC_P10 * np.percentile(by_path, 10, axis=0)
                + MC_MEAN * by_path.mean(axis=0))
    raise ValueError(f"unknown evaluation mode {mode!r}")


def score_with(config: PlannerConfig, book: EvaluationBook, encoded: EncodedSequences) -> np.ndarray:
    evaluation = config.evaluation
    return score(book, encoded, evaluation.mode, evaluation.monte_carlo_paths, evaluation.seed)


def current_score(config: PlannerConfig, book: EvaluationBook) -> float:
    """The score of doing nothing (the books as they are)."""
    empty = EncodedSequences(np.zeros((1, 0), dtype=np.intp), np.zeros((1, 0), dtype=np.int8), np.zeros((1, 0)))
    return float(score_with(config, book, empty)[0])


# --- the same formula for one sequence, plainly ---


def evaluate_reference(book: EvaluationBook, steps: Sequence[tuple[int, int, float]],
                       multiplier: Sequence[float] | None = None) -> float:
    """The score of one sequence of (security index, side, quantity) steps, position by
    position with dicts (the same formula as `evaluate`)."""
    scale = [1.0] * len(book.symbols) if multiplier is None else list(multiplier)
    prices = [float(p) * m for p, m in zip(book.prices_base, scale, strict=True)]
    positions = {s: float(q) * prices[i] for i, (s, q) in enumerate(zip(book.symbols, book.quantities, strict=True))}
    cash = {c: float(book.cash[i]) for i, c in enumerate(book.currencies)}
    base = book.currencies[book.base_index]
    costs = 0.0
    for index, side, quantity in steps:
        if side == NO_STEP or index < 0:
            continue
        symbol, currency = book.symbols[index], book.currencies[book.currency_of[index]]
        value = quantity * prices[index]
        if side == SELL_SIDE:
            sold = min(value, positions[symbol])
            if sold > 0:
                commission = book.costs.fixed + book.costs.percent * sold
                positions[symbol] -= sold
                cash[currency] += sold - commission
                costs += commission
            continue
        own = cash[currency]
        available = own + (cash[base] if book.auto_convert and currency != base else 0.0)
        spendable = max(0.0, min(sum(cash.values()) - book.reserve_base, available))
        limit = value * (1 + book.price_band)
        if limit + COMMISSION_FIXED_BASE + COMMISSION_RATE * limit > spendable:
            continue
        commission = book.costs.fixed + book.costs.percent * value
        paid = value + commission
        from_own = max(0.0, min(paid, own))
        positions[symbol] += value
        cash[currency] -= from_own
        cash[base] -= paid - from_own
        costs += commission
    end = end_state_score_reference(positions, sum(cash.values()), book.outlooks, book.country_targets, book.weights)
    if book.multi_timeframe:
        end = min(1.0, end * MULTI_TIMEFRAME)
    penalty = costs / book.total_value_base * book.costs.penalty_factor if book.total_value_base > 0 else 0.0
    return max(0.0, end - penalty)


# --- full mode: the beam search's stopping rule ---


def beam_update(beam: list[float], plateau: int, scores: Sequence[float], width: int) -> tuple[list[float], int]:
    """The beam (the best `width` scores so far, best first) and the plateau count after one
    chunk of scores: the count grows by one when no score of the chunk enters the beam, else
    starts again at 0 (planner.md section 2 "Full mode selection")."""
    merged = sorted([*beam, *scores], reverse=True)[:width]
    improved = any(s > (beam[-1] if len(beam) >= width else -math.inf) for s in scores)
    return merged, 0 if improved else plateau + 1


def beam_done(evaluated: int, plateau: int) -> bool:
    """Stop once at least 10 sequences are evaluated and 7 chunks in a row changed nothing."""
    return evaluated >= BEAM_MIN_EVALUATED and plateau >= BEAM_PLATEAU
