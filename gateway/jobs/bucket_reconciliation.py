"""bucket_reconciliation: daily at 03:45, the buckets' virtual cash against the broker's, per
currency (decisions.md rule 17): the portfolio's ReconcileBuckets corrects tiny differences
into core and posts an alert on the display's error pool otherwise. An alert makes the run
FAILED, so it shows in ListJobs and the job's history."""

from __future__ import annotations

from datetime import datetime

from trader.portfolio.v1 import portfolio_pb2

from gateway.jobs.base import Job, JobFailed, JobPeers

NAME = "bucket_reconciliation"
DEFAULT_SCHEDULE = "45 3 * * *"


def run(peers: JobPeers, now: datetime) -> str:
    reply = peers.services.portfolio.ReconcileBuckets(portfolio_pb2.ReconcileBucketsRequest())
    said = [f"{c.currency} {c.action} (buckets {c.virtual_total:,.2f}, broker {c.broker:,.2f})"
            for c in reply.currencies]
    text = "; ".join(said) or "no cash to reconcile"
    if reply.alerted:
        raise JobFailed(f"the buckets disagree with the broker: {text}")
    return text


JOB = Job(NAME, "Buckets' virtual cash against the broker's, per currency", DEFAULT_SCHEDULE, run,
          simulated_clock=True)
