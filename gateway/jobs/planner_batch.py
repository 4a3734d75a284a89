"""planner_batch: every 30 minutes, the planner evaluates the next batch of the current
state's sequences (RunPlannerBatch with the configuration's batch size), so a cycle finds its
plan complete (trading-portfolio-jobs.md section 7, the scheduled mode)."""

from __future__ import annotations

from datetime import datetime

from trader.planner.v1 import planner_pb2

from gateway.jobs.base import Job, JobPeers, is_refusal, rpc_problem

NAME = "planner_batch"
DEFAULT_SCHEDULE = "*/30 * * * *"


def run(peers: JobPeers, now: datetime) -> str:
    try:
        status = peers.services.planner.RunPlannerBatch(planner_pb2.RunPlannerBatchRequest())
    except Exception as exc:
        if is_refusal(exc):  # no state to plan (e.g. too little history): an answer, not a fault
            return f"nothing to evaluate: {rpc_problem(exc)}"
        raise
    best = f", best score {status.best_score:.1f}" if status.HasField("best_score") else ""
    return (f"batch {status.batch_key or '-'} ({status.mode}): {status.evaluated_now} evaluated now, "
            f"{status.evaluated} of {status.generated}{', complete' if status.complete else ''}{best}")


JOB = Job(NAME, "The planner evaluates the next batch of the current state's sequences", DEFAULT_SCHEDULE, run)
