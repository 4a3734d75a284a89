"""The planner's scoring use cases: ScoreSecurities (compute what is stale, store it) and
GetScores (read what is stored). Inputs come through adapters/peers.py, one call per kind of
data: the universe, the latest prices, the fundamentals, the metrics of the securities that
need them, and the portfolio. The formulas are the pure `scoring` package; when a stored group
is recomputed is `scoring.refresh`.

"Now" is the caller's (replay: the simulated clock). The data service never answers with a bar
or an observation after it, and a stored score computed after it is neither shown nor reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime

from services.common.db import Database
from services.common.errors import NotFound
from services.planner import store
from services.planner.adapters.peers import FundamentalsView, MetricsView, Peers, ScoringSecurity
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


class ScoringEngine:
    def __init__(self, db: Database, peers: Peers):
        self._db = db
        self._peers = peers

    def score(self, symbols: list[str], now: datetime) -> list[StoredScore]:
        """Score `symbols` (every active equity when empty) as of `now`: stale groups are
        recomputed, fresh ones kept, diversification and the total always recomputed; every
        score is stored. Unknown or inactive symbols: NotFound, nothing stored."""
        universe = self._peers.scoring_universe()
        unknown = [s for s in symbols if s not in universe]
        if unknown:
            raise NotFound(f"not an active equity of the universe: {', '.join(unknown)}")
        symbols = symbols or sorted(universe)
        quotes = self._peers.quotes(symbols)
        facts = self._peers.fundamentals(symbols)
        with self._db.transaction() as session:
            stored = store.load_scores(session, symbols)
        current = {s: Inputs(quotes[s].day if s in quotes else None, quotes[s].price if s in quotes else None,
                             facts[s].key if s in facts else "") for s in symbols}
        stale = {s: stale_groups(_state(stored.get(s)), current[s], now) for s in symbols}
        metrics = self._peers.metrics([s for s in symbols if stale[s] & NEEDS_METRICS])
        context = self._peers.portfolio_context(universe)
        results = [self._rescore(universe[s], stored.get(s), current[s], stale[s], metrics.get(s),
                                 facts.get(s), context, now) for s in symbols]
        with self._db.transaction() as session:
            for result, inputs in zip(results, (current[s] for s in symbols), strict=True):
                store.save_score(session, _row(result, inputs))
        return results

    def scores(self, symbols: list[str], now: datetime) -> tuple[list[StoredScore], list[str]]:
        """The stored scores of `symbols` (all when empty) and the symbols without one visible
        at `now` (never scored, or scored only after `now`)."""
        with self._db.transaction() as session:
            rows = store.load_scores(session, symbols or None)
        visible = {s: _stored(row) for s, row in rows.items() if row.scored_at <= now}
        missing = [s for s in symbols if s not in visible]
        return [visible[s] for s in (symbols or sorted(visible)) if s in visible], missing

    def totals(self, symbols: list[str], now: datetime) -> dict[str, float | None]:
        """symbol -> total score (0..1) refreshed as of `now`, None when not scored: what the
        optimiser's score factor reads (planner.md section 3)."""
        if not symbols:
            return {}
        return {score.symbol: score.total for score in self.score(symbols, now)}

    def _rescore(self, security: ScoringSecurity, row: store.ScoreRow | None, inputs: Inputs, stale: frozenset[str],
                 seen: MetricsView | None, facts: FundamentalsView | None, context: PortfolioContext | None,
                 now: datetime) -> StoredScore:
        previous = _stored(row) if row is not None else None
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
            return previous
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


def _state(row: store.ScoreRow | None) -> StoredState | None:
    if row is None:
        return None
    groups = json.loads(row.groups)
    computed = {name: datetime.fromisoformat(g["computed_at"]) for name, g in groups.items() if g.get("computed_at")}
    return StoredState(Inputs(row.price_date, row.price, row.fundamentals_key), row.scored_at, row.version,
                       row.scored, computed)


def _stored(row: store.ScoreRow) -> StoredScore:
    groups = {name: StoredGroup(g["score"], g["components"],
                                datetime.fromisoformat(g["computed_at"]) if g.get("computed_at") else None)
              for name, g in json.loads(row.groups).items()}
    return StoredScore(row.symbol, row.scored, row.scored_at, row.reason, row.detail, row.total, row.quality, groups,
                       row.inputs_as_of, row.fundamentals_as_of)


def _row(score: StoredScore, inputs: Inputs) -> store.ScoreRow:
    groups = {name: {"score": g.score, "components": g.components,
                     "computed_at": g.computed_at.isoformat() if g.computed_at else None}
              for name, g in score.groups.items()}
    return store.ScoreRow(
        symbol=score.symbol, scored_at=score.scored_at, version=SCORING_VERSION, scored=score.scored,
        reason=score.reason, detail=score.detail, total=score.total, quality=score.quality,
        groups=json.dumps(groups, sort_keys=True), inputs_as_of=score.inputs_as_of,
        fundamentals_as_of=score.fundamentals_as_of, price_date=inputs.price_date, price=inputs.price,
        fundamentals_key=inputs.fundamentals_key)
