"""The planner's use cases: the optimiser's targets (Optimize), the plan for the current state
(GetRecommendations, CreatePlan), its incremental evaluation (RunPlannerBatch,
GetPlannerStatus) and dismissing a step (DismissRecommendation).

Each use case reads what it needs from the other services through adapters/peers.py, once per
kind of data (never once per security), and hands it to the pure modules: eligibility (what
trading would buy), inputs and optimizer (target weights), holistic (opportunities, sequences,
filters: the candidates of the plan), evaluation and batch (their scores, in batches),
recommendations (steps stored per state), settings (the settings and the state hashes). The
configuration in force is the core bucket's (config_engine.py).

A plan is the best sequence of a complete batch: the batch of the state and day is generated
once and stored; each call evaluates what is left (a cycle within the configuration's time
budget, RunPlannerBatch a given number), and only a complete batch gives steps, so a cycle
never acts on a half-evaluated state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from services.common.db import Database
from services.common.errors import FailedPrecondition, NotFound
from services.common.logs import event
from services.planner import batch, defaults, evaluation, holistic, store
from services.planner.adapters.peers import (
    AllocationTargets,
    Fill,
    FundamentalsView,
    MetricsView,
    Peers,
    PortfolioView,
    Regime,
)
from services.planner.config import PlannerConfig
from services.planner.config_engine import ConfigEngine
from services.planner.eligibility import (
    Exclusion,
    Listing,
    Quote,
    TradingRules,
    last_buys_within,
    screen,
    strict_exchanges,
)
from services.planner.evaluation import EvaluationBook
from services.planner.inputs import (
    PlanningReads,
    cagrs,
    correlations,
    current_weights,
    dividend_yields,
    group_gaps,
    held_elsewhere,
    outlooks,
    planning_book,
    security_inputs,
)
from services.planner.opportunities.book import Action, Book, PositionView
from services.planner.opportunities.eligibility import holding_rules
from services.planner.optimizer import OptimizerInput, OptimizerResult, optimize
from services.planner.optimizer.bounds import Bounds
from services.planner.optimizer.pipeline import Fallback
from services.planner.optimizer.reserve import regime_reserve
from services.planner.optimizer.risk import NO_CLOSES, Closes
from services.planner.plan import Candidate, Cash, Step, plan_id
from services.planner.recommendations import DISMISSED, EXECUTED, PENDING, Recommendation, recommendation_id
from services.planner.scoring_engine import ScoringEngine, ScoringReads, StoredScore
from services.planner.sequences import FULL, GenerationInputs
from services.planner.settings import PlannerSettings, settings_hash, state_key
from services.portfolio.hashing import UniverseEntry, portfolio_hash
from services.portfolio.valuation import Holding as PortfolioHolding
from services.trading.orders import plan_client_order_id  # the id trading gives a plan's step-1 order

log = logging.getLogger("trader.planner.engine")
_RECOMMENDATIONS = (store.RecommendationRow.__tablename__,)
_TARGETS = (store.TargetsRow.__tablename__,)

# Fills read before the longest holding rule's window: those of every step planned in that time.
FILLS_MARGIN_DAYS = 30
# Calendar days that hold LOOKBACK_BARS trading days, with room for holidays.
_LOOKBACK_DAYS = int(defaults.LOOKBACK_BARS * 1.5) + 10
EVALUATION_ROWS = 2_000   # sequences read and evaluated at a time in incremental mode
REPLY_MARGIN_S = 1.0      # of the caller's deadline, left for storing the plan and replying
BEAM_ROWS = 50            # ... in full mode (the beam search goes through them 5 at a time)


@dataclass(frozen=True)
class Context:
    """What every use case reads first: the state and the rules it is planned under."""

    portfolio: PortfolioView
    settings: PlannerSettings
    settings_hash: str
    allocations: AllocationTargets
    rules: TradingRules
    listings: list[Listing]
    markets: dict[str, bool | None]  # exchange -> open now (None: unknown)
    regime: Regime
    config: PlannerConfig
    config_name: str = "core"
    fills: list[Fill] = field(default_factory=list)  # trading's, since _fills_since (newest first)

    @property
    def state_key(self) -> str:
        return state_key(self.portfolio.portfolio_hash, self.settings_hash, self.allocations.allocations_hash)

    @property
    def reserve_base(self) -> float:
        return regime_reserve(self.portfolio.total_value_base, self.regime.name, self.settings.min_cash_reserve)


@dataclass(frozen=True)
class Targets:
    """The optimiser run on the current state, with the securities it could buy and what was
    read for it."""

    context: Context
    cash: Cash
    candidates: dict[str, Candidate]
    excluded: list[Exclusion]
    result: OptimizerResult
    current: dict[str, float]  # symbol -> weight held now
    notes: list[str]
    scores: dict[str, StoredScore] = field(default_factory=dict)
    metrics: dict[str, MetricsView] = field(default_factory=dict)
    facts: dict[str, FundamentalsView] = field(default_factory=dict)
    closes: dict[str, Closes] = field(default_factory=dict)
    unsaved: tuple[str, str, dict] | None = None  # (state key, targets key, payload) to keep for reuse


@dataclass(frozen=True)
class Plan:
    plan_id: str
    portfolio_hash: str
    as_of_date: str
    steps: list[Step]
    target_weights: dict[str, float]
    method: str
    excluded: list[Exclusion] = field(default_factory=list)
    unallocated_weight: float = 0.0
    notes: list[str] = field(default_factory=list)
    cached: bool = False
    settings_hash: str = ""
    allocations_hash: str = ""
    state_key: str = ""
    regime: str = ""
    reserve_base: float = 0.0
    fallback: dict[str, str] | None = None  # level, objective
    expected_return: float = 0.0
    dismissed: list[Recommendation] = field(default_factory=list)
    current_score: float = 0.0          # 0..100, the end-state score of doing nothing
    end_state_score: float = 0.0        # 0..100, of the plan's end state
    cash_required_base: float = 0.0
    cash_generated_base: float = 0.0
    feasible: bool = True
    narrative: str = ""
    complete: bool = True               # False: its batch is not fully evaluated yet (no steps)
    sequences_generated: int = 0
    sequences_evaluated: int = 0
    config_name: str = ""
    evaluation_mode: str = ""

    @property
    def improvement(self) -> float:
        return self.end_state_score - self.current_score


@dataclass(frozen=True)
class BatchStatus:
    """A stored batch's progress (GetPlannerStatus, RunPlannerBatch)."""

    batch_key: str = ""
    state_key: str = ""
    as_of_date: str = ""
    mode: str = ""
    generated: int = 0
    evaluated: int = 0
    skipped: int = 0
    complete: bool = False
    current_score: float = 0.0            # 0..100
    best_score: float | None = None       # 0..100; None before any evaluation
    best_steps: list[Step] = field(default_factory=list)
    evaluated_now: int = 0                # by this call
    updated_at: datetime | None = None


class PlannerEngine:
    def __init__(self, db: Database, peers: Peers, scoring: ScoringEngine, configs: ConfigEngine,
                 monotonic: Callable[[], float] = time.monotonic, complete_batches: bool = False):
        """`complete_batches` (replay and backtest mode): a request evaluates the state's batch to
        its end, whatever the time budget and the caller's deadline, so a plan never depends on
        the machine's speed or load (a backtest's report is a function of its inputs alone)."""
        self._db = db
        self._peers = peers
        self._scoring = scoring
        self._configs = configs
        self._monotonic = monotonic  # measures the cycle's evaluation budget, nothing else
        self._complete_batches = complete_batches
        self._settings: tuple[PlannerConfig | None, PlannerSettings | None, str] = (None, None, "")
        # The client order ids of fills known to match no pending recommendation (marked executed
        # already, or never a step's), true while the recommendations table stays at the revision
        # kept with them (services/common/revisions.py): mark_executed asks only about the others.
        self._settled: tuple[tuple[int, ...], frozenset[str]] = ((), frozenset())
        # The stored optimiser targets, state key -> (cache key, computed_at), true while the
        # targets table stays at the revision kept with them, and the payload (as stored) of the
        # last ones this process stored: _reused_targets reads only a payload it does not have.
        self._targets_index: tuple[tuple[int, ...], dict[str, tuple[str, datetime]]] = ((), {})
        self._last_targets: tuple[tuple[int, ...], str, tuple[str, datetime], str] | None = None

    # --- where inputs come from ---

    def _scores(self, symbols: list[str], context: Context, quotes: Mapping[str, Quote],
                facts: Mapping[str, FundamentalsView], metrics: Mapping[str, MetricsView],
                now: datetime) -> dict[str, StoredScore]:
        """symbol -> its score, refreshed as of `now` from the inputs already read (a group is
        recomputed when its TTL passed or its price or fundamentals changed, as ScoreSecurities
        does) and stored. The optimiser's score factor reads `total`, the holistic planner
        `quality`; this is the one place both come from."""
        equities = {s.symbol: s for s in context.listings if s.tradable}
        tradable = [s for s in symbols if s in equities]
        reads = ScoringReads(equities, quotes, facts, context.portfolio, context.allocations.groups)
        refreshed = self._scoring.refresh(tradable, reads, lambda _: metrics, now)
        return {score.symbol: score for score in refreshed}

    def _context(self, now: datetime, config: PlannerConfig | None = None, config_name: str = "",
                 given: PortfolioView | None = None) -> Context:
        """`given`: the portfolio the caller read (GetRecommendationsRequest.portfolio), used
        when its hash is that of its quantities and cash over the universe read now; otherwise
        (or None) the portfolio is read here."""
        if config is None:
            stored = self._configs.core()
            config, config_name = stored.config, stored.name
        settings, hashed = self._settings_of(config)
        peers = self._peers
        # One call at a time per service, the services at the same time (Peers.together).
        (listings, regime), (portfolio, allocations), rules = peers.together(
            lambda: (peers.listings(), peers.market_regime()),
            lambda: (given or peers.portfolio(), peers.allocation_targets()),
            peers.trading_rules)
        if given is not None and not holds_its_hash(given, listings):
            event(log, "the portfolio handed in does not match its hash (stale): read anew", logging.WARNING,
                  portfolio_hash=given.portfolio_hash)
            portfolio = peers.portfolio()
        fills, markets = peers.together(
            lambda: peers.fills(_fills_since(rules, config, now)),
            lambda: {exchange: peers.market_open(exchange, now)
                     for exchange in strict_exchanges(listings, portfolio.holdings)})
        return Context(
            portfolio=portfolio, settings=settings, settings_hash=hashed,
            allocations=allocations, rules=rules, listings=listings, markets=markets,
            regime=regime, config=config, config_name=config_name, fills=fills)

    def _settings_of(self, config: PlannerConfig) -> tuple[PlannerSettings, str]:
        """The settings of a configuration and their hash, derived once per configuration (the
        core's is the same object while it is not updated: ConfigEngine keeps it)."""
        kept, settings, hashed = self._settings
        if kept is not config:
            settings = PlannerSettings.from_config(config)
            hashed = settings_hash(settings)
            self._settings = (config, settings, hashed)
        return settings, hashed

    # --- Optimize ---

    def optimize(self, now: datetime, blend: float | None = None, target_return: float | None = None) -> Targets:
        """The optimiser's targets for the current state; `blend` and `target_return` override
        the settings for this run only. Writes nothing."""
        context = self._context(now)
        overrides = {k: v for k, v in (("optimizer_blend", blend), ("optimizer_target_return", target_return))
                     if v is not None}
        context = replace(context, settings=replace(context.settings, **overrides))
        return self._targets(context, now, context.fills, dismissed=set(), reuse=False)

    def _targets(self, context: Context, now: datetime, fills: list[Fill], dismissed: set[str],
                 reuse: bool = True) -> Targets:
        """The securities trading would buy now, what the plan reads of them (closes, metrics,
        fundamentals, scores) and the optimiser's targets for them. `reuse`: targets computed for
        the same state and the same buyable securities under the same rules, markets and regime
        within TARGETS_TTL_HOURS are reused instead of running the optimiser again (the original's
        48-hour cache per portfolio hash, planner.md section 6), and new ones are to be kept for
        reuse (`Targets.unsaved`: the caller stores them with what it writes, _batch)."""
        portfolio, rules = context.portfolio, context.rules
        base, rates = self._peers.fx_rates()
        held = sorted(portfolio.holdings)
        quotes = self._peers.quotes(sorted({s.symbol for s in context.listings if s.buyable} | set(held)))
        buys = [(f.symbol, f.executed_at) for f in fills if f.side == "BUY"]
        cash = Cash(base, portfolio.cash_base, context.reserve_base, rules.auto_convert_currency)
        candidates, excluded = screen(context.listings, quotes, base, rates, rules,
                                      last_buys_within(buys, now, rules.buy_cooldown_days), cash, now, context.markets)
        for symbol in sorted(dismissed & set(candidates)):
            del candidates[symbol]
            excluded.append(Exclusion(symbol, "dismissed", f"the BUY of {symbol} was dismissed for this state"))
        symbols = sorted(candidates)
        read = self._peers.valid_closes(symbols, now.date() - timedelta(days=_LOOKBACK_DAYS), defaults.LOOKBACK_BARS)
        closes = {s: read.get(s, NO_CLOSES) for s in symbols}
        listings = {s.symbol: s for s in context.listings}
        scored = sorted(set(symbols) | set(held))
        metrics, facts = self._peers.metrics(scored), self._peers.fundamentals(scored)
        scores = self._scores(scored, context, quotes, facts, metrics, now)
        key = _targets_key(context, symbols)
        reused = self._reused_targets(context.state_key, key, now) if reuse else None
        if reused:
            result = reused[1]
        else:
            securities = security_inputs(candidates, listings, closes, cagrs(metrics),
                                         {s: score.total for s, score in scores.items()}, dividend_yields(facts),
                                         portfolio.held_value_base, portfolio.quantities)
            result = optimize(OptimizerInput(
                securities, portfolio.total_value_base, context.reserve_base, context.regime.name, context.settings,
                context.allocations.groups,
                fixed_weight=held_elsewhere(portfolio.held_value_base, set(symbols), portfolio.total_value_base)))
        excluded = sorted(excluded + result.excluded, key=lambda e: e.symbol)
        notes = [context.regime.note] if context.regime.note else []
        if reused:
            notes.append(f"targets computed {reused[0]:%Y-%m-%d %H:%M} UTC for this state reused (at most "
                         f"{defaults.TARGETS_TTL_HOURS} hours)")
        notes.append(f"cash reserve {base} {context.reserve_base:,.2f} ({context.regime.name} market)")
        notes += _unmet_minimums(context.listings, excluded)
        return Targets(context, cash, candidates, excluded, result,
                       current_weights(portfolio.held_value_base, portfolio.total_value_base), notes,
                       scores, metrics, facts, closes,
                       (context.state_key, key, _targets_payload(result)) if reuse and not reused else None)

    def _reused_targets(self, state_key: str, key: str, now: datetime) -> tuple[datetime, OptimizerResult] | None:
        """(when computed, the optimiser's result) kept for the state under `key` within
        TARGETS_TTL_HOURS before `now`; None when there is none."""
        since = now - timedelta(hours=defaults.TARGETS_TTL_HOURS)
        revision, index = self._stored_targets()
        entry = index.get(state_key)
        if entry is None or entry[0] != key or not since <= entry[1] <= now:
            return None  # what store.find_targets would answer
        last = self._last_targets
        if last is not None and last[:3] == (revision, state_key, entry):
            computed_at, payload = entry[1], json.loads(last[3])
        else:
            with self._db.transaction() as session:
                found = store.find_targets(session, state_key, key, since, now)
            if found is None:
                return None
            computed_at, payload = found
        fallback = payload["fallback"]
        return computed_at, OptimizerResult(
            payload["weights"], payload["method"], Fallback(**fallback) if fallback else None,
            payload["expected_return"], payload["expected_returns"], [], Bounds({}, {}), [], payload["investable"],
            [Exclusion(**e) for e in payload["excluded"]], payload["notes"], payload["halfway"])

    def _stored_targets(self) -> tuple[tuple[int, ...], dict[str, tuple[str, datetime]]]:
        """(the targets table's revision, the stored targets' index: see _targets_index), read
        when the table moved otherwise than by this process's own save_targets (_saved_targets)."""
        revision = self._db.revisions.of(_TARGETS)
        kept_at, kept = self._targets_index
        if kept_at == revision:
            return revision, kept
        with self._db.transaction() as session:
            index = store.targets_index(session)
        if self._db.revisions.of(_TARGETS) == revision:
            self._targets_index = (revision, index)
        return revision, index

    def _saved_targets(self, revision: tuple[int, ...], state_key: str, cache_key: str, computed_at: datetime,
                       payload: str) -> None:
        """Add the targets just stored to the index kept at `revision` (read before storing them),
        when that store was the only change to the table since; else forget the index."""
        after = self._db.revisions.of(_TARGETS)
        kept_at, kept = self._targets_index
        entry = (cache_key, computed_at.astimezone(UTC))  # as a read gives it back (UtcDateTime)
        self._last_targets = (after, state_key, entry, payload)
        if kept_at == revision and after == (revision[0], revision[1] + 1):
            kept[state_key] = entry  # what the table now holds: only this row changed
            self._targets_index = (after, kept)
        else:
            self._targets_index = ((), {})

    # --- the holistic planner's inputs ---

    def _book(self, targets: Targets, fills: list[Fill], dismissed: frozenset[tuple[str, str]], now: datetime) -> Book:
        context = targets.context
        reads = PlanningReads(now.date(), targets.cash.base, context.portfolio, {s.symbol: s for s in context.listings},
                              targets.candidates, targets.excluded,
                              {s: score.quality for s, score in targets.scores.items()}, targets.metrics,
                              context.allocations.groups, targets.cash, context.rules.price_band, context.markets,
                              fills, dismissed)
        planner = context.config.planner
        return planning_book(reads, holding_rules(context.rules, planner), planner.allow_buy, planner.allow_sell,
                             targets.result.weights, frozenset(targets.result.expected_returns),
                             context.regime.name)

    def _candidates(self, context: Context, now: datetime, fills: list[Fill], dismissed: list[Recommendation],
                    reuse: bool = True) -> tuple[Targets, holistic.Candidates, EvaluationBook, dict]:
        """The optimiser's targets, the candidates of the plan, the evaluation's books (the
        books after the mandatory steps; stored as batch.book_to_json) and the scores of doing
        nothing (before and after the mandatory steps). `reuse`: as _targets."""
        targets = self._targets(context, now, fills, {r.symbol for r in dismissed if r.side == "BUY"}, reuse)
        book = self._book(targets, fills, frozenset((r.symbol, r.side) for r in dismissed), now)
        country_gaps, industry_gaps = group_gaps(book)
        generation = GenerationInputs(context.config.planner.mode, context.regime.name, country_gaps, industry_gaps)
        found = holistic.candidates(book, context.config, generation, correlations(targets.closes))
        parts = outlooks(book, targets.metrics, targets.facts)
        config = context.config
        after = holistic.evaluation_book(found.book, parts, config)
        scores = {"current": evaluation.current_score(config, holistic.evaluation_book(book, parts, config)),
                  "baseline": evaluation.current_score(config, after), "holds_positions": bool(found.book.positions)}
        return targets, found, after, scores

    # --- GetRecommendations ---

    def recommendations(self, now: datetime, max_steps: int = 0, time_left: float | None = None,
                        portfolio: PortfolioView | None = None) -> Plan:
        """The plan for the current state and `now`'s day: computed once, then served from the
        cache while the state, the day, trading's rules, the regime and the state of the markets
        that decide a trade stay the same. Its steps are stored as the state's recommendations;
        steps dismissed for the state are not planned. While the state's batch is not fully
        evaluated (the cycle's time budget ran out) the plan has no steps and is not cached.
        `max_steps` (> 0) cuts the reply to the first steps; the plan and its id stay those of
        the whole plan. `time_left`: seconds to the caller's deadline (None: none); the cycle's
        evaluation stops REPLY_MARGIN_S before it, whatever the configured budget, so the caller
        gets a plan (without steps while incomplete) rather than a DEADLINE_EXCEEDED. `portfolio`:
        the caller's (see _context), instead of reading it. With `complete_batches` neither the
        budget nor the deadline cuts the evaluation."""
        deadline = None if time_left is None else self._monotonic() + time_left - REPLY_MARGIN_S
        plan = self._recommendations(now, deadline, portfolio)
        return replace(plan, steps=plan.steps[:max_steps]) if max_steps > 0 else plan

    def _recommendations(self, now: datetime, deadline: float | None = None,
                         portfolio: PortfolioView | None = None) -> Plan:
        day = now.date().isoformat()
        context = self._context(now, given=portfolio)
        fills = context.fills
        filled = {f.client_order_id: f.executed_at for f in fills if f.client_order_id}
        revision = self._db.revisions.of(_RECOMMENDATIONS)
        settled = self._settled[1] if self._settled[0] == revision else frozenset()
        with self._db.transaction() as session:
            marked = store.mark_executed(session, {i: t for i, t in filled.items() if i not in settled})
            cached = store.find_plan(session, context.portfolio.portfolio_hash, day)
            dismissed = store.recommendations_of(session, context.state_key, DISMISSED)
            stored = _stored_batch(session, context, now)
        self._settle(revision, marked > 0, frozenset(filled))
        if cached is not None and cached[1].get("cache_key") == _cache_key(context):
            return _plan_from_payload(cached[0], context.portfolio.portfolio_hash, day, cached[1], dismissed, True)
        row, generated = self._batch(context, now, fills, dismissed, stored)
        budget = None if self._complete_batches else context.config.batch.cycle_time_budget_seconds
        if deadline is not None and budget is not None:
            budget = max(0.0, min(budget, deadline - self._monotonic()))
        row, _ = self._advance(row, context.config, now, budget=budget, generated=generated)
        if row.completed_at is None:
            return self._incomplete(row, context, day, dismissed, budget)
        identifier, payload = self._plan_payload(row, context, day, generated)
        steps = [Step(**s) for s in payload["steps"]]
        ordered = {_client_order_id(identifier, n, step) for n, step in enumerate(steps, start=1)} - {None}
        revision = self._db.revisions.of(_RECOMMENDATIONS)
        with self._db.transaction() as session:
            stored = store.upsert_recommendations(session, [
                (_recommendation(context.state_key, identifier, n, step, now), _client_order_id(identifier, n, step))
                for n, step in enumerate(steps, start=1)], now)
            if None not in stored:  # a step dismissed meanwhile: do not cache, the next request replans
                store.save_plan(session, context.portfolio.portfolio_hash, day, identifier, payload, now)
        if self._settled[0] == revision:  # the steps' ids may now be pending: no longer settled
            self._settle(revision, bool(steps), self._settled[1] - ordered)
        return _plan_from_payload(identifier, context.portfolio.portfolio_hash, day, payload, dismissed, False)

    def _settle(self, revision: tuple[int, ...], wrote: bool, settled: frozenset[str]) -> None:
        """Keep `settled` (client order ids matching no pending recommendation) when the
        recommendations table moved from `revision` by the caller's own commit alone (one
        revision when it `wrote` the table, none otherwise); else keep nothing."""
        after = self._db.revisions.of(_RECOMMENDATIONS)
        expected = (revision[0], revision[1] + 1) if wrote else revision
        self._settled = (after, settled) if after == expected else ((), frozenset())

    def _plan_payload(self, row: store.BatchRow, context: Context, day: str,
                      generated: Generated | None = None) -> tuple[str, dict]:
        """The plan of a complete batch: its mandatory steps, then its best sequence when that
        beats doing nothing; (plan id, the payload stored and served). `generated`: the batch's
        sequences when this request generated it."""
        inputs = json.loads(row.inputs)
        config = context.config
        actions = [batch.action_from_json(a) for a in inputs["mandatory"]]
        end = inputs["scores"]["baseline"]
        if batch.beat(row.best_score, end, inputs["scores"]["holds_positions"]):
            actions += self._best_actions(row, generated)
            end = row.best_score
        start = _start_book(inputs["start"], context)
        built = holistic.build_plan(start, actions[:defaults.MAX_PLAN_DEPTH], inputs["scores"]["current"], end, config)
        steps = [replace(s, uuid=recommendation_id(context.state_key, s.symbol, s.side)) for s in built.steps]
        identifier = plan_id(context.state_key, day, steps)
        payload = {**inputs["payload"], "steps": [asdict(s) for s in steps], "cache_key": _cache_key(context),
                   "current_score": built.current_score, "end_state_score": built.end_state_score,
                   "cash_required_base": built.cash_required_base, "cash_generated_base": built.cash_generated_base,
                   "feasible": built.feasible, "narrative": built.narrative, "complete": True,
                   "sequences_generated": row.generated, "sequences_evaluated": row.evaluated,
                   "config_name": context.config_name, "evaluation_mode": config.evaluation.mode}
        return identifier, payload

    def _incomplete(self, row: store.BatchRow, context: Context, day: str, dismissed: list[Recommendation],
                    budget: float) -> Plan:
        inputs = json.loads(row.inputs)
        note = (f"evaluation in progress: {row.evaluated + row.skipped} of {row.generated} sequences done within "
                f"the {budget:.3g} s budget; no step until all are")
        payload = {**inputs["payload"], "steps": [], "notes": inputs["payload"]["notes"] + [note],
                   "current_score": 100 * inputs["scores"]["current"], "complete": False,
                   "sequences_generated": row.generated, "sequences_evaluated": row.evaluated,
                   "config_name": context.config_name, "evaluation_mode": context.config.evaluation.mode}
        return _plan_from_payload("", context.portfolio.portfolio_hash, day, payload, dismissed, False)

    # --- batches ---

    def _batch(self, context: Context, now: datetime, fills: list[Fill], dismissed: list[Recommendation],
               stored: store.BatchRow | None) -> tuple[store.BatchRow, Generated | None]:
        """The batch of the state and day: `stored` (_stored_batch), else generated and stored
        (the other batches discarded), with its sequences as generated (None: `stored`)."""
        if stored is not None:
            return stored, None
        key = batch.batch_key(_cache_key(context), now.date().isoformat())
        targets, found, book, scores = self._candidates(context, now, fills, dismissed)
        inputs = {"book": batch.book_to_json(book), "mandatory": [batch.action_to_json(a) for a in found.mandatory],
                  "scores": scores,
                  "payload": _payload(targets, _cache_key(context)),
                  "start": {"balances": dict(targets.cash.balances), "reserve": targets.cash.reserve_base,
                            "auto_convert": targets.cash.auto_convert}}
        rows = batch.sequence_rows(found.sequences)
        row = store.BatchRow(batch_key=key, state_key=context.state_key, as_of_date=now.date().isoformat(),
                             mode=context.config.planner.mode, inputs=json.dumps(inputs), generated=len(rows),
                             evaluated=0, skipped=0, plateau=0, beam="[]", current_score=scores["current"],
                             best_sequence_hash=None, best_score=None, created_at=now, updated_at=now,
                             completed_at=now if not rows else None)
        revision, saved = self._db.revisions.of(_TARGETS), None
        with self._db.transaction() as session:
            if targets.unsaved is not None:
                saved = store.save_targets(session, *targets.unsaved, now)
            store.forget_batches(session)
            store.add_batch(session, row, rows)
        if saved is not None:
            self._saved_targets(revision, targets.unsaved[0], targets.unsaved[1], now, saved)
        first = {}
        for sequence in found.sequences:
            first.setdefault(sequence.sequence_hash, sequence.actions)
        return row, Generated([(r["sequence_hash"], first[r["sequence_hash"]]) for r in rows],
                              {r["sequence_hash"]: r["steps"] for r in rows}, book)

    def _advance(self, row: store.BatchRow, config: PlannerConfig, now: datetime, budget: float | None = None,
                 size: int | None = None, generated: Generated | None = None) -> tuple[store.BatchRow, int]:
        """Evaluate the batch's next sequences: until it is complete, `size` are done, or
        `budget` seconds have passed. (the batch row after, how many were evaluated).
        `generated`: the batch's sequences, when this request generated it (none evaluated
        yet): taken from there in order rather than read back."""
        started, done, taken = self._monotonic(), 0, 0
        book = generated.book if generated is not None else batch.book_from_json(json.loads(row.inputs)["book"])
        progress = batch.Progress(row.evaluated, row.skipped, row.plateau, tuple(json.loads(row.beam)),
                                  row.best_sequence_hash, row.best_score)
        chunk = BEAM_ROWS if config.planner.mode == FULL else EVALUATION_ROWS
        while row.completed_at is None:
            if (size is not None and done >= size) or (budget is not None and self._monotonic() - started >= budget):
                break
            limit = chunk if size is None else min(chunk, size - done)
            if generated is not None:
                pending, taken = generated.pending[taken:taken + limit], taken + limit
            else:
                with self._db.transaction() as session:
                    pending = [(s.sequence_hash, batch.actions_of(s.steps))
                               for s in store.pending_sequences(session, row.batch_key, limit)]
            result = batch.evaluate_next(book, config, pending, progress) if pending \
                else batch.ChunkResult(progress=progress)
            progress, done = result.progress, done + len(result.scored)
            row = self._record(row, result, now, stop=result.stop or not pending)
        return row, done

    def _record(self, row: store.BatchRow, result: batch.ChunkResult, now: datetime, stop: bool) -> store.BatchRow:
        """Store a chunk's evaluations and the progress after it; the batch row after (a copy,
        out of any session)."""
        progress = result.progress
        with self._db.transaction() as session:
            store.record_evaluations(session, row.batch_key, [
                {"sequence_hash": s.sequence_hash, "score": s.score, "end_score": s.end_score,
                 "end_cash_base": s.end_cash_base, "cost_base": s.cost_base, "evaluated_at": now}
                for s in result.scored], [s.sequence_hash for s in result.scored])
            skipped = store.skip_pending(session, row.batch_key) if result.stop else 0
            after = _copy(row)
            after.evaluated, after.skipped = progress.evaluated, progress.skipped + skipped
            after.plateau, after.beam = progress.plateau, json.dumps(list(progress.beam))
            after.best_sequence_hash, after.best_score = progress.best_hash, progress.best_score
            after.updated_at = now
            if stop or after.evaluated + after.skipped >= after.generated:
                after.completed_at = now
            store.update_progress(session, after)
        return after

    def _best_actions(self, row: store.BatchRow, generated: Generated | None = None) -> list[Action]:
        """The actions of the batch's best sequence (`generated`: the batch's sequences, when
        this request generated it)."""
        if generated is not None:
            return batch.actions_of(generated.steps[row.best_sequence_hash])
        with self._db.transaction() as session:
            best = store.find_sequence(session, row.batch_key, row.best_sequence_hash)
            return batch.actions_of(best.steps) if best is not None else []

    def run_batch(self, now: datetime, size: int) -> BatchStatus:
        """Evaluate the next `size` sequences of the current state's batch (generating it when
        there is none; 0: the configuration's batch size)."""
        context = self._context(now)
        fills = context.fills
        with self._db.transaction() as session:
            dismissed = store.recommendations_of(session, context.state_key, DISMISSED)
            stored = _stored_batch(session, context, now)
        row, generated = self._batch(context, now, fills, dismissed, stored)
        row, done = self._advance(row, context.config, now, size=size or context.config.batch.size,
                                  generated=generated)
        return replace(self._status(row, generated), evaluated_now=done)

    def status(self) -> BatchStatus:
        """The progress of the stored batch (the latest state planned); empty when there is none."""
        with self._db.transaction() as session:
            row = store.latest_batch(session)
            if row is None:
                return BatchStatus()
            session.expunge(row)
        return self._status(row)

    def _status(self, row: store.BatchRow, generated: Generated | None = None) -> BatchStatus:
        steps: list[Step] = []
        if row.best_sequence_hash is not None:
            actions = self._best_actions(row, generated)
            steps = [Step(a.symbol, a.side, a.quantity, a.price, a.currency, a.value_base, a.reason,
                          category=a.category) for a in actions]
        return BatchStatus(row.batch_key, row.state_key, row.as_of_date, row.mode, row.generated, row.evaluated,
                           row.skipped, row.completed_at is not None, 100 * row.current_score,
                           None if row.best_score is None else 100 * row.best_score, steps, 0, row.updated_at)

    # --- CreatePlan ---

    def create_plan(self, now: datetime, config_id: str = "") -> Plan:
        """The plan for the current state under a stored configuration (the core's by default),
        every sequence evaluated now, in memory: nothing is stored (no batch, no
        recommendation, no cache)."""
        stored = self._configs.get(config_id=config_id) if config_id else self._configs.core()
        context = self._context(now, stored.config, stored.name)
        fills = context.fills
        with self._db.transaction() as session:
            dismissed = store.recommendations_of(session, context.state_key, DISMISSED)
        targets, found, book, scores = self._candidates(context, now, fills, dismissed, reuse=False)
        progress, _ = batch.evaluate_all(batch.book_from_json(batch.book_to_json(book)), context.config,
                                         found.sequences)
        actions = list(found.mandatory)
        end = scores["baseline"]
        if batch.beat(progress.best_score, end, scores["holds_positions"]):
            actions += next(s.actions for s in found.sequences if s.sequence_hash == progress.best_hash)
            end = progress.best_score
        built = holistic.build_plan(_start_book({"balances": dict(targets.cash.balances),
                                                 "reserve": targets.cash.reserve_base,
                                                 "auto_convert": targets.cash.auto_convert}, context),
                                    actions[:defaults.MAX_PLAN_DEPTH], scores["current"], end, context.config)
        steps = [replace(s, uuid=recommendation_id(context.state_key, s.symbol, s.side)) for s in built.steps]
        day = now.date().isoformat()
        payload = {**_payload(targets, _cache_key(context)), "steps": [asdict(s) for s in steps],
                   "current_score": built.current_score, "end_state_score": built.end_state_score,
                   "cash_required_base": built.cash_required_base, "cash_generated_base": built.cash_generated_base,
                   "feasible": built.feasible, "narrative": built.narrative, "complete": True,
                   "sequences_generated": len(found.sequences), "sequences_evaluated": progress.evaluated,
                   "config_name": stored.name, "evaluation_mode": context.config.evaluation.mode}
        return _plan_from_payload(plan_id(context.state_key, day, steps), context.portfolio.portfolio_hash, day,
                                  payload, dismissed, False)

    # --- DismissRecommendation ---

    def dismiss(self, uuid: str, now: datetime) -> Recommendation:
        """Dismiss a pending step for its state (dismissing it again changes nothing); the cached
        plans of its portfolio hash and the batches are dropped so the next request plans
        without it."""
        with self._db.transaction() as session:
            row = store.find_recommendation(session, uuid)
            if row is None:
                raise NotFound(f"unknown recommendation {uuid}")
            if row.status == EXECUTED:
                raise FailedPrecondition("recommendation_executed",
                                         f"{row.side} {row.symbol} was executed at {row.executed_at:%Y-%m-%d %H:%M}")
            store.forget_plans(session, row.state_key.split(":")[0])
            store.forget_batches(session)
            return store.dismiss(session, row, now)


@dataclass(frozen=True)
class Generated:
    """A batch's sequences as the request that generated (and stored) them has them, so it
    reads none of them back: (hash, actions) in evaluation order, and each one's stored steps
    (JSON, what a read would parse)."""

    pending: list[tuple[str, tuple[Action, ...]]]
    steps: dict[str, str]
    book: EvaluationBook  # what its stored books (batch.book_to_json) give back (batch.book_from_json)


def _stored_batch(session: Session, context: Context, now: datetime) -> store.BatchRow | None:
    """The stored batch of the state and `now`'s day (out of the session), or None."""
    return store.stored_batch(session, batch.batch_key(_cache_key(context), now.date().isoformat()))


def _copy(row: store.BatchRow) -> store.BatchRow:
    """A batch row with the same column values, in no session."""
    return store.BatchRow(**{column.key: getattr(row, column.key) for column in store.BatchRow.__table__.columns})


def holds_its_hash(portfolio: PortfolioView, listings: list[Listing]) -> bool:
    """Whether `portfolio.portfolio_hash` is the portfolio service's hash of its quantities and
    cash over `listings` (services/portfolio/hashing.py, the one definition)."""
    holdings = [PortfolioHolding(s, h.quantity, h.average_cost or 0.0, "") for s, h in portfolio.holdings.items()]
    universe = [UniverseEntry(s.symbol, s.allow_buy, s.allow_sell, s.country, s.industry, s.min_target, s.max_target)
                for s in listings]
    return portfolio_hash(holdings, portfolio.cash, universe) == portfolio.portfolio_hash


def _fills_since(rules: TradingRules, config: PlannerConfig, now: datetime) -> datetime:
    """Since when a plan needs the fills (Context.fills): the longest holding rule's window (the
    buy cooldown, the minimum hold, the sell cooldown: trading's or the configuration's, the
    stricter) and a month more (the orders of steps planned recently fill within days). One
    read, however long the history."""
    holding = holding_rules(rules, config.planner)
    days = max(holding.buy_cooldown_days, holding.min_hold_days, holding.sell_cooldown_days) + FILLS_MARGIN_DAYS
    return now - timedelta(days=days)


def _start_book(start: Mapping, context: Context) -> Book:
    """What build_plan reads of the books: the cash, the holdings and the base currency."""
    cash = Cash(context.portfolio.base_currency, start["balances"], start["reserve"], start["auto_convert"])
    positions = {s: PositionView(s, h.quantity, h.average_cost or 0.0, h.value_base)
                 for s, h in context.portfolio.holdings.items() if h.quantity > 0}
    return Book(datetime.min.date(), context.portfolio.base_currency, {}, positions, cash,
                context.portfolio.total_value_base)


def _cache_key(context: Context) -> dict:
    """What a plan depends on beyond its portfolio hash and day (the configuration is in the
    settings hash, so in the state key)."""
    return {"state_key": context.state_key, "rules": _rules_json(context.rules), "markets": context.markets,
            "regime": context.regime.name}


_RULES = tuple(f.name for f in fields(TradingRules))


def _rules_json(rules: TradingRules) -> dict:
    """asdict(rules) (its fields are plain values), without asdict's deep copy."""
    return {name: getattr(rules, name) for name in _RULES}


def _targets_key(context: Context, candidates: list[str]) -> str:
    """What reused targets must share with the current request beyond the state: the rules,
    the strict markets, the regime and the securities that may be bought."""
    text = json.dumps({"rules": asdict(context.rules), "markets": context.markets, "regime": context.regime.name,
                       "candidates": candidates}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _targets_payload(result: OptimizerResult) -> dict:
    return {"weights": result.weights, "method": result.method,
            "fallback": asdict(result.fallback) if result.fallback else None,
            "expected_return": result.expected_return, "expected_returns": result.expected_returns,
            "investable": result.investable, "excluded": [asdict(e) for e in result.excluded],
            "notes": result.notes, "halfway": result.halfway}


def _client_order_id(identifier: str, number: int, step: Step) -> str | None:
    """The cycle executes only step 1 (decisions.md rule 22), under this id (trading ExecutePlan)."""
    return plan_client_order_id(identifier, 1, step.symbol, step.side) if number == 1 else None


def _recommendation(state: str, identifier: str, number: int, step: Step, now: datetime) -> Recommendation:
    return Recommendation(step.uuid, state, step.symbol, step.side, step.quantity, step.estimated_price, step.currency,
                          step.estimated_value_base, step.reason, PENDING, identifier, number, now, now)


def _payload(targets: Targets, cache_key: dict) -> dict:
    """The plan's context: the optimiser's targets, what was left out and why, the notes."""
    context, result = targets.context, targets.result
    notes = list(targets.notes) + result.notes
    if targets.cash.pooled < defaults.MIN_TRADE_BASE:
        base = targets.cash.base
        notes.append(f"spendable cash {base} {max(targets.cash.pooled, 0):,.2f} (after the {base} "
                     f"{targets.cash.reserve_base:,.0f} reserve) is below the minimum trade "
                     f"{defaults.MIN_TRADE_BASE:,.0f}")
    if not targets.candidates:
        notes.append("no security can be bought now (see excluded)")
    return {"steps": [], "target_weights": result.weights, "method": result.method,
            "unallocated_weight": result.unallocated if result.weights else 1.0,
            "excluded": [asdict(e) for e in targets.excluded], "notes": notes, "cache_key": cache_key,
            "settings_hash": context.settings_hash, "allocations_hash": context.allocations.allocations_hash,
            "state_key": context.state_key, "regime": context.regime.name, "reserve_base": context.reserve_base,
            "fallback": asdict(result.fallback) if result.fallback else None,
            "expected_return": result.expected_return}


def _unmet_minimums(listings: list[Listing], excluded: list[Exclusion]) -> list[str]:
    minimums = {s.symbol: s.min_target for s in listings if s.min_target}
    return [f"{e.symbol}: minimum target {minimums[e.symbol]:g}% not planned ({e.reason})"
            for e in excluded if e.symbol in minimums]


_PLAN_EXTRAS = ("current_score", "end_state_score", "cash_required_base", "cash_generated_base", "feasible",
                "narrative", "complete", "sequences_generated", "sequences_evaluated", "config_name",
                "evaluation_mode")


def _plan_from_payload(identifier: str, portfolio_hash: str, day: str, payload: dict,
                       dismissed: list[Recommendation], cached: bool) -> Plan:
    extras = {name: payload[name] for name in _PLAN_EXTRAS if name in payload}
    return Plan(identifier, portfolio_hash, day, [Step(**s) for s in payload["steps"]], payload["target_weights"],
                payload["method"], [Exclusion(**e) for e in payload.get("excluded", [])],
                payload.get("unallocated_weight", 0.0), payload.get("notes", []), cached,
                payload["settings_hash"], payload["allocations_hash"], payload["state_key"], payload["regime"],
                payload["reserve_base"], payload["fallback"], payload["expected_return"], dismissed, **extras)
