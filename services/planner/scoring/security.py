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
from services.planner.scoring.curves import clamp, weighted
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


def score_security(security: SecurityInput, context: PortfolioContext | None = None) -> SecurityScore | NotScored:
    """Score one security; `context` (the portfolio) feeds the diversification group."""
    metrics = security.metrics
    if metrics.daily_bars < MIN_DAILY_BARS or metrics.monthly_bars < MIN_MONTHLY_BARS:
        return NotScored(security.symbol, INSUFFICIENT_HISTORY,
                         f"{metrics.daily_bars} valid daily bars over {metrics.monthly_bars} months; "
                         f"scoring needs {MIN_DAILY_BARS} daily bars and {MIN_MONTHLY_BARS} months")
    facts = security.fundamentals
    results = {
        "long_term": long_term.score(metrics),
        "fundamentals": fundamentals.score(metrics, facts),
        "opportunity": opportunity.score(metrics, facts),
        "dividends": dividends.score(facts),
        "short_term": short_term.score(metrics),
        "technicals": technicals.score(metrics),
        "opinion": opinion.score(facts, metrics.price),
    }
    planner_quality = quality(results["long_term"].score, results["fundamentals"].score)
    results["diversification"] = diversification.score(
        security.symbol, security.country, security.industry, planner_quality, results["opportunity"].score, context)
    groups = {name: result.score for name, result in results.items()}
    return SecurityScore(
        symbol=security.symbol, total=round(clamp(weighted(groups, GROUP_WEIGHTS)), 3), quality=planner_quality,
        groups=groups, components={name: result.components for name, result in results.items()})
