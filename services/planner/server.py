"""gRPC servicer for trader.planner.v1.Planner: proto <-> domain, nothing else."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

from trader.planner.v1 import planner_pb2, planner_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2

from services.common import clock
from services.common.errors import InvalidArgument
from services.common.maintenance import Maintenance
from services.common.maintenance_rpc import MaintenanceRpc
from services.common.timestamps import to_timestamp
from services.planner import defaults
from services.planner.adapters.peers import PortfolioView, portfolio_view
from services.planner.config import SLIDER_NAMES
from services.planner.config_engine import MAX_HISTORY, ConfigEngine, ConfigUpdate, ConfigVersion, StoredConfig
from services.planner.engine import BatchStatus, Plan, PlannerEngine, Targets
from services.planner.optimizer.pipeline import Fallback
from services.planner.plan import Step
from services.planner.recommendations import Recommendation, parse_uuid
from services.planner.scoring_engine import ScoringEngine, StoredScore


def _exclusions(excluded) -> list[planner_pb2.Exclusion]:
    return [planner_pb2.Exclusion(symbol=e.symbol, reason=e.reason, detail=e.detail) for e in excluded]


def _fallback(fallback: dict | Fallback | None) -> planner_pb2.Fallback | None:
    if fallback is None:
        return None
    if isinstance(fallback, Fallback):
        return planner_pb2.Fallback(level=fallback.level, objective=fallback.objective)
    return planner_pb2.Fallback(**fallback)


def recommendation_to_proto(recommendation: Recommendation) -> planner_pb2.Recommendation:
    message = planner_pb2.Recommendation(
        uuid=recommendation.uuid, state_key=recommendation.state_key, symbol=recommendation.symbol,
        side=planner_pb2.Side.Value(recommendation.side), quantity=recommendation.quantity,
        estimated_price=recommendation.estimated_price, currency=recommendation.currency,
        estimated_value_base=recommendation.estimated_value_base, reason=recommendation.reason,
        status=recommendation.status, plan_id=recommendation.plan_id, step=recommendation.step,
        created_at=to_timestamp(recommendation.created_at), updated_at=to_timestamp(recommendation.updated_at))
    if recommendation.executed_at is not None:
        message.executed_at.CopyFrom(to_timestamp(recommendation.executed_at))
    if recommendation.dismissed_at is not None:
        message.dismissed_at.CopyFrom(to_timestamp(recommendation.dismissed_at))
    return message


def step_to_proto(number: int, step: Step) -> planner_pb2.Step:
    return planner_pb2.Step(step=number, symbol=step.symbol, side=planner_pb2.Side.Value(step.side),
                            quantity=step.quantity, estimated_price=step.estimated_price, currency=step.currency,
                            estimated_value_base=step.estimated_value_base, reason=step.reason, uuid=step.uuid,
                            narrative=step.narrative, category=step.category, priority=step.priority)


def plan_to_proto(plan: Plan) -> planner_pb2.GetRecommendationsResponse:
    return planner_pb2.GetRecommendationsResponse(
        plan_id=plan.plan_id, portfolio_hash=plan.portfolio_hash, as_of_date=plan.as_of_date,
        target_weights=plan.target_weights, cached=plan.cached, method=plan.method,
        unallocated_weight=plan.unallocated_weight, notes=plan.notes, excluded=_exclusions(plan.excluded),
        settings_hash=plan.settings_hash, allocations_hash=plan.allocations_hash, state_key=plan.state_key,
        regime=plan.regime, reserve_base=plan.reserve_base, fallback=_fallback(plan.fallback),
        expected_return=plan.expected_return, dismissed=[recommendation_to_proto(r) for r in plan.dismissed],
        steps=[step_to_proto(n, s) for n, s in enumerate(plan.steps, start=1)],
        current_score=plan.current_score, end_state_score=plan.end_state_score, improvement=plan.improvement,
        cash_required_base=plan.cash_required_base, cash_generated_base=plan.cash_generated_base,
        feasible=plan.feasible, narrative=plan.narrative, complete=plan.complete,
        sequences_generated=plan.sequences_generated, sequences_evaluated=plan.sequences_evaluated,
        config_name=plan.config_name, evaluation_mode=plan.evaluation_mode,
    )


def status_to_proto(status: BatchStatus) -> planner_pb2.PlannerStatus:
    message = planner_pb2.PlannerStatus(
        batch_key=status.batch_key, state_key=status.state_key, as_of_date=status.as_of_date, mode=status.mode,
        generated=status.generated, evaluated=status.evaluated, skipped=status.skipped, complete=status.complete,
        current_score=status.current_score, evaluated_now=status.evaluated_now,
        best_steps=[step_to_proto(n, s) for n, s in enumerate(status.best_steps, start=1)])
    if status.best_score is not None:
        message.best_score = status.best_score
    if status.updated_at is not None:
        message.updated_at.CopyFrom(to_timestamp(status.updated_at))
    return message


def _sliders(values: dict[str, float]) -> planner_pb2.Sliders:
    return planner_pb2.Sliders(**values)


def config_to_proto(stored: StoredConfig) -> planner_pb2.PlannerConfig:
    return planner_pb2.PlannerConfig(
        id=stored.id, name=stored.name, bucket_id=stored.bucket_id or "", toml=stored.toml,
        sliders=_sliders(stored.sliders), digest=stored.config.digest,
        effective=json.dumps(asdict(stored.config), sort_keys=True), created_at=to_timestamp(stored.created_at),
        updated_at=to_timestamp(stored.updated_at))


def version_to_proto(version: ConfigVersion) -> planner_pb2.PlannerConfigVersion:
    return planner_pb2.PlannerConfigVersion(name=version.name, bucket_id=version.bucket_id or "", toml=version.toml,
                                            sliders=_sliders(version.sliders),
                                            saved_at=to_timestamp(version.saved_at))


def config_update(request: planner_pb2.UpdatePlannerConfigRequest) -> ConfigUpdate:
    sliders = None
    if request.HasField("sliders"):
        sliders = {name: getattr(request.sliders, name) for name in SLIDER_NAMES if request.sliders.HasField(name)}
    return ConfigUpdate(request.id.strip(), request.bucket_id.strip(),
                        request.name if request.HasField("name") else None,
                        request.toml if request.HasField("toml") else None,
                        request.preset if request.HasField("preset") else None, sliders)


def score_to_proto(score: StoredScore) -> planner_pb2.SecurityScore:
    message = planner_pb2.SecurityScore(
        symbol=score.symbol, scored=score.scored, reason=score.reason, detail=score.detail,
        inputs_as_of=score.inputs_as_of.isoformat() if score.inputs_as_of else "",
        fundamentals_as_of=score.fundamentals_as_of.isoformat() if score.fundamentals_as_of else "",
        scored_at=to_timestamp(score.scored_at), recomputed=score.recomputed)
    if score.total is not None:
        message.total, message.quality = score.total, score.quality
    for name, group in score.groups.items():
        message.groups[name].score = group.score
        message.groups[name].components.update(group.components)
        if group.computed_at is not None:
            message.groups[name].computed_at.CopyFrom(to_timestamp(group.computed_at))
    return message


def requested_symbols(symbols) -> list[str]:
    """Each symbol once, in order; an empty one is refused naming its index."""
    for index, symbol in enumerate(symbols):
        if not symbol.strip():
            raise InvalidArgument(f"symbols[{index}]", "is empty")
    return list(dict.fromkeys(symbol.strip() for symbol in symbols))


def targets_to_proto(targets: Targets, as_of_date: str) -> planner_pb2.OptimizeResponse:
    result, context = targets.result, targets.context
    return planner_pb2.OptimizeResponse(
        target_weights=result.weights, method=result.method, fallback=_fallback(result.fallback),
        expected_return=result.expected_return, regime=context.regime.name, reserve_base=context.reserve_base,
        unallocated_weight=result.unallocated, excluded=_exclusions(targets.excluded),
        notes=targets.notes + result.notes, portfolio_hash=context.portfolio.portfolio_hash, as_of_date=as_of_date,
        blend=context.settings.optimizer_blend, target_return=context.settings.optimizer_target_return,
        correlations=[planner_pb2.Correlation(first=c.first, second=c.second, rho=c.rho)
                      for c in result.correlations],
        securities=[planner_pb2.SecurityTarget(
            symbol=s, expected_return=mu, current_weight=targets.current.get(s, 0.0),
            target_weight=result.weights.get(s, 0.0), lower=result.bounds.lower[s], upper=result.bounds.upper[s])
            for s, mu in sorted(result.expected_returns.items())],
    )


def _optional_in(field: str, request, low: float, high: float) -> float | None:
    if not request.HasField(field):
        return None
    value = getattr(request, field)
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low:g} and {high:g}, got {value!r}")
    return value


def _finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, got {value!r}")


def _first_of(field: str, key: str, seen: set[str]) -> None:
    """`key` is not empty and not in `seen` (then added); else InvalidArgument naming `field`."""
    if not key.strip():
        raise InvalidArgument(field, "is empty")
    if key in seen:
        raise InvalidArgument(field, f"{key} appears more than once")
    seen.add(key)


def given_portfolio(message: portfolio_pb2.GetPortfolioResponse) -> PortfolioView:
    """GetRecommendationsRequest.portfolio as the planner's view. Bad input names its field:
    an empty base currency or hash, a non-finite amount, an empty or repeated symbol or
    currency, a negative quantity, an invalid fill time. Whether it is current is the engine's
    check (its hash)."""
    for name in ("base_currency", "portfolio_hash"):
        if not getattr(message, name).strip():
            raise InvalidArgument(f"portfolio.{name}", "is empty")
    for name in ("total_value_base", "positions_value_base", "cash_base"):
        _finite(f"portfolio.{name}", getattr(message, name))
    symbols: set[str] = set()
    for index, position in enumerate(message.positions):
        field = f"portfolio.positions[{index}]"
        _first_of(f"{field}.symbol", position.symbol, symbols)
        if position.quantity < 0:
            raise InvalidArgument(f"{field}.quantity", f"must not be negative, got {position.quantity}")
        for name in ("average_cost", "price", "market_value", "market_value_base"):
            _finite(f"{field}.{name}", getattr(position, name))
    currencies: set[str] = set()
    for index, balance in enumerate(message.cash):
        field = f"portfolio.cash[{index}]"
        _first_of(f"{field}.currency", balance.currency, currencies)
        for name in ("amount", "amount_base"):
            _finite(f"{field}.{name}", getattr(balance, name))
    return portfolio_view(message, "portfolio.positions")


MAX_BATCH_SIZE = 100_000


class PlannerServicer(MaintenanceRpc, planner_pb2_grpc.PlannerServicer):
    def __init__(self, engine: PlannerEngine, scoring: ScoringEngine, configs: ConfigEngine,
                 maintenance: Maintenance | None = None):
        self.use_maintenance(maintenance)
        self._engine = engine
        self._scoring = scoring
        self._configs = configs

    def GetRecommendations(self, request, context):
        if not 0 <= request.max_steps <= defaults.MAX_PLAN_DEPTH:
            raise InvalidArgument("max_steps", f"must be between 0 (every step) and {defaults.MAX_PLAN_DEPTH}, "
                                               f"got {request.max_steps}")
        portfolio = given_portfolio(request.portfolio) if request.HasField("portfolio") else None
        return plan_to_proto(self._engine.recommendations(clock.now(), request.max_steps, context.time_remaining(),
                                                          portfolio))

    def CreatePlan(self, request, context):
        config_id = self._configs.get(config_id=request.config_id).id if request.config_id else ""
        return plan_to_proto(self._engine.create_plan(clock.now(), config_id))

    def RunPlannerBatch(self, request, context):
        if not 0 <= request.size <= MAX_BATCH_SIZE:
            raise InvalidArgument("size", f"must be between 0 (the configuration's batch size) and "
                                          f"{MAX_BATCH_SIZE}, got {request.size}")
        return status_to_proto(self._engine.run_batch(clock.now(), request.size))

    def GetPlannerStatus(self, request, context):
        return status_to_proto(self._engine.status())

    def ListPlannerConfigs(self, request, context):
        return planner_pb2.ListPlannerConfigsResponse(configs=[config_to_proto(c) for c in self._configs.list()])

    def GetPlannerConfig(self, request, context):
        return config_to_proto(self._configs.get(request.id.strip(), request.bucket_id.strip(), request.name))

    def UpdatePlannerConfig(self, request, context):
        return config_to_proto(self._configs.update(config_update(request), clock.now()))

    def GetPlannerConfigHistory(self, request, context):
        if not 0 <= request.limit <= MAX_HISTORY:
            raise InvalidArgument("limit", f"must be between 0 (100) and {MAX_HISTORY}, got {request.limit}")
        versions = self._configs.history(request.id.strip(), request.limit or 100)
        return planner_pb2.GetPlannerConfigHistoryResponse(versions=[version_to_proto(v) for v in versions])

    def ScoreSecurities(self, request, context):
        scores = self._scoring.score(requested_symbols(request.symbols), clock.now())
        return planner_pb2.ScoreSecuritiesResponse(scores=[score_to_proto(s) for s in scores])

    def GetScores(self, request, context):
        scores, missing = self._scoring.scores(requested_symbols(request.symbols), clock.now())
        return planner_pb2.GetScoresResponse(scores=[score_to_proto(s) for s in scores], missing=missing)

    def Optimize(self, request, context):
        blend = _optional_in("blend", request, 0.0, 1.0)
        target_return = _optional_in("target_return", request, *defaults.EXPECTED_RETURN_RANGE)
        now = clock.now()
        return targets_to_proto(self._engine.optimize(now, blend, target_return), now.date().isoformat())

    def DismissRecommendation(self, request, context):
        return recommendation_to_proto(self._engine.dismiss(parse_uuid("uuid", request.uuid), clock.now()))
