"""Allocation targets (issue 13 item 4): the group mappings, the target shares and the
allocations hash, with every security's groups from the data service's universe (one
ListSecurities). The rules are in allocations.py."""

from __future__ import annotations

from dataclasses import dataclass

from services.portfolio import allocations, store
from services.portfolio.adapters.peers import Peers, Security, in_background
from services.portfolio.hashing import allocations_hash
from services.portfolio.kept import KeptState


@dataclass(frozen=True)
class Group:
    name: str
    members: tuple[str, ...]
    target: float | None


@dataclass(frozen=True)
class SecurityGroups:
    symbol: str
    country: str
    country_group: str
    industry: str
    industry_group: str


@dataclass(frozen=True)
class AllocationState:
    country_groups: list[Group]
    industry_groups: list[Group]
    securities: list[SecurityGroups]
    allocations_hash: str
    default_country_groups: bool
    default_industry_groups: bool


def _facts(securities: list[Security]) -> list[allocations.SecurityFacts]:
    return [allocations.SecurityFacts(s.symbol, s.country, s.industry, s.sector) for s in securities]


_TABLES = (store.AllocationGroupRow.__tablename__, store.AllocationMemberRow.__tablename__,
           store.AllocationTargetRow.__tablename__)
_Stored = tuple[dict[str, allocations.GroupMapping], dict[str, dict[str, float]]]


class AllocationBook:
    def __init__(self, db, peers: Peers):
        self._db = db
        self._peers = peers
        # the mappings and targets, kept until written; the state last answered, with its inputs
        self._stored: KeptState[_Stored] = KeptState(db.revisions, _TABLES)
        self._last: tuple[_Stored, list[Security], AllocationState] | None = None

    def _mappings(self, session) -> dict[str, allocations.GroupMapping]:
        stored = store.allocation_groups(session)
        return {kind: allocations.GroupMapping(stored[kind], True) if stored.get(kind)
                else allocations.default_mapping(kind) for kind in allocations.KINDS}

    def state(self) -> AllocationState:
        """The mappings, targets and every security's groups; the universe asked each time (the
        answer is computed again only when it or the stored mappings and targets changed)."""
        securities = in_background(self._peers.securities)  # asked while the store is read
        stored = self._stored.current()  # kept and unchanged: no transaction
        if stored is None:
            with self._db.transaction() as session:
                stored = self._stored.read(session, lambda s: (self._mappings(s), store.allocation_targets(s)))
        universe = securities.result()
        last = self._last
        if last is not None and last[0] is stored and last[1] == universe:
            return last[2]
        state = self._combined(*stored, universe)
        self._last = (stored, universe, state)
        return state

    def _state(self, session, securities: list[Security]) -> AllocationState:
        return self._combined(self._mappings(session), store.allocation_targets(session), securities)

    def _combined(self, mappings: dict[str, allocations.GroupMapping], stored_targets: dict[str, dict[str, float]],
                  securities: list[Security]) -> AllocationState:
        targets = {kind: stored_targets.get(kind, {}) for kind in allocations.KINDS}
        facts = _facts(securities)
        groups = {}
        for kind in allocations.KINDS:
            names = allocations.known_groups(kind, mappings[kind], facts) | set(targets[kind])
            groups[kind] = [Group(n, mappings[kind].groups.get(n, ()), targets[kind].get(n)) for n in sorted(names)]
        rows = [SecurityGroups(s.symbol, s.country, allocations.country_group(s.country, mappings["country"]),
                               s.industry, allocations.industry_group(s.industry, s.sector, mappings["industry"]))
                for s in sorted(securities, key=lambda s: s.symbol)]
        return AllocationState(groups["country"], groups["industry"], rows,
                               allocations_hash(allocations.hash_inputs(targets["country"], targets["industry"])),
                               not mappings["country"].custom, not mappings["industry"].custom)

    def set_targets(self, country: list[tuple[str, float]], industry: list[tuple[str, float]]) -> AllocationState:
        """Replace every target; nothing changes when one is refused."""
        securities = self._peers.securities()
        facts = _facts(securities)
        with self._db.transaction() as session:
            mappings = self._mappings(session)
            new = {"country": allocations.validate_targets(
                       "country_targets", country, allocations.known_groups("country", mappings["country"], facts)),
                   "industry": allocations.validate_targets(
                       "industry_targets", industry, allocations.known_groups("industry", mappings["industry"], facts))}
            store.replace_allocation_targets(session, new)
            session.flush()
            return self._state(session, securities)

    def set_groups(self, kind: str, groups: list[tuple[str, list[str]]]) -> AllocationState:
        """Replace one kind's mapping (empty: back to the defaults); refused while a target names
        a group the new mapping would not have."""
        securities = self._peers.securities()
        mapping_groups = allocations.validate_groups("groups", groups)
        with self._db.transaction() as session:
            mapping = (allocations.GroupMapping(mapping_groups, True) if mapping_groups
                       else allocations.default_mapping(kind))
            allocations.check_groups_keep_targets(kind, store.allocation_targets(session).get(kind, {}),
                                                  allocations.known_groups(kind, mapping, _facts(securities)))
            store.replace_allocation_groups(session, kind, mapping_groups)
            session.flush()
            return self._state(session, securities)
