"""integrity_check: weekly, Sunday 04:00, `PRAGMA integrity_check` and `foreign_key_check` of
every service's database (amcheck on PostgreSQL where installed), through each service's
RunMaintenance in turn (data-display.md section 8: the original's weekly check)."""

from __future__ import annotations

from datetime import datetime

from gateway.jobs.base import Job, JobPeers
from gateway.jobs.maintenance import maintain_every_service

NAME = "integrity_check"
DEFAULT_SCHEDULE = "0 4 * * 0"


def run(peers: JobPeers, now: datetime) -> str:
    return maintain_every_service(peers, ("integrity_check",), now)


JOB = Job(NAME, "Every service's database checked for corruption", DEFAULT_SCHEDULE, run)
