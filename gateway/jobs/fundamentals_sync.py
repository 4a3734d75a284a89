"""fundamentals_sync: daily, the fundamentals of every active equity from the provider (the
original read them within its securities data sync, once a security's data was 24 hours old).
A provider knows only today's values, so this job runs on the wall clock only, never on a
replay's simulated days."""

from __future__ import annotations

from datetime import datetime

from trader.data.v1 import data_pb2

from gateway.jobs.base import Job, JobPeers, listed

NAME = "fundamentals_sync"
DEFAULT_SCHEDULE = "15 2 * * *"


def run(peers: JobPeers, now: datetime) -> str:
    reply = peers.services.data.SyncFundamentals(data_pb2.SyncFundamentalsRequest())
    missing = f"; no info for {listed(list(reply.unavailable))}" if reply.unavailable else ""
    return (f"{reply.provider} on {reply.observed_on}: {reply.observations_added} values added, "
            f"{reply.observations_updated} updated{missing}")


JOB = Job(NAME, "Fundamentals of every active equity from the provider", DEFAULT_SCHEDULE, run, simulated=False)
