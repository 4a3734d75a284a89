"""A security's score: the eight groups, their fixed weights, the total and the quality
(planner.md section 1). Pure: plain data in, plain data out.

A security with fewer than 50 valid daily bars or 12 months of history is not scored (it gets
a `NotScored` with the reason), never a score of 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.planner.scoring import (
    diversification,
    dividends,
    fundamentals,
    long_term,
    opinion,
    opportunity,
    short_term,
    technicals,
)
from services.planner.scoring.curves import GroupScore, clamp, weighted
from services.planner.scoring.inputs import Fundamentals, Metrics, PortfolioContext

# Fixed group weights of the original (renormalised by their sum, which is 1).
GROUP_WEIGHTS = {
    "long_term": 0.20, "fundamentals": 0.15, "opportunity": 0.15, "dividends": 0.12,
    "short_term": 0.10, "technicals": 0.10, "opinion": 0.10, "diversification": 0.08,
}
MIN_DAILY_BARS = 50
MIN_MONTHLY_BARS = 12
INSUFFICIENT_HISTORY = "insufficient_history"


@dataclass(frozen=True)
class SecurityInput:
    symbol: str
    metrics: Metrics
    fundamentals: Fundamentals = field(default_factory=Fundamentals)
    country: str = ""
    industry: str = ""    # comma-separated when several


@dataclass(frozen=True)
class SecurityScore:
    """`groups` holds the eight group scores, `components` each group's parts. `quality` =
    (long_term + fundamentals)/2 is the planner's score; `total` the weighted sum of groups."""

    symbol: str
    total: float
    quality: float
    groups: dict[str, float]
    components: dict[str, dict[str, float]]


@dataclass(frozen=True)
class NotScored:
    symbol: str
    reason: str   # insufficient_history
    detail: str


def quality(long_term_score: float, fundamentals_score: float) -> float:
    return round((long_term_score + fundamentals_score) / 2, 3)


# The seven groups that depend on the security alone (diversification depends on the portfolio).
_STATIC_GROUPS = {
    "long_term": lambda metrics, facts: long_term.score(metrics),
    "fundamentals": fundamentals.score,
    "opportunity": opportunity.score,
    "dividends": lambda metrics, facts: dividends.score(facts),
    "short_term": lambda metrics, facts: short_term.score(metrics),
    "technicals": lambda metrics, facts: technicals.score(metrics),
    "opinion": lambda metrics, facts: opinion.score(facts, metrics.price),
}
STATIC_GROUPS = tuple(_STATIC_GROUPS)


def not_scored(symbol: str, metrics: Metrics) -> NotScored | None:
    """The reason a security with these metrics is not scored, or None."""
    if metrics.daily_bars >= MIN_DAILY_BARS and metrics.monthly_bars >= MIN_MONTHLY_BARS:
        return None
    return NotScored(symbol, INSUFFICIENT_HISTORY,
                     f"{metrics.daily_bars} valid daily bars over {metrics.monthly_bars} months; "
                     f"scoring needs {MIN_DAILY_BARS} daily bars and {MIN_MONTHLY_BARS} months")


def static_groups(metrics: Metrics, facts: Fundamentals, names=STATIC_GROUPS) -> dict[str, GroupScore]:
    """The named groups among STATIC_GROUPS (all of them by default)."""
    return {name: _STATIC_GROUPS[name](metrics, facts) for name in names}


def combine(symbol: str, groups: dict[str, GroupScore], country: str = "", industry: str = "",
            context: PortfolioContext | None = None) -> SecurityScore:
    """The score from the seven static groups: adds diversification (from `context`), the
    quality and the weighted total."""
    results = dict(groups)
    planner_quality = quality(results["long_term"].score, results["fundamentals"].score)
    results["diversification"] = diversification.score(
        symbol, country, industry, planner_quality, results["opportunity"].score, context)
    scores = {name: results[name].score for name in GROUP_WEIGHTS}
    return SecurityScore(
        symbol=symbol, total=round(clamp(weighted(scores, GROUP_WEIGHTS)), 3), quality=planner_quality,
        groups=scores, components={name: results[name].components for name in GROUP_WEIGHTS})


def score_security(security: SecurityInput, context: PortfolioContext | None = None) -> SecurityScore | NotScored:
    """Score one security; `context` (the portfolio) feeds the diversification group."""
    refused = not_scored(security.symbol, security.metrics)
    if refused is not None:
        return refused
    return combine(security.symbol, static_groups(security.metrics, security.fundamentals), security.country,
                   security.industry, context)
