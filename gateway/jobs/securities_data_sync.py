"""securities_data_sync: hourly, the market data of every active security and the scores the
planner keeps from it (the original's securities data sync and score refresh,
data-display.md section 4): the data service's SyncPrices (each market's new bars; all of them
once a day), then the planner's ScoreSecurities."""

from __future__ import annotations

from datetime import datetime

from trader.data.v1 import data_pb2
from trader.planner.v1 import planner_pb2

from gateway.jobs.base import Job, JobPeers

NAME = "securities_data_sync"
DEFAULT_SCHEDULE = "0 * * * *"


def run(peers: JobPeers, now: datetime) -> str:
    prices = peers.services.data.SyncPrices(data_pb2.SyncPricesRequest())
    scores = peers.services.planner.ScoreSecurities(planner_pb2.ScoreSecuritiesRequest())
    return (f"{prices.provider}: {prices.bars_added} bars added, {prices.bars_updated} updated, latest "
            f"{prices.latest_bar_date or '-'}; {len(scores.scores)} securities scored")


JOB = Job(NAME, "Prices of every active security, then the planner's scores", DEFAULT_SCHEDULE, run,
          simulated_clock=True)
