"""gRPC servicer for trader.planner.v1.Planner: proto <-> domain, nothing else."""

from __future__ import annotations

from trader.planner.v1 import planner_pb2, planner_pb2_grpc

from services.common import clock
from services.common.errors import InvalidArgument
from services.common.timestamps import to_timestamp
from services.planner.engine import Plan, PlannerEngine
from services.planner.scoring_engine import ScoringEngine, StoredScore


def plan_to_proto(plan: Plan) -> planner_pb2.GetRecommendationsResponse:
    response = planner_pb2.GetRecommendationsResponse(
        plan_id=plan.plan_id, portfolio_hash=plan.portfolio_hash, as_of_date=plan.as_of_date,
        target_weights=plan.target_weights, cached=plan.cached, method=plan.method,
        unallocated_weight=plan.unallocated_weight, notes=plan.notes,
        excluded=[planner_pb2.Exclusion(symbol=e.symbol, reason=e.reason, detail=e.detail) for e in plan.excluded],
    )
    for number, step in enumerate(plan.steps, start=1):
        response.steps.add(step=number, symbol=step.symbol, side=planner_pb2.Side.Value(step.side),
                           quantity=step.quantity, estimated_price=step.estimated_price, currency=step.currency,
                           estimated_value_base=step.estimated_value_base, reason=step.reason)
    return response


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


class PlannerServicer(planner_pb2_grpc.PlannerServicer):
    def __init__(self, engine: PlannerEngine, scoring: ScoringEngine | None = None):
        self._engine = engine
        self._scoring = scoring

    def GetRecommendations(self, request, context):
        return plan_to_proto(self._engine.recommendations(clock.now()))

    def ScoreSecurities(self, request, context):
        scores = self._scoring.score(requested_symbols(request.symbols), clock.now())
        return planner_pb2.ScoreSecuritiesResponse(scores=[score_to_proto(s) for s in scores])

    def GetScores(self, request, context):
        scores, missing = self._scoring.scores(requested_symbols(request.symbols), clock.now())
        return planner_pb2.GetScoresResponse(scores=[score_to_proto(s) for s in scores], missing=missing)
