"""Country and industry sector constraints from the allocation targets (planner.md section 3
"Sector constraints"; the original's constraints manager). Pure.

A security belongs to the country group its country maps to and the industry group its industry
maps to ("OTHER" when unmapped). Only groups with a target above 0 are constrained. Targets of
each kind are normalised to sum to 1, then:
- country group: [t - 0.10, min(t + 0.10, 0.35)]; uppers scaled down to sum to 1 when above;
- industry group: [t - 0.15, min(t + 0.15, cap)], cap 0.70 / 0.50 / 0.40 / 0.30 for 1 / 2 /
  3-4 / 5+ constrained groups; industry minimums above 1 scaled to 1, else country + industry
  minimums above 0.70 both scaled to 0.60;
- security + sector minimums above 0.80: security minimums scaled first (when above 0.70), then
  the sector minimums, to 0.80 in all (fit_minimums).
The bounds of a group are shares of the weights placed (the optimiser's weights sum to 1; after
the cash reserve they are shares of what is invested).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from services.planner import defaults

OTHER = "OTHER"
COUNTRY, INDUSTRY = "country", "industry"


@dataclass(frozen=True)
class GroupTargets:
    """The portfolio's allocation targets: group -> target share for each kind, and which group
    a country or an industry belongs to. Empty: no sector constraints."""

    country: Mapping[str, float] = field(default_factory=dict)
    industry: Mapping[str, float] = field(default_factory=dict)
    country_groups: Mapping[str, str] = field(default_factory=dict)   # country -> group
    industry_groups: Mapping[str, str] = field(default_factory=dict)  # industry -> group

    @property
    def empty(self) -> bool:
        return not any(v > 0 for v in (*self.country.values(), *self.industry.values()))


@dataclass(frozen=True)
class SectorConstraint:
    kind: str                 # country or industry
    name: str                 # the group
    symbols: tuple[str, ...]  # sorted
    target: float             # normalised target share
    lower: float
    upper: float


def group_members(categories: Mapping[str, str], group_of: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """group -> its symbols (sorted), from symbol -> country (or industry)."""
    members: dict[str, list[str]] = {}
    for symbol, category in sorted(categories.items()):
        members.setdefault(group_of.get(category.strip(), OTHER), []).append(symbol)
    return {group: tuple(symbols) for group, symbols in members.items()}


def _normalised(targets: Mapping[str, float]) -> dict[str, float]:
    positive = {g: t for g, t in targets.items() if t > 0}
    total = sum(positive.values())
    return {g: t / total for g, t in positive.items()} if total > 0 else {}


def _industry_cap(groups: int) -> float:
    return next((cap for most, cap in defaults.INDUSTRY_CAPS if groups <= most), defaults.MAX_INDUSTRY_SHARE)


def sector_constraints(countries: Mapping[str, str], industries: Mapping[str, str],
                       targets: GroupTargets) -> tuple[list[SectorConstraint], list[str]]:
    """(constraints, notes) for the securities given as symbol -> country and symbol -> industry."""
    notes: list[str] = []
    country_targets = _normalised(targets.country)
    country = [SectorConstraint(COUNTRY, g, symbols, country_targets[g],
                                max(0.0, country_targets[g] - defaults.COUNTRY_TOLERANCE),
                                min(1.0, country_targets[g] + defaults.COUNTRY_TOLERANCE, defaults.MAX_COUNTRY_SHARE))
               for g, symbols in sorted(group_members(countries, targets.country_groups).items())
               if g in country_targets]
    upper_sum = sum(c.upper for c in country)
    if upper_sum > 1:
        country = [replace(c, upper=max(c.lower, c.upper / upper_sum)) for c in country]
    industry_targets = _normalised(targets.industry)
    members = {g: s for g, s in group_members(industries, targets.industry_groups).items() if g in industry_targets}
    cap = _industry_cap(len(members))
    industry = [SectorConstraint(INDUSTRY, g, symbols, industry_targets[g],
                                 max(0.0, industry_targets[g] - defaults.INDUSTRY_TOLERANCE),
                                 min(1.0, industry_targets[g] + defaults.INDUSTRY_TOLERANCE, cap))
                for g, symbols in sorted(members.items())]
    industry_minimums = sum(c.lower for c in industry)
    both_minimums = industry_minimums + sum(c.lower for c in country)
    if industry_minimums > 1:
        notes.append(f"industry group minimums add up to {industry_minimums:.1%}: scaled down to 100%")
        industry = _scaled_minimums(industry, 1 / industry_minimums)
    elif industry and both_minimums > defaults.SECTOR_MINIMUMS_LIMIT:
        notes.append(f"country and industry group minimums add up to {both_minimums:.1%}: "
                     f"scaled down to {defaults.SECTOR_MINIMUMS_SCALED:.0%}")
        scale = defaults.SECTOR_MINIMUMS_SCALED / both_minimums
        country, industry = _scaled_minimums(country, scale), _scaled_minimums(industry, scale)
    return country + industry, notes


def _scaled_minimums(constraints: list[SectorConstraint], scale: float) -> list[SectorConstraint]:
    return [replace(c, lower=min(c.lower * scale, c.upper)) for c in constraints]


def fit_minimums(security_lower: Mapping[str, float], constraints: list[SectorConstraint]
                 ) -> tuple[dict[str, float], list[SectorConstraint], list[str]]:
    """Security and sector minimums adding up to more than 0.80 leave the optimiser no room:
    security minimums above 0.70 are scaled first, then the sector minimums, to 0.80 in all."""
    lower = dict(security_lower)
    limit = defaults.ALL_MINIMUMS_LIMIT
    sectors = sum(c.lower for c in constraints)
    securities = sum(lower.values())
    if not constraints or securities + sectors <= limit:
        return lower, constraints, []
    notes = [f"security and group minimums add up to {securities + sectors:.1%}: scaled down to {limit:.0%}"]
    if securities > defaults.SECURITY_MINIMUMS_LIMIT:
        scale = (limit - sectors) / securities
        if 0 < scale < 1:
            lower = {s: w * scale for s, w in lower.items()}
            securities = sum(lower.values())
    if securities + sectors > limit and sectors > 0:
        target = max(0.0, limit - securities)
        if target < sectors:
            constraints = _scaled_minimums(constraints, target / sectors)
    return lower, constraints, notes


def relaxation_levels(constraints: list[SectorConstraint]) -> list[tuple[str, list[SectorConstraint]]]:
    """The original's levels: every constraint; the group minimums halved; none. Without
    constraints there is one level, `full`."""
    if not constraints:
        return [("full", [])]
    relaxed = _scaled_minimums(constraints, defaults.RELAXED_SECTOR_MINIMUMS)
    return [("full", constraints), ("relaxed_sectors", relaxed), ("no_sectors", [])]
