"""The portfolio score (0..100) and the end-state score (0..1) of planner.md section 1, for one
portfolio or for many candidate end states at once.

`Universe` holds each security's part once (its total-return, promise and stability scores,
yield, quality and country group); `portfolio_scores` and `end_state_scores` then score a
matrix of position values (S end states × N securities, base currency) and S cash amounts with
numpy alone, no loop per end state (decisions.md rule 21). `portfolio_score_reference` and
`end_state_score_reference` are the same formulas written plainly for one portfolio, the
yardstick the vectorised ones are tested against.

Weights of a position are its value over the portfolio's total value, cash included (as the
original): cash earns no total-return, promise or stability score.

Missing is not zero (decisions.md rule 2): a security's missing scores are 0.5; a missing
quality counts 0.5; a missing yield counts NEUTRAL_YIELD (the yield whose dividend part is the
documented no-data value 50); a universe without any yield (or quality) scores that part 50.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.planner.scoring import dividends, fundamentals, long_term, short_term
from services.planner.scoring.curves import NEUTRAL, bell, clamp, known
from services.planner.scoring.inputs import OTHER_GROUP, Fundamentals, Metrics

# --- weights ---


@dataclass(frozen=True)
class EndStateWeights:
    total_return: float
    diversification: float
    promise: float
    stability: float
    opinion: float


END_STATE_WEIGHTS = {
    "default": EndStateWeights(0.35, 0.25, 0.20, 0.15, 0.05),
    "conservative": EndStateWeights(0.25, 0.30, 0.20, 0.20, 0.05),
    "aggressive": EndStateWeights(0.45, 0.20, 0.25, 0.05, 0.05),
}
OPINION = NEUTRAL              # the end state's opinion part (the original's constant 0.5)
EMPTY_END_STATE = NEUTRAL      # no positions or no value
PORTFOLIO_WEIGHTS = {"diversification": 0.4, "dividend": 0.3, "quality": 0.3}
NO_DATA_PART = 50.0            # a portfolio-score part without data
NO_TARGET_DEVIATION = 0.2      # mean country-group deviation assumed without targets
NEUTRAL_YIELD = (NO_DATA_PART - 30) / 1000  # 0.02: 30 + 1000·y = 50
TOTAL_RETURN_TARGET = 0.12

# --- one security's part ---


def total_return_score(cagr_5y: float | None, dividend_yield: float | None) -> float:
    """TR = CAGR_5Y + yield on the bell curve (target 0.12, σ 0.06 below, 0.12 above, floor
    0.15). Without a yield TR is the CAGR alone (it comes from adjusted closes, which already
    hold the dividends); without a CAGR -> 0.5."""
    cagr = known(cagr_5y)
    if cagr is None:
        return NEUTRAL
    return bell(cagr + (known(dividend_yield) or 0.0), TOTAL_RETURN_TARGET, 0.06, 0.12)


def promise_sortino_score(sortino: float | None) -> float:
    """The end state's Sortino curve: the long-term one, except 0.6s on [0, 1)."""
    s = known(sortino)
    return 0.6 * s if s is not None and 0 <= s < 1 else long_term.sortino_score(s)


def volatility_score(volatility: float | None) -> float:
    """v <= 0.15 -> 1; <= 0.25 -> 1 - 3(v - 0.15); <= 0.4 -> 0.7 - (0.4/0.15)(v - 0.25);
    else max(0.1, 0.3 - (v - 0.4)); missing or <= 0 -> 0.5."""
    v = known(volatility)
    if v is None or v <= 0:
        return NEUTRAL
    if v <= 0.15:
        return 1.0
    if v <= 0.25:
        return 1 - 3 * (v - 0.15)
    if v <= 0.4:
        return 0.7 - 0.4 / 0.15 * (v - 0.25)
    return max(0.1, 0.3 - (v - 0.4))


def promise_score(metrics: Metrics, facts: Fundamentals) -> float:
    """0.35·consistency + 0.25·financial strength + 0.25·dividend consistency (the payout
    curve) + 0.15·Sortino (the end state's curve)."""
    return clamp(0.35 * fundamentals.consistency_score(metrics.cagr_5y, metrics.cagr_10y)
                 + 0.25 * fundamentals.financial_strength(facts)
                 + 0.25 * dividends.payout_score(facts.payout_ratio)
                 + 0.15 * promise_sortino_score(metrics.sortino))


def stability_score(metrics: Metrics) -> float:
    """0.5·volatility + 0.3·drawdown + 0.2·Sharpe score, over the last year's volatility and
    drawdown (the original's window) and the Sharpe ratio of all history."""
    return clamp(0.5 * volatility_score(metrics.volatility_1y)
                 + 0.3 * short_term.drawdown_score(metrics.max_drawdown_1y)
                 + 0.2 * long_term.sharpe_score(metrics.sharpe))


@dataclass(frozen=True)
class Outlook:
    """One security's part in an end state: scores in [0, 1], yield a fraction (None: unknown),
    quality the planner's score (None: not scored), its country group."""

    total_return: float = NEUTRAL
    promise: float = NEUTRAL
    stability: float = NEUTRAL
    dividend_yield: float | None = None
    quality: float | None = None
    country_group: str = OTHER_GROUP


def outlook(metrics: Metrics, facts: Fundamentals, quality: float | None, country_group: str) -> Outlook:
    return Outlook(total_return_score(metrics.cagr_5y, facts.dividend_yield), promise_score(metrics, facts),
                   stability_score(metrics), known(facts.dividend_yield), known(quality), country_group)


# --- vectorised over many end states ---

# Columns of Universe.columns: one matrix product gives every value-weighted sum at once.
_TR, _PROMISE, _STABILITY, _YIELD, _QUALITY, _GROUPS = range(6)


@dataclass(frozen=True)
class Universe:
    """The securities' parts as arrays, in the column order of the value matrices: `columns`
    (N, 5 + G) holds total return, promise, stability, yield (NEUTRAL_YIELD where unknown),
    quality (NEUTRAL where unknown) and one indicator column per targeted country group."""

    symbols: tuple[str, ...]
    columns: np.ndarray
    targets: np.ndarray           # (G,) the country-group targets, in the order of the columns
    any_yield: bool
    any_quality: bool

    @classmethod
    def build(cls, symbols: Sequence[str], outlooks: Mapping[str, Outlook],
              country_targets: Mapping[str, float]) -> Universe:
        """`outlooks` may lack symbols (they get neutral parts); `country_targets` are shares."""
        parts = [outlooks.get(symbol, Outlook()) for symbol in symbols]
        groups = sorted(g for g, t in country_targets.items() if known(t) is not None)
        rows = [[p.total_return, p.promise, p.stability,
                 NEUTRAL_YIELD if p.dividend_yield is None else p.dividend_yield,
                 NEUTRAL if p.quality is None else p.quality, *(1.0 if p.country_group == g else 0.0 for g in groups)]
                for p in parts]
        return cls(tuple(symbols), np.array(rows, dtype=float).reshape(len(parts), _GROUPS + len(groups)),
                   np.array([float(country_targets[g]) for g in groups]),
                   any(p.dividend_yield is not None for p in parts), any(p.quality is not None for p in parts))


def _weighted_sums(values: np.ndarray, cash: np.ndarray | float,
                   universe: Universe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Σ weight × column (S, 5 + G), total value (S,), rows with a position and value (S,)) for
    values (S, N) or (N,); a position's weight is its value over the total, cash included."""
    held = np.clip(np.atleast_2d(np.asarray(values, dtype=float)), 0.0, None)
    held_sum = held.sum(axis=1)
    total = held_sum + np.broadcast_to(np.asarray(cash, dtype=float), held_sum.shape)
    safe_total = np.where(total > 0, total, 1.0)
    held /= safe_total[:, None]  # weights first: value × score would underflow for tiny values
    return held @ universe.columns, total, (total > 0) & (held_sum > 0)


def _portfolio(sums: np.ndarray, total: np.ndarray, universe: Universe) -> np.ndarray:
    rows = len(sums)
    if universe.targets.size:
        deviation = np.abs(sums[:, _GROUPS:] - universe.targets).mean(axis=1)
    else:
        deviation = np.full(rows, NO_TARGET_DEVIATION)
    diversification = np.maximum(0.0, 100 * (1 - deviation / 0.3))
    dividend = (np.minimum(100.0, 30 + 1000 * sums[:, _YIELD]) if universe.any_yield
                else np.full(rows, NO_DATA_PART))
    quality = np.minimum(100.0, 100 * sums[:, _QUALITY]) if universe.any_quality else np.full(rows, NO_DATA_PART)
    score = (PORTFOLIO_WEIGHTS["diversification"] * diversification + PORTFOLIO_WEIGHTS["dividend"] * dividend
             + PORTFOLIO_WEIGHTS["quality"] * quality)
    return np.where(total > 0, score, NO_DATA_PART)


def portfolio_scores(values: np.ndarray, cash: np.ndarray | float, universe: Universe) -> np.ndarray:
    """Portfolio scores (S,) in 0..100: 0.4·diversification + 0.3·dividend + 0.3·quality."""
    sums, total, _ = _weighted_sums(values, cash, universe)
    return _portfolio(sums, total, universe)


def end_state_scores(values: np.ndarray, cash: np.ndarray | float, universe: Universe,
                     weights: EndStateWeights = END_STATE_WEIGHTS["default"]) -> np.ndarray:
    """End-state scores (S,) in 0..1 of the portfolios `values` (S, N) plus `cash` (S,)."""
    sums, total, valid = _weighted_sums(values, cash, universe)
    score = (weights.total_return * sums[:, _TR]
             + weights.diversification * _portfolio(sums, total, universe) / 100
             + weights.promise * sums[:, _PROMISE]
             + weights.stability * sums[:, _STABILITY]
             + weights.opinion * OPINION)
    return np.where(valid, np.minimum(1.0, score), EMPTY_END_STATE)


# --- the same formulas for one portfolio, plainly ---


def portfolio_score_reference(positions: Mapping[str, float], cash: float, outlooks: Mapping[str, Outlook],
                              country_targets: Mapping[str, float]) -> float:
    """The portfolio score (0..100) of one portfolio: `positions` symbol -> value (base)."""
    held = {symbol: value for symbol, value in positions.items() if value > 0}
    total = sum(held.values()) + cash
    if total <= 0:
        return NO_DATA_PART
    parts = {symbol: outlooks.get(symbol, Outlook()) for symbol in held}
    targets = {g: t for g, t in country_targets.items() if known(t) is not None}
    group_values: dict[str, float] = {}
    for symbol, value in held.items():
        group_values[parts[symbol].country_group] = group_values.get(parts[symbol].country_group, 0.0) + value
    deviations = [abs(group_values.get(g, 0.0) / total - t) for g, t in targets.items()]
    deviation = sum(deviations) / len(deviations) if deviations else NO_TARGET_DEVIATION
    diversification = max(0.0, 100 * (1 - deviation / 0.3))
    universe = list(outlooks.values())
    dividend = NO_DATA_PART
    if any(o.dividend_yield is not None for o in universe):
        weighted_yield = sum(value / total * (NEUTRAL_YIELD if parts[s].dividend_yield is None
                                              else parts[s].dividend_yield) for s, value in held.items())
        dividend = min(100.0, 30 + 1000 * weighted_yield)
    quality = NO_DATA_PART
    if any(o.quality is not None for o in universe):
        quality = min(100.0, 100 * sum(value / total * (NEUTRAL if parts[s].quality is None else parts[s].quality)
                                       for s, value in held.items()))
    return 0.4 * diversification + 0.3 * dividend + 0.3 * quality


def end_state_score_reference(positions: Mapping[str, float], cash: float, outlooks: Mapping[str, Outlook],
                              country_targets: Mapping[str, float],
                              weights: EndStateWeights = END_STATE_WEIGHTS["default"]) -> float:
    """The end-state score (0..1) of one portfolio, position by position."""
    held = {symbol: value for symbol, value in positions.items() if value > 0}
    total = sum(held.values()) + cash
    if total <= 0 or not held:
        return EMPTY_END_STATE
    total_return = promise = stability = 0.0
    for symbol, value in held.items():
        part = outlooks.get(symbol, Outlook())
        total_return += value / total * part.total_return
        promise += value / total * part.promise
        stability += value / total * part.stability
    diversification = portfolio_score_reference(positions, cash, outlooks, country_targets) / 100
    score = (weights.total_return * total_return + weights.diversification * diversification
             + weights.promise * promise + weights.stability * stability + weights.opinion * OPINION)
    return min(1.0, score)
