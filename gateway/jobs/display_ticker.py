"""display_ticker: every 10 seconds, the display's next-actions line (value, cash, the plan's
next step) is refreshed, so it follows prices between cycles (data-display.md section 7). It
runs on the wall clock only: a replay's days refresh the display through their cycles."""

from __future__ import annotations

from datetime import datetime

from trader.display.v1 import display_pb2

from gateway.jobs.base import Job, JobPeers

NAME = "display_ticker"
DEFAULT_SCHEDULE = "*/10 * * * * *"


def run(peers: JobPeers, now: datetime) -> str:
    shown = peers.services.display.RefreshNextActions(display_pb2.RefreshNextActionsRequest())
    return f"showing {display_pb2.Pool.Name(shown.pool)}: {shown.text}"


JOB = Job(NAME, "The display's next-actions line refreshed between cycles", DEFAULT_SCHEDULE, run, simulated=False,
          announce=False)
