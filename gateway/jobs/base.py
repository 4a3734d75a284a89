"""What a job is, what it gets, and when its health flips (trading-portfolio-jobs.md section 7).

A job is a small module with a name, a default schedule (a cron expression, gateway/schedule.py)
and `run(peers, now) -> detail`: it returns one line saying what it did, or raises (JobFailed
when it ran but could not do its job, a gRPC error from a peer, anything else: a bug). The
runner (gateway/runner.py) records every run, one at a time per job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from gateway.cycle import Services
    from gateway.server import CycleRunner
    from services.common.maintenance import Maintenance

FAILURES_TO_FLIP = 5                 # the original: unhealthy after 5 failures within an hour
FAILURE_WINDOW = timedelta(hours=1)
REPLY_LIST_ITEMS = 5                 # items a detail line lists before "and N more"


class JobFailed(Exception):
    """The job ran but could not do its job; the message says why (the run's detail)."""


@dataclass
class JobPeers:
    """What a job may use: the five services' stubs, the gateway's cycle, its own database's
    maintenance (None where the gateway was built without one)."""

    services: Services
    cycles: CycleRunner
    maintenance: Maintenance | None = None


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    default_schedule: str                       # cron; "off" for none
    run: Callable[[JobPeers, datetime], str]
    simulated: bool = True                      # also runs on a replay's simulated days
    announce: bool = True                       # the scheduler prints a line per run (else: failures only)
    # It acts on what lives on simulated time in replay and backtest mode (the book, its prices):
    # there RunJob runs it only at the caller's simulated instant, never at the wall clock.
    simulated_clock: bool = False

    @property
    def variable(self) -> str:
        """The environment variable that sets its schedule."""
        return f"TRADER_JOB_{self.name.upper()}_SCHEDULE"

    @property
    def health_service(self) -> str:
        """Its name in grpc.health.v1 (Check, Watch, List)."""
        return f"job/{self.name}"


def failing(failures: Sequence[datetime], last_status: str | None, now: datetime) -> bool:
    """A job is failing (health NOT_SERVING) while it failed FAILURES_TO_FLIP times or more in
    the hour before `now` and its latest finished run failed too: one success restores it, and
    so does the hour passing."""
    recent = sum(1 for at in failures if now - FAILURE_WINDOW < at <= now)
    return recent >= FAILURES_TO_FLIP and last_status == "FAILED"


def rpc_problem(exc: grpc.RpcError) -> str:
    """`CODE: details` of a peer's error."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{code.name if code is not None else 'UNKNOWN'}: {details}"


def is_refusal(exc: Exception, *codes: grpc.StatusCode) -> bool:
    """A peer's refusal with one of `codes` (FAILED_PRECONDITION by default)."""
    return (isinstance(exc, grpc.RpcError) and hasattr(exc, "code")
            and exc.code() in (codes or (grpc.StatusCode.FAILED_PRECONDITION,)))


def listed(items: Sequence[str]) -> str:
    """`a, b, c` with at most REPLY_LIST_ITEMS items, then `and N more`."""
    shown = ", ".join(items[:REPLY_LIST_ITEMS])
    more = len(items) - REPLY_LIST_ITEMS
    return shown + (f" and {more} more" if more > 0 else "")
