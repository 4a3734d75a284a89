"""The planner's use cases: the optimiser's targets (Optimize), the plan for the current state
(GetRecommendations) and dismissing a step (DismissRecommendation).

Each use case reads what it needs from the other services through adapters/peers.py, once per
kind of data (never once per security), and hands it to the pure modules: eligibility (what
trading would buy), inputs and optimizer (target weights), plan (BUY steps), recommendations
(steps stored per state), settings (the settings and the state hashes). The optimiser's score
factor reads the security scores, which the scoring engine refreshes from the same reads (a
stored group is recomputed only when its TTL passed or its inputs changed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from services.common.db import Database
from services.common.errors import FailedPrecondition, NotFound
from services.planner import defaults, store
from services.planner.adapters.peers import (
    AllocationTargets,
    Fill,
    FundamentalsView,
    MetricsView,
    Peers,
    PortfolioView,
    Regime,
)
from services.planner.eligibility import (
    Exclusion,
    Listing,
    Quote,
    TradingRules,
    last_buys_within,
    screen,
    strict_exchanges,
    valid_closes,
)
from services.planner.inputs import cagrs, current_weights, dividend_yields, held_elsewhere, security_inputs
from services.planner.optimizer import OptimizerInput, OptimizerResult, optimize
from services.planner.optimizer.bounds import Bounds
from services.planner.optimizer.pipeline import Fallback
from services.planner.optimizer.reserve import regime_reserve
from services.planner.plan import Candidate, Cash, Step, buy_steps, plan_id
from services.planner.recommendations import DISMISSED, EXECUTED, PENDING, Recommendation, recommendation_id
from services.planner.scoring_engine import ScoringEngine, ScoringReads
from services.planner.settings import PlannerSettings, settings_hash, state_key
from services.trading.orders import plan_client_order_id  # the id trading gives a plan's step-1 order

# Fills read before the buy cooldown's window: those of every step planned in that time.
FILLS_MARGIN_DAYS = 30
# Calendar days that hold LOOKBACK_BARS trading days, with room for holidays.
_LOOKBACK_DAYS = int(defaults.LOOKBACK_BARS * 1.5) + 10


@dataclass(frozen=True)
class Context:
    """What every use case reads first: the state and the rules it is planned under."""

    portfolio: PortfolioView
    settings: PlannerSettings
    settings_hash: str
    allocations: AllocationTargets
    rules: TradingRules
    listings: list[Listing]
    markets: dict[str, bool | None]  # strict exchange -> open now (None: unknown)
    regime: Regime

    @property
    def state_key(self) -> str:
        return state_key(self.portfolio.portfolio_hash, self.settings_hash, self.allocations.allocations_hash)

    @property
    def reserve_base(self) -> float:
        return regime_reserve(self.portfolio.total_value_base, self.regime.name, self.settings.min_cash_reserve)


@dataclass(frozen=True)
class Targets:
    """The optimiser run on the current state, with the securities it could buy."""

    context: Context
    cash: Cash
    candidates: dict[str, Candidate]
    excluded: list[Exclusion]
    result: OptimizerResult
    current: dict[str, float]  # symbol -> weight held now
    notes: list[str]


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


class PlannerEngine:
    def __init__(self, db: Database, peers: Peers, scoring: ScoringEngine, settings: PlannerSettings | None = None):
        self._db = db
        self._peers = peers
        self._scoring = scoring
        self._settings = settings or PlannerSettings()

    # --- where inputs come from ---

    def _current_settings(self) -> PlannerSettings:
        """The settings in force: the defaults (decisions.md rule 20) until planner configs
        (issue 14) store them; this is the one place that reads them."""
        return self._settings

    def _scores(self, symbols: list[str], context: Context, quotes: Mapping[str, Quote],
                facts: Mapping[str, FundamentalsView], metrics: Mapping[str, MetricsView],
                now: datetime) -> dict[str, float | None]:
        """symbol -> total score (0..1) for the optimiser's score factor; None = not scored
        (neutral). The stored scores are refreshed as of `now` from the inputs already read (a
        group is recomputed when its TTL passed or its price or fundamentals changed, as
        ScoreSecurities does) and stored. This is the one place the optimiser reads scores from."""
        equities = {s.symbol: s for s in context.listings if s.tradable}
        reads = ScoringReads(equities, quotes, facts, context.portfolio, context.allocations.groups)
        refreshed = self._scoring.refresh(symbols, reads, lambda _: metrics, now)
        return {score.symbol: score.total for score in refreshed}

    def _context(self, now: datetime) -> Context:
        settings = self._current_settings()
        listings = self._peers.listings()
        return Context(
            portfolio=self._peers.portfolio(), settings=settings, settings_hash=settings_hash(settings),
            allocations=self._peers.allocation_targets(), rules=self._peers.trading_rules(), listings=listings,
            markets={exchange: self._peers.market_open(exchange, now) for exchange in strict_exchanges(listings)},
            regime=self._peers.market_regime())

    # --- Optimize ---

    def optimize(self, now: datetime, blend: float | None = None, target_return: float | None = None) -> Targets:
        """The optimiser's targets for the current state; `blend` and `target_return` override
        the settings for this run only. Writes nothing."""
        context = self._context(now)
        overrides = {k: v for k, v in (("optimizer_blend", blend), ("optimizer_target_return", target_return))
                     if v is not None}
        context = replace(context, settings=replace(context.settings, **overrides))
        return self._targets(context, now, self._recent_fills(context, now), dismissed=set(), reuse=False)

    def _targets(self, context: Context, now: datetime, fills: list[Fill], dismissed: set[str],
                 reuse: bool) -> Targets:
        """The securities trading would buy now and the optimiser's targets for them. `reuse`:
        targets computed for the same state and the same buyable securities under the same
        rules, markets and regime within TARGETS_TTL_HOURS are reused (the original's 48-hour
        cache per portfolio hash, planner.md section 6), and new ones are kept for reuse."""
        portfolio, rules = context.portfolio, context.rules
        base, rates = self._peers.fx_rates()
        quotes = self._peers.quotes([s.symbol for s in context.listings if s.buyable])
        buys = [(f.symbol, f.executed_at) for f in fills if f.side == "BUY"]
        cash = Cash(base, portfolio.cash_base, context.reserve_base, rules.auto_convert_currency)
        candidates, excluded = screen(context.listings, quotes, base, rates, rules,
                                      last_buys_within(buys, now, rules.buy_cooldown_days), cash, now, context.markets)
        for symbol in sorted(dismissed & set(candidates)):
            del candidates[symbol]
            excluded.append(Exclusion(symbol, "dismissed", f"the BUY of {symbol} was dismissed for this state"))
        symbols = sorted(candidates)
        key = _targets_key(context, symbols)
        reused = self._reused_targets(context.state_key, key, now) if reuse else None
        result = reused[1] if reused else self._optimize(context, candidates, quotes, now)
        if reuse and not reused:
            with self._db.transaction() as session:
                store.save_targets(session, context.state_key, key, _targets_payload(result), now)
        excluded = sorted(excluded + result.excluded, key=lambda e: e.symbol)
        notes = [context.regime.note] if context.regime.note else []
        if reused:
            notes.append(f"targets computed {reused[0]:%Y-%m-%d %H:%M} UTC for this state reused (at most "
                         f"{defaults.TARGETS_TTL_HOURS} hours)")
        notes.append(f"cash reserve {base} {context.reserve_base:,.2f} ({context.regime.name} market)")
        notes += _unmet_minimums(context.listings, excluded)
        return Targets(context, cash, candidates, excluded, result,
                       current_weights(portfolio.held_value_base, portfolio.total_value_base), notes)

    def _recent_fills(self, context: Context, now: datetime) -> list[Fill]:
        """The fills a plan needs: the buy cooldown's, and those of steps planned recently (a
        step's order fills within days of its plan). One read, however long the history."""
        return self._peers.fills(now - timedelta(days=context.rules.buy_cooldown_days + FILLS_MARGIN_DAYS))

    def _optimize(self, context: Context, candidates: dict[str, Candidate], quotes: Mapping[str, Quote],
                  now: datetime) -> OptimizerResult:
        """Read the candidates' closes, metrics and fundamentals (one call each), refresh their
        scores and run the optimiser."""
        portfolio = context.portfolio
        symbols = sorted(candidates)
        bars = self._peers.daily_bars(symbols, now.date() - timedelta(days=_LOOKBACK_DAYS))
        closes = {s: valid_closes(bars.get(s, []))[-defaults.LOOKBACK_BARS:] for s in symbols}
        listings = {s.symbol: s for s in context.listings}
        metrics, facts = self._peers.metrics(symbols), self._peers.fundamentals(symbols)
        scores = self._scores(symbols, context, quotes, facts, metrics, now)
        securities = security_inputs(candidates, listings, closes, cagrs(metrics), scores, dividend_yields(facts),
                                     portfolio.held_value_base, portfolio.quantities)
        return optimize(OptimizerInput(
            securities, portfolio.total_value_base, context.reserve_base, context.regime.name, context.settings,
            context.allocations.groups,
            fixed_weight=held_elsewhere(portfolio.held_value_base, set(symbols), portfolio.total_value_base)))

    def _reused_targets(self, state_key: str, key: str, now: datetime) -> tuple[datetime, OptimizerResult] | None:
        with self._db.transaction() as session:
            found = store.find_targets(session, state_key, key, now - timedelta(hours=defaults.TARGETS_TTL_HOURS), now)
        if found is None:
            return None
        computed_at, payload = found
        fallback = payload["fallback"]
        return computed_at, OptimizerResult(
            payload["weights"], payload["method"], Fallback(**fallback) if fallback else None,
            payload["expected_return"], {}, [], Bounds({}, {}), [], payload["investable"],
            [Exclusion(**e) for e in payload["excluded"]], payload["notes"])

    # --- GetRecommendations ---

    def recommendations(self, now: datetime, max_steps: int = 0) -> Plan:
        """The plan for the current state and `now`'s day: computed once, then served from the
        cache while the state, the day, trading's rules, the regime and the state of the markets
        where a BUY needs an open market stay the same. Its steps are stored as the state's
        recommendations; steps dismissed for the state are not planned. `max_steps` (> 0) cuts
        the reply to the first steps; the plan and its id stay those of the whole plan."""
        plan = self._recommendations(now)
        return replace(plan, steps=plan.steps[:max_steps]) if max_steps > 0 else plan

    def _recommendations(self, now: datetime) -> Plan:
        day = now.date().isoformat()
        context = self._context(now)
        fills = self._recent_fills(context, now)
        with self._db.transaction() as session:
            store.mark_executed(session, {f.client_order_id: f.executed_at for f in fills if f.client_order_id})
            cached = store.find_plan(session, context.portfolio.portfolio_hash, day)
            dismissed = store.recommendations_of(session, context.state_key, DISMISSED)
        if cached is not None and cached[1].get("cache_key") == _cache_key(context):
            return _plan_from_payload(cached[0], context.portfolio.portfolio_hash, day, cached[1], dismissed, True)
        targets = self._targets(context, now, fills, {r.symbol for r in dismissed if r.side == "BUY"}, reuse=True)
        steps = self._steps(targets)
        identifier = plan_id(context.state_key, day, steps)
        payload = _payload(targets, steps, _cache_key(context))
        with self._db.transaction() as session:
            stored = [store.upsert_recommendation(session, _recommendation(context.state_key, identifier, n, step, now),
                                                  _client_order_id(identifier, n, step), now)
                      for n, step in enumerate(steps, start=1)]
            if None not in stored:  # a step dismissed meanwhile: do not cache, the next request replans
                store.save_plan(session, context.portfolio.portfolio_hash, day, identifier, payload, now)
        return _plan_from_payload(identifier, context.portfolio.portfolio_hash, day, payload, dismissed, False)

    def _steps(self, targets: Targets) -> list[Step]:
        context, result = targets.context, targets.result
        steps = buy_steps(result.weights, context.portfolio.held_value_base, context.portfolio.total_value_base,
                          targets.cash, {s: c for s, c in targets.candidates.items() if s in result.weights},
                          context.rules.price_band, context.settings.max_plan_depth)
        return [replace(s, uuid=recommendation_id(context.state_key, s.symbol, s.side)) for s in steps]

    # --- DismissRecommendation ---

    def dismiss(self, uuid: str, now: datetime) -> Recommendation:
        """Dismiss a pending step for its state (dismissing it again changes nothing); the cached
        plans of its portfolio hash are dropped so the next request plans without it."""
        with self._db.transaction() as session:
            row = store.find_recommendation(session, uuid)
            if row is None:
                raise NotFound(f"unknown recommendation {uuid}")
            if row.status == EXECUTED:
                raise FailedPrecondition("recommendation_executed",
                                         f"{row.side} {row.symbol} was executed at {row.executed_at:%Y-%m-%d %H:%M}")
            store.forget_plans(session, row.state_key.split(":")[0])
            return store.dismiss(session, row, now)


def _cache_key(context: Context) -> dict:
    """What a cached plan depends on beyond its portfolio hash and day."""
    return {"state_key": context.state_key, "rules": asdict(context.rules), "markets": context.markets,
            "regime": context.regime.name}


def _targets_key(context: Context, candidates: list[str]) -> str:
    """What reused targets must share with the current request beyond the state: the rules,
    the strict markets, the regime and the securities that may be bought."""
    text = json.dumps({"rules": asdict(context.rules), "markets": context.markets, "regime": context.regime.name,
                       "candidates": candidates}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _targets_payload(result: OptimizerResult) -> dict:
    return {"weights": result.weights, "method": result.method,
            "fallback": asdict(result.fallback) if result.fallback else None,
            "expected_return": result.expected_return, "investable": result.investable,
            "excluded": [asdict(e) for e in result.excluded], "notes": result.notes}


def _client_order_id(identifier: str, number: int, step: Step) -> str | None:
    """The cycle executes only step 1 (decisions.md rule 22), under this id (trading ExecutePlan)."""
    return plan_client_order_id(identifier, 1, step.symbol, step.side) if number == 1 else None


def _recommendation(state: str, identifier: str, number: int, step: Step, now: datetime) -> Recommendation:
    return Recommendation(step.uuid, state, step.symbol, step.side, step.quantity, step.estimated_price, step.currency,
                          step.estimated_value_base, step.reason, PENDING, identifier, number, now, now)


def _payload(targets: Targets, steps: list[Step], cache_key: dict) -> dict:
    context, result = targets.context, targets.result
    notes = list(targets.notes) + result.notes
    if targets.cash.pooled < defaults.MIN_TRADE_BASE:
        base = targets.cash.base
        notes.append(f"spendable cash {base} {max(targets.cash.pooled, 0):,.2f} (after the {base} "
                     f"{targets.cash.reserve_base:,.0f} reserve) is below the minimum trade "
                     f"{defaults.MIN_TRADE_BASE:,.0f}")
    if not targets.candidates:
        notes.append("no security can be bought now (see excluded): the plan is empty")
    return {"steps": [asdict(s) for s in steps], "target_weights": result.weights, "method": result.method,
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


def _plan_from_payload(identifier: str, portfolio_hash: str, day: str, payload: dict,
                       dismissed: list[Recommendation], cached: bool) -> Plan:
    return Plan(identifier, portfolio_hash, day, [Step(**s) for s in payload["steps"]], payload["target_weights"],
                payload["method"], [Exclusion(**e) for e in payload.get("excluded", [])],
                payload.get("unallocated_weight", 0.0), payload.get("notes", []), cached,
                payload["settings_hash"], payload["allocations_hash"], payload["state_key"], payload["regime"],
                payload["reserve_base"], payload["fallback"], payload["expected_return"], dismissed)
