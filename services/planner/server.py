"""gRPC servicer for trader.planner.v1.Planner: proto <-> domain, nothing else."""

from __future__ import annotations

from trader.planner.v1 import planner_pb2, planner_pb2_grpc

from services.common import clock
from services.planner.engine import Plan, PlannerEngine


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


class PlannerServicer(planner_pb2_grpc.PlannerServicer):
    def __init__(self, engine: PlannerEngine):
        self._engine = engine

    def GetRecommendations(self, request, context):
        return plan_to_proto(self._engine.recommendations(clock.now()))
