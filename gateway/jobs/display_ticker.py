"""display_ticker: every 10 seconds, the display's next-actions line (value, cash, the plan's
next step) is refreshed, so it follows prices between cycles (data-display.md section 7). It
runs on the wall clock only: a replay's days refresh the display through their cycles.

The display is a leaf: this job reads the valuation (portfolio GetPortfolio) and the plan's
first step (planner GetRecommendations, the cached plan of the state and day) and hands them
to it, as the cycle does. A planner that has no plan for the state (FAILED_PRECONDITION) leaves
the line without a step."""

from __future__ import annotations

from datetime import datetime

import grpc
from trader.display.v1 import display_pb2
from trader.planner.v1 import planner_pb2
from trader.portfolio.v1 import portfolio_pb2

from gateway.cycle import next_actions_request
from gateway.jobs.base import Job, JobPeers

NAME = "display_ticker"
DEFAULT_SCHEDULE = "*/10 * * * * *"


def run(peers: JobPeers, now: datetime) -> str:
    services = peers.services
    portfolio = services.portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest())
    try:
        plan = services.planner.GetRecommendations(planner_pb2.GetRecommendationsRequest(max_steps=1))
    except grpc.RpcError as exc:
        if not hasattr(exc, "code") or exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        plan = None
    shown = services.display.RefreshNextActions(next_actions_request(portfolio, plan))
    return f"showing {display_pb2.Pool.Name(shown.pool)}: {shown.text}"


JOB = Job(NAME, "The display's next-actions line refreshed between cycles", DEFAULT_SCHEDULE, run, simulated=False,
          announce=False)
