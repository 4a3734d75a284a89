"""The optimiser: target weights from valid closes, CAGRs, scores and the portfolio's bounds
(planner.md section 3, with decisions.md winning). Pure: plain data in, plain data out.

1. Securities without 60 valid closes or without a CAGR are left out (reason given).
2. Expected returns (expected_returns.py), less the cost haircut.
3. Ledoit-Wolf covariance and daily returns over the aligned valid closes (risk.py).
4. Bounds (bounds.py) and country/industry constraints (sectors.py).
5. When the caps add up to at most 100% nothing is left to choose: each security gets its cap
   (`at_caps`). Otherwise mean-variance through its fallback chain (mean_variance.py) and HRP
   (hrp.py), blended (blend.py; `optimizer_blend` is HRP's share).
6. Post-processing in the documented order, then fit (blend.py): every bound and the group
   ranges of the level used hold on the result, and the weights sum to at most
   1 - reserve/value - the weight of holdings the optimiser cannot move (held securities left
   out, here or before). What cannot be placed stays cash and a note says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from services.planner import defaults
from services.planner.eligibility import Exclusion
from services.planner.optimizer.blend import blend, fit, post_process
from services.planner.optimizer.bounds import EPSILON, BoundInput, Bounds, rounded, security_bounds
from services.planner.optimizer.expected_returns import MarketOutlook, cost_haircut, expected_return
from services.planner.optimizer.hrp import hrp_weights
from services.planner.optimizer.mean_variance import mean_variance
from services.planner.optimizer.risk import (
    Aligned,
    Closes,
    Correlation,
    aligned,
    daily_returns,
    ledoit_wolf,
    top_correlations,
)
from services.planner.optimizer.sectors import (
    GroupTargets,
    SectorConstraint,
    fit_minimums,
    relaxation_levels,
    sector_constraints,
)
from services.planner.settings import PlannerSettings

AT_CAPS = "at_caps"  # the method reported when the caps alone decide the weights
BLEND, MEAN_VARIANCE, HRP = "blend", "mean_variance", "hrp"


@dataclass(frozen=True)
class SecurityInput:
    symbol: str
    closes: Closes | Sequence[tuple[str, float]]  # valid daily closes (or (ISO date, close) pairs), oldest first
    cagr: float | None                    # data metrics CAGR_5Y, else CAGR_10Y; None: not computable
    dividend_yield: float | None = None   # fundamentals; None: unknown
    total_score: float | None = None      # 0..1; None: not scored (neutral)
    country: str = ""
    industry: str = ""
    bounds: BoundInput = BoundInput()     # targets, allow flags, lot, holding


@dataclass(frozen=True)
class OptimizerInput:
    securities: Sequence[SecurityInput]
    portfolio_value_base: float           # positions + cash, base currency
    reserve_base: float                   # cash the targets leave aside (regime reserve)
    regime: str = "sideways"              # bull, bear or sideways
    settings: PlannerSettings = PlannerSettings()
    groups: GroupTargets = GroupTargets()
    outlook: MarketOutlook = MarketOutlook()
    fixed_weight: float = 0.0             # held weight outside `securities` (it stays where it is)


@dataclass(frozen=True)
class Fallback:
    level: str      # sector constraints: full, relaxed_sectors or no_sectors
    objective: str  # efficient_return, min_volatility, efficient_risk or max_sharpe


@dataclass(frozen=True)
class OptimizerResult:
    weights: dict[str, float]             # symbol -> fraction of the portfolio (> 0)
    method: str                           # blend, mean_variance, hrp, at_caps; "" when nothing was optimised
    fallback: Fallback | None             # what mean-variance used; None when it did not run or failed
    expected_return: float                # sum of mu x weight
    expected_returns: dict[str, float]    # mu per optimised security (after the cost haircut)
    correlations: list[Correlation]
    bounds: Bounds
    constraints: list[SectorConstraint]   # the group ranges that hold on `weights`
    investable: float                     # the share the weights could fill
    excluded: list[Exclusion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    halfway: bool = False                 # the half-step was taken

    @property
    def unallocated(self) -> float:
        """The share of the portfolio the targets leave in cash (reserve, caps, rounding)."""
        return max(0.0, 1.0 - sum(self.weights.values()))


def optimize(inputs: OptimizerInput) -> OptimizerResult:
    usable, excluded = _usable(inputs.securities)
    value = inputs.portfolio_value_base
    left_out = {e.symbol for e in excluded}
    fixed = inputs.fixed_weight + sum(s.bounds.value_base for s in inputs.securities if s.symbol in left_out) / value \
        if value > 0 else 0.0
    investable = max(0.0, 1 - inputs.reserve_base / value - fixed) if value > 0 else 1.0
    notes = _input_notes(inputs, usable)
    if value <= 0:
        notes.append("the portfolio has no value yet: the targets are shares of a fully invested portfolio")
    prices = aligned({s.symbol: s.closes for s in usable})
    if not usable or investable <= 0 or len(prices.days) < defaults.MIN_HISTORY_BARS:
        why = ("no security has the history to be optimised" if not usable else
               f"nothing may be invested (portfolio value {value:,.2f}, reserve {inputs.reserve_base:,.2f})"
               if investable <= 0 else f"the securities share only {len(prices.days)} dates with valid closes "
                                       f"({defaults.MIN_HISTORY_BARS} needed)")
        return OptimizerResult({}, "", None, 0.0, {}, [], Bounds({}, {}), [], investable, excluded, notes + [why])
    symbols = prices.symbols
    by_symbol = {s.symbol: s for s in usable}
    mu = _expected_returns(inputs, [by_symbol[s] for s in symbols])
    bounds, constraints = _constraints(inputs, [by_symbol[s] for s in symbols], investable)
    levels = relaxation_levels(constraints)
    returns = daily_returns(prices)
    correlations = top_correlations(returns, symbols)
    raw, method, fallback = _raw_weights(inputs.settings, prices, returns, mu, bounds, levels)
    if method == "":
        return OptimizerResult({}, "", None, 0.0, mu, correlations, bounds, [], investable, excluded,
                               notes + bounds.notes + ["neither mean-variance nor HRP found weights"])
    applied = dict(levels)[fallback.level] if fallback else constraints
    current = {s: by_symbol[s].bounds.value_base / value if value > 0 else 0.0 for s in symbols}
    weights, halfway = post_process(raw, bounds, current, investable)
    weights, groups_held = fit(weights, bounds, applied)
    weights = rounded(weights, bounds, total=sum(weights.values()) + EPSILON)
    notes += bounds.notes + _outcome_notes(method, fallback, halfway, groups_held, applied, weights, bounds, investable)
    return OptimizerResult(weights, method, fallback, sum(mu[s] * w for s, w in weights.items()), mu,
                           correlations, bounds, applied if groups_held else [], investable, excluded,
                           notes, halfway)


def _usable(securities: Sequence[SecurityInput]) -> tuple[list[SecurityInput], list[Exclusion]]:
    usable, excluded = [], []
    for security in sorted(securities, key=lambda s: s.symbol):
        if len(security.closes) < defaults.MIN_HISTORY_BARS:
            excluded.append(Exclusion(security.symbol, "insufficient_history",
                                      f"{len(security.closes)} valid daily closes, {defaults.MIN_HISTORY_BARS} needed"))
        elif security.cagr is None:
            excluded.append(Exclusion(security.symbol, "insufficient_history",
                                      "no CAGR (fewer than 12 monthly averages of valid closes): no expected return"))
        else:
            usable.append(security)
    return usable, excluded


def _expected_returns(inputs: OptimizerInput, securities: list[SecurityInput]) -> dict[str, float]:
    settings = inputs.settings
    return {s.symbol: expected_return(s.cagr, s.dividend_yield, s.total_score, inputs.regime, inputs.outlook,
                                      settings.target_annual_return)
            - cost_haircut(s.bounds.value_base, inputs.portfolio_value_base, settings.transaction_cost_fixed,
                           settings.transaction_cost_percent)
            for s in securities}


def _constraints(inputs: OptimizerInput, securities: list[SecurityInput],
                 investable: float) -> tuple[Bounds, list[SectorConstraint]]:
    bounds = security_bounds({s.symbol: s.bounds for s in securities}, inputs.portfolio_value_base,
                             investable=investable)
    if inputs.groups.empty:
        return bounds, []
    constraints, notes = sector_constraints({s.symbol: s.country for s in securities},
                                            {s.symbol: s.industry for s in securities}, inputs.groups)
    lower, constraints, more = fit_minimums(bounds.lower, constraints)
    return Bounds(lower, bounds.upper, bounds.notes + notes + more), constraints


def _raw_weights(settings: PlannerSettings, prices: Aligned, returns: np.ndarray, mu: dict[str, float],
                 bounds: Bounds, levels) -> tuple[dict[str, float], str, Fallback | None]:
    """Mean-variance and HRP weights from the same daily returns (`returns`, a row per date of
    `prices` after its first, a column per symbol)."""
    if bounds.upper_total <= 1 + EPSILON:
        return dict(bounds.upper), AT_CAPS, None
    share = settings.optimizer_blend
    symbols = prices.symbols
    found = mean_variance(symbols, np.array([mu[s] for s in symbols], dtype=float), ledoit_wolf(returns), bounds,
                          levels, settings.optimizer_target_return) if share < 1 else None
    hrp = hrp_weights(returns, symbols) if share > 0 or found is None else None
    mv_weights = found.weights if found else None
    fallback = Fallback(found.level, found.objective) if found else None
    if mv_weights is not None and hrp is not None:
        return blend(mv_weights, hrp, share), BLEND, fallback
    if mv_weights is not None:
        return mv_weights, MEAN_VARIANCE, fallback
    if hrp is not None:
        return hrp, HRP, None
    return {}, "", None


def _input_notes(inputs: OptimizerInput, usable: list[SecurityInput]) -> list[str]:
    notes = []
    if not inputs.outlook.known:
        notes.append("forward-looking terms (VIX, yield curve, market P/E) count 0: no source provides them")
    unscored = sum(s.total_score is None for s in usable)
    if unscored:
        notes.append(f"{unscored} of {len(usable)} securities have no score: neutral 0.5 (score factor 1)")
    no_yield = sum(s.dividend_yield is None for s in usable)
    if no_yield:
        notes.append(f"{no_yield} of {len(usable)} securities have no dividend yield (no fundamentals): "
                     "their total return is the CAGR alone")
    return notes


def _outcome_notes(method: str, fallback: Fallback | None, halfway: bool, groups_held: bool,
                   applied: list[SectorConstraint], weights: dict[str, float], bounds: Bounds,
                   investable: float) -> list[str]:
    notes = []
    if fallback and (fallback.level, fallback.objective) != ("full", "efficient_return"):
        notes.append(f"mean-variance fell back to {fallback.objective} with sector constraints {fallback.level}")
    if method == HRP:
        notes.append("mean-variance found no weights at any level: HRP alone")
    if halfway:
        notes.append(f"a target is more than {defaults.GRADUAL_THRESHOLD:.0%} away from the holding: "
                     f"targets move halfway this time")
    if applied and not groups_held:
        notes.append("the group ranges could not be met together with the bounds: only the bounds hold")
    unplaced = investable - sum(weights.values())
    if unplaced > 0.0005:
        notes.append(f"{unplaced:.1%} stays cash: the weight caps of the {len(bounds.upper)} eligible securities "
                     f"add up to {min(bounds.upper_total, 1.0):.1%}" if method == AT_CAPS else
                     f"{unplaced:.1%} stays cash: the weights above the cutoff are at their caps")
    return notes
