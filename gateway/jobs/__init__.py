"""The gateway's jobs (trading-portfolio-jobs.md section 7), one module each, in the order they
are listed. Only jobs whose capability exists are declared: the original's auto-deploy is the
container deployment's business, and its event loop is the sync cycle."""

from __future__ import annotations

from gateway.jobs import (
    bucket_reconciliation,
    display_ticker,
    dividend_reinvestment,
    fundamentals_sync,
    integrity_check,
    maintenance,
    planner_batch,
    securities_data_sync,
    sync_cycle,
)
from gateway.jobs.base import Job

JOBS: tuple[Job, ...] = (
    sync_cycle.JOB,
    securities_data_sync.JOB,
    fundamentals_sync.JOB,
    planner_batch.JOB,
    maintenance.JOB,
    integrity_check.JOB,
    dividend_reinvestment.JOB,
    bucket_reconciliation.JOB,
    display_ticker.JOB,
)

# The jobs a replay or backtest may run on its simulated days (TRADER_REPLAY_JOBS), and those it
# runs by default. Not the sync cycle, the price sync or the planner batch: the replay's own cycle
# is the sync cycle (it syncs the prices and plans); nor the wall-clock-only jobs.
REPLAYABLE = ("maintenance", "integrity_check", "dividend_reinvestment", "bucket_reconciliation")
REPLAY_DEFAULT = ("dividend_reinvestment", "bucket_reconciliation")
