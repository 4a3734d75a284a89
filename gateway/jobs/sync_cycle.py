"""sync_cycle: the gateway's sync cycle (README, "The sync cycle"): the broker's state, prices,
valuation, the plan, at most one trade, the display. Every 15 minutes in New York market hours
(09:00-16:45 on weekdays, so the cycle after the close books the session's fills)."""

from __future__ import annotations

from datetime import datetime

from gateway.cycle import FAILED
from gateway.jobs.base import Job, JobFailed, JobPeers

NAME = "sync_cycle"
DEFAULT_SCHEDULE = "CRON_TZ=America/New_York */15 9-16 * * 1-5"


def run(peers: JobPeers, now: datetime) -> str:
    """One cycle through the gateway's CycleRunner (one at a time with RunSyncCycle, recorded as
    a cycle run too); FAILED when a step failed."""
    result = peers.cycles.run()
    failed = [f"{step.name}: {step.detail}" for step in result.steps if step.status == FAILED]
    if failed:
        raise JobFailed(f"cycle {result.trace_id} failed: " + "; ".join(failed))
    return (f"cycle {result.trace_id}: value {result.base_currency} {result.total_value_base:,.2f}, "
            f"trade: {result.last_trade or '-'}")


JOB = Job(NAME, "The sync cycle: broker, prices, valuation, plan, at most one trade, display",
          DEFAULT_SCHEDULE, run, simulated_clock=True)
