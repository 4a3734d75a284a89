"""Allocation targets: country groups and industry groups with target shares (planner.md
sections 1, 3 and 6; issue 13 item 4). Pure functions on plain data.

A security belongs to the country group listing its country and to the industry group listing
its industry. Without a mapping of the owner's, the defaults apply: countries by region (EU,
US, ASIA; see DEFAULT_COUNTRY_GROUPS) and industries by their security's sector. Whatever no
group lists is OTHER. The owner's mapping of a kind replaces that kind's defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, InvalidArgument

COUNTRY, INDUSTRY = "country", "industry"
KINDS = (COUNTRY, INDUSTRY)
OTHER = "OTHER"
MAX_NAME = 100
SUM_TOLERANCE = 1e-9
# Europe (the EU, the EEA, the United Kingdom and Switzerland), the United States, Asia.
DEFAULT_COUNTRY_GROUPS: dict[str, tuple[str, ...]] = {
    "EU": ("Austria", "Belgium", "Bulgaria", "Croatia", "Cyprus", "Czech Republic", "Czechia", "Denmark", "Estonia",
           "Finland", "France", "Germany", "Greece", "Hungary", "Iceland", "Ireland", "Italy", "Latvia",
           "Liechtenstein", "Lithuania", "Luxembourg", "Malta", "Netherlands", "Norway", "Poland", "Portugal",
           "Romania", "Slovakia", "Slovenia", "Spain", "Sweden", "Switzerland", "United Kingdom"),
    "US": ("United States",),
    "ASIA": ("China", "Hong Kong", "India", "Indonesia", "Japan", "Malaysia", "Philippines", "Singapore",
             "South Korea", "Taiwan", "Thailand", "Vietnam"),
}


@dataclass(frozen=True)
class SecurityFacts:
    symbol: str
    country: str
    industry: str
    sector: str


@dataclass(frozen=True)
class GroupMapping:
    """One kind's mapping: group -> members; `custom` when it is the owner's."""

    groups: dict[str, tuple[str, ...]]
    custom: bool

    def group_of(self, member: str) -> str | None:
        return next((g for g, members in self.groups.items() if member in members), None)


def default_mapping(kind: str) -> GroupMapping:
    return GroupMapping(dict(DEFAULT_COUNTRY_GROUPS) if kind == COUNTRY else {}, False)


def country_group(country: str, mapping: GroupMapping) -> str:
    return mapping.group_of(country) or OTHER


def industry_group(industry: str, sector: str, mapping: GroupMapping) -> str:
    """The owner's group of the industry; by default, the security's sector."""
    if mapping.custom:
        return mapping.group_of(industry) or OTHER
    return sector or OTHER


def known_groups(kind: str, mapping: GroupMapping, universe: Iterable[SecurityFacts]) -> set[str]:
    names = set(mapping.groups) | {OTHER}
    if kind == INDUSTRY and not mapping.custom:
        names |= {s.sector for s in universe if s.sector}
    return names


def validate_groups(kind_field: str, groups: Iterable[tuple[str, Iterable[str]]]) -> dict[str, tuple[str, ...]]:
    """(name, members) pairs -> the mapping; each name once, each member in one group only."""
    result: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for i, (name, members) in enumerate(groups):
        name = _name(f"{kind_field}[{i}].name", name)
        if name in result:
            raise InvalidArgument(f"{kind_field}[{i}].name", f"group {name!r} is listed twice")
        cleaned = []
        for j, member in enumerate(members):
            member = _name(f"{kind_field}[{i}].members[{j}]", member)
            if member in owner:
                raise InvalidArgument(f"{kind_field}[{i}].members[{j}]",
                                      f"{member!r} already belongs to group {owner[member]!r}")
            owner[member] = name
            cleaned.append(member)
        result[name] = tuple(cleaned)
    return result


def validate_targets(kind_field: str, targets: Iterable[tuple[str, float]], known: set[str]) -> dict[str, float]:
    """(group, share) pairs -> group -> share: known group names, shares in 0..1, each group
    once, shares adding up to at most 1."""
    result: dict[str, float] = {}
    for i, (group, share) in enumerate(targets):
        group = _name(f"{kind_field}[{i}].group", group)
        if group not in known:
            raise InvalidArgument(f"{kind_field}[{i}].group", f"unknown group {group!r}; known: "
                                                              f"{', '.join(sorted(known))}")
        if group in result:
            raise InvalidArgument(f"{kind_field}[{i}].group", f"group {group!r} is listed twice")
        if not 0 <= share <= 1:  # also refuses NaN
            raise InvalidArgument(f"{kind_field}[{i}].share", f"must be between 0 and 1, got {share!r}")
        result[group] = share
    total = sum(result.values())
    if total > 1 + SUM_TOLERANCE:
        raise InvalidArgument(kind_field, f"shares add up to {total:g}, more than 1")
    return result


def check_groups_keep_targets(kind: str, targets: Mapping[str, float], new_known: set[str]) -> None:
    orphaned = sorted(set(targets) - new_known)
    if orphaned:
        raise FailedPrecondition("target_group_in_use", f"{kind} group(s) {', '.join(orphaned)} have targets: "
                                                        "set targets without them first")


def hash_inputs(country_targets: Mapping[str, float], industry_targets: Mapping[str, float]) -> dict[str, float]:
    """The allocations hash's keys: `country_group:X` and `industry_group:X` (planner.md section 6)."""
    keys = {f"country_group:{g}": v for g, v in country_targets.items()}
    keys.update({f"industry_group:{g}": v for g, v in industry_targets.items()})
    return keys


def _name(field: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > MAX_NAME:
        raise InvalidArgument(field, f"longer than {MAX_NAME} characters")
    return value
