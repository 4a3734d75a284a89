"""The planner's scoring use cases: ScoreSecurities (compute what is stale, store it), GetScores
(read what is stored), and `refresh`, which the planner's optimiser calls with the inputs it has
already read. Inputs come through adapters/peers.py, one call per kind of data: the securities,
the latest prices, the fundamentals, the metrics of the securities that need them, the
portfolio and its allocation targets. The formulas are the pure `scoring` package; when a
stored group is recomputed is `scoring.refresh`.

"Now" is the caller's (replay: the simulated clock). The data service never answers with a bar
or an observation after it, and a stored score computed after it is neither shown nor reused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from services.common.db import Database
from services.common.errors import NotFound
from services.planner import store
from services.planner.adapters.peers import FundamentalsView, MetricsView, Peers, PortfolioView
from services.planner.eligibility import Listing, Quote
from services.planner.optimizer.sectors import GroupTargets
from services.planner.scoring.curves import GroupScore
from services.planner.scoring.inputs import Fundamentals, Metrics, PortfolioContext
from services.planner.scoring.refresh import NEEDS_METRICS, SCORING_VERSION, Inputs, StoredState, stale_groups
from services.planner.scoring.security import STATIC_GROUPS, combine, not_scored, static_groups


@dataclass(frozen=True)
class StoredGroup:
    score: float
    components: dict[str, float]
    computed_at: datetime | None  # None: diversification, recomputed on every scoring


@dataclass(frozen=True)
class StoredScore:
    """A security's score as stored: `scored` False with the reason when it could not be."""

    symbol: str
    scored: bool
    scored_at: datetime
    reason: str = ""
    detail: str = ""
    total: float | None = None
    quality: float | None = None
    groups: dict[str, StoredGroup] = field(default_factory=dict)
    inputs_as_of: date | None = None
    fundamentals_as_of: date | None = None
    recomputed: list[str] = field(default_factory=list)  # the groups this call computed anew


@dataclass(frozen=True)
class ScoringReads:
    """What scoring reads from the other services besides metrics, each read once by the caller."""

    securities: Mapping[str, Listing]               # symbol -> active equity (country, industry)
    quotes: Mapping[str, Quote]                     # the latest valid close: a change recomputes
    fundamentals: Mapping[str, FundamentalsView]
    portfolio: PortfolioView | None                 # None: diversification neutral
    groups: GroupTargets                            # the allocation targets


MetricsReader = Callable[[Sequence[str]], Mapping[str, MetricsView]]
# A stored score as refresh reads it: the score (groups parsed) and what decides its staleness.
Previous = tuple[StoredScore, StoredState]
_SCORES = (store.ScoreRow.__tablename__,)


class ScoringEngine:
    def __init__(self, db: Database, peers: Peers):
        self._db = db
        self._peers = peers
        self._revisions = db.revisions
        # The scores this process last stored (symbol -> as a read would give them back), true
        # while the scores table stays at the revision their commit moved it to: refresh reads
        # back neither its own writes nor their JSON (services/common/revisions.py).
        self._kept: tuple[tuple[int, ...], dict[str, Previous]] = ((), {})

    def score(self, symbols: list[str], now: datetime) -> list[StoredScore]:
        """Score `symbols` (every active equity when empty) as of `now`: stale groups are
        recomputed, fresh ones kept, diversification and the total always recomputed; every
        score is stored. Unknown or inactive symbols: NotFound, nothing stored."""
        equities = {s.symbol: s for s in self._peers.listings() if s.tradable}
        unknown = [s for s in symbols if s not in equities]
        if unknown:
            raise NotFound(f"not an active equity of the universe: {', '.join(unknown)}")
        symbols = symbols or sorted(equities)
        reads = ScoringReads(equities, self._peers.quotes(symbols), self._peers.fundamentals(symbols),
                             self._peers.portfolio_or_none(), self._peers.allocation_targets().groups)
        return self.refresh(symbols, reads, self._peers.metrics, now)

    def refresh(self, symbols: Sequence[str], reads: ScoringReads, metrics: MetricsReader,
                now: datetime) -> list[StoredScore]:
        """Score `symbols` (each in `reads.securities`) from inputs already read, as `score`
        does, and store the scores. `metrics` is asked once, for the securities with a stale
        group that needs them."""
        revision, stored = self._previous(symbols)
        quotes, facts = reads.quotes, reads.fundamentals
        current = {s: Inputs(quotes[s].day if s in quotes else None, quotes[s].price if s in quotes else None,
                             facts[s].key if s in facts else "") for s in symbols}
        stale = {s: stale_groups(stored[s][1] if s in stored else None, current[s], now) for s in symbols}
        seen = metrics([s for s in symbols if stale[s] & NEEDS_METRICS])
        context = portfolio_context(reads.portfolio, reads.securities, reads.groups)
        results = [self._rescore(reads.securities[s], stored[s][0] if s in stored else None, current[s], stale[s],
                                 seen.get(s), facts.get(s), context, now) for s in symbols]
        inputs = [current[s] for s in symbols]
        with self._db.transaction() as session:
            store.save_scores(session, [_row(result, given) for result, given in zip(results, inputs, strict=True)])
        self._keep(revision, results, inputs)
        return results

    def _previous(self, symbols: Sequence[str]) -> tuple[tuple[int, ...], dict[str, Previous]]:
        """(the scores table's revision, symbol -> its stored score) for `symbols`: those this
        process stored while the table has not changed since, the others read."""
        revision = self._revisions.of(_SCORES)
        kept_at, kept = self._kept
        known = {s: kept[s] for s in symbols if s in kept} if kept_at == revision else {}
        missing = [s for s in symbols if s not in known]
        if missing:
            with self._db.transaction() as session:
                rows = store.load_scores(session, missing)
            for symbol, row in rows.items():
                score = _stored(row)
                known[symbol] = (score, _state(row, score))
        return revision, known

    def _keep(self, revision: tuple[int, ...], results: list[StoredScore], inputs: list[Inputs]) -> None:
        """Keep the scores just stored as a read would give them back, when that store was the
        only change to the scores table since `revision` (read before the previous scores)."""
        after = self._revisions.of(_SCORES)
        if not results or after != (revision[0], revision[1] + 1):
            return
        kept_at, kept = self._kept
        written = {result.symbol: _as_read(result, given) for result, given in zip(results, inputs, strict=True)}
        self._kept = (after, {**(kept if kept_at == revision else {}), **written})

    def scores(self, symbols: list[str], now: datetime) -> tuple[list[StoredScore], list[str]]:
        """The stored scores of `symbols` (all when empty) and the symbols without one visible
        at `now` (never scored, or scored only after `now`)."""
        with self._db.transaction() as session:
            rows = store.load_scores(session, symbols or None)
        visible = {s: _stored(row) for s, row in rows.items() if row.scored_at <= now}
        missing = [s for s in symbols if s not in visible]
        return [visible[s] for s in (symbols or sorted(visible)) if s in visible], missing

    def _rescore(self, security: Listing, previous: StoredScore | None, inputs: Inputs, stale: frozenset[str],
                 seen: MetricsView | None, facts: FundamentalsView | None, context: PortfolioContext | None,
                 now: datetime) -> StoredScore:
        fundamentals = facts.fundamentals if facts is not None else Fundamentals()
        facts_as_of = facts.as_of if facts is not None else None
        if seen is not None:
            refused = not_scored(security.symbol, seen.metrics)
            if refused is not None:
                return StoredScore(security.symbol, False, now, refused.reason, refused.detail,
                                   inputs_as_of=seen.as_of, fundamentals_as_of=facts_as_of,
                                   recomputed=list(STATIC_GROUPS))
        elif previous is None:  # the data service answered without this security's metrics
            return StoredScore(security.symbol, False, now, "metrics_unavailable",
                               f"the data service returned no metrics for {security.symbol}")
        elif not previous.scored:  # nothing changed: the verdict stands
            return replace(previous, recomputed=[])
        kept = ({name: group for name, group in previous.groups.items() if name in STATIC_GROUPS and name not in stale}
                if previous is not None and previous.scored else {})
        fresh = static_groups(seen.metrics if seen is not None else Metrics(), fundamentals,
                              [name for name in STATIC_GROUPS if name not in kept])
        groups = {**{n: GroupScore(g.score, g.components) for n, g in kept.items()}, **fresh}
        result = combine(security.symbol, groups, security.country, security.industry, context)
        computed = {n: kept[n].computed_at if n in kept else now for n in STATIC_GROUPS}
        return StoredScore(
            security.symbol, True, now, total=result.total, quality=result.quality,
            groups={n: StoredGroup(result.groups[n], result.components[n], computed.get(n)) for n in result.groups},
            inputs_as_of=seen.as_of if seen is not None else previous.inputs_as_of,
            fundamentals_as_of=facts_as_of, recomputed=sorted(fresh))


def portfolio_context(portfolio: PortfolioView | None, securities: Mapping[str, Listing],
                      groups: GroupTargets) -> PortfolioContext | None:
    """The portfolio the securities are scored in (diversification); None without a portfolio
    (every diversification part 0.5). Without allocation targets every group is untargeted
    (country and industry parts 0.5)."""
    if portfolio is None:
        return None
    return PortfolioContext(
        total_value_base=portfolio.total_value_base, holdings=portfolio.holdings,
        country_of={s: listing.country for s, listing in securities.items()},
        industry_of={s: listing.industry for s, listing in securities.items()},
        country_to_group=groups.country_groups, industry_to_group=groups.industry_groups,
        country_targets=groups.country, industry_targets=groups.industry)


def _state(row: store.ScoreRow, score: StoredScore) -> StoredState:
    """What decides which of a stored score's groups are stale (`score`: the row's groups)."""
    computed = {name: g.computed_at for name, g in score.groups.items() if g.computed_at is not None}
    return StoredState(Inputs(row.price_date, row.price, row.fundamentals_key), row.scored_at, row.version,
                       row.scored, computed)


def _as_read(score: StoredScore, inputs: Inputs) -> Previous:
    """`score` and its staleness state as store.load_scores, _stored and _state give them back
    once saved by _row (`recomputed` aside, which _rescore never passes on from a stored score;
    the order of the groups and components, which nothing reads: the JSON sorts them, the
    protos are maps, combine reads the groups by name)."""
    computed = {name: g.computed_at for name, g in score.groups.items() if g.computed_at is not None}
    return score, StoredState(inputs, score.scored_at, SCORING_VERSION, score.scored, computed)


def _stored(row: store.ScoreRow) -> StoredScore:
    groups = {name: StoredGroup(g["score"], g["components"],
                                datetime.fromisoformat(g["computed_at"]) if g.get("computed_at") else None)
              for name, g in json.loads(row.groups).items()}
    return StoredScore(row.symbol, row.scored, row.scored_at, row.reason, row.detail, row.total, row.quality, groups,
                       row.inputs_as_of, row.fundamentals_as_of)


# json.dumps(groups, sort_keys=True) with the encoder built once: the same text (groups are plain
# dicts, floats and strings: no cycle to check for).
_GROUPS_JSON = json.JSONEncoder(sort_keys=True, check_circular=False).encode


def _row(score: StoredScore, inputs: Inputs) -> dict:
    """The score's store.ScoreRow columns (store.save_scores)."""
    iso: dict[datetime, str] = {}  # the groups share a few computation times
    groups = {name: {"score": g.score, "components": g.components,
                     "computed_at": (iso.get(g.computed_at) or iso.setdefault(g.computed_at, g.computed_at.isoformat()))
                     if g.computed_at else None}
              for name, g in score.groups.items()}
    return dict(
        symbol=score.symbol, scored_at=score.scored_at, version=SCORING_VERSION, scored=score.scored,
        reason=score.reason, detail=score.detail, total=score.total, quality=score.quality,
        groups=_GROUPS_JSON(groups), inputs_as_of=score.inputs_as_of,
        fundamentals_as_of=score.fundamentals_as_of, price_date=inputs.price_date, price=inputs.price,
        fundamentals_key=inputs.fundamentals_key)
