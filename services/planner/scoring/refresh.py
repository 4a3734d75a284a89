"""When a stored score is recomputed (planner.md section 1, caching and TTL). Pure.

Each group of a stored score keeps the time it was computed. A group is recomputed when its
time-to-live (the original's TTLs) has passed, when the inputs it depends on changed (a new or
corrected latest price for the price-based groups, a changed fundamentals observation for the
fundamentals-based ones), when the scoring rules changed (SCORING_VERSION), or when the stored
score was computed after "now" (a replay going back in time never sees a later score).
Diversification depends on the portfolio and is never cached: it is recomputed every time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from services.planner.scoring.security import STATIC_GROUPS

SCORING_VERSION = 1  # raise when a formula changes: every stored score is then recomputed

TECHNICAL_TTL = timedelta(hours=24)
LONG_TERM_TTL = timedelta(days=7)
FUNDAMENTALS_TTL = timedelta(days=30)
# A group lives as long as its shortest-lived input (24 h: technicals, momentum, drawdowns, 52-week
# values, analyst data; 7 days: Sharpe, Sortino, CAGR, consistency; 30 days: fundamentals, dividends).
GROUP_TTL = {
    "technicals": TECHNICAL_TTL, "short_term": TECHNICAL_TTL, "opportunity": TECHNICAL_TTL,
    "opinion": TECHNICAL_TTL, "long_term": LONG_TERM_TTL, "fundamentals": LONG_TERM_TTL,
    "dividends": FUNDAMENTALS_TTL,
}
NOT_SCORED_TTL = TECHNICAL_TTL  # a "not scored" verdict is looked at again daily
PRICE_BASED = frozenset({"long_term", "fundamentals", "opportunity", "short_term", "technicals", "opinion"})
FUNDAMENTALS_BASED = frozenset({"fundamentals", "opportunity", "dividends", "opinion"})
NEEDS_METRICS = frozenset(STATIC_GROUPS) - {"dividends"}  # dividends come from fundamentals alone


@dataclass(frozen=True)
class Inputs:
    """What a score was computed from, enough to tell that it changed: the latest valid close
    (its date and price) and a key of the fundamentals observations ("" when none)."""

    price_date: date | None
    price: float | None
    fundamentals_key: str


@dataclass(frozen=True)
class StoredState:
    """What refresh needs of a stored score."""

    inputs: Inputs
    scored_at: datetime
    version: int
    scored: bool
    computed_at: Mapping[str, datetime] = field(default_factory=dict)  # group -> when (scored only)


def stale_groups(stored: StoredState | None, current: Inputs, now: datetime) -> frozenset[str]:
    """The static groups to recompute now. All of them for a security never scored, scored
    with other rules or after `now`; for a "not scored" verdict, all or none."""
    everything = frozenset(STATIC_GROUPS)
    if stored is None or stored.version != SCORING_VERSION or stored.scored_at > now:
        return everything
    price_changed = (stored.inputs.price_date, stored.inputs.price) != (current.price_date, current.price)
    facts_changed = stored.inputs.fundamentals_key != current.fundamentals_key
    if not stored.scored:
        return everything if price_changed or facts_changed or now - stored.scored_at >= NOT_SCORED_TTL else frozenset()
    stale = set(PRICE_BASED if price_changed else ()) | set(FUNDAMENTALS_BASED if facts_changed else ())
    for group in STATIC_GROUPS:
        computed = stored.computed_at.get(group)
        if computed is None or computed > now or now - computed >= GROUP_TTL[group]:
            stale.add(group)
    return frozenset(stale)
