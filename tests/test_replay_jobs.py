"""The replay driver runs the jobs of TRADER_REPLAY_JOBS due on each simulated day through the
scheduler's due-function, before that day's cycle, each at its slot time; the gateway records
them as REPLAY runs (a short `make run` replay, six processes)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from trader.data.v1 import data_pb2

from gateway.config import ReplayConfig, load
from gateway.cycle import CycleResult, StepResult
from gateway.replay import Replay, ReplayJobs
from gateway.schedule import parse_schedule
from services.common import clock
from services.common.timestamps import to_timestamp
from tests.suite import Suite

FIRST, LAST = date(2018, 1, 2), date(2018, 1, 10)  # Tuesday to the next Wednesday, a weekend between


class Sessions:
    """The data service's ListSessions: 14:30-21:00 UTC on each weekday from the request's start."""

    def ListSessions(self, request):  # noqa: N802 - the stub's name
        day, end = date.fromisoformat(request.start), date.fromisoformat(request.end)
        sessions = []
        while day <= end:
            if day.weekday() < 5:
                at = datetime(day.year, day.month, day.day, tzinfo=UTC)
                sessions.append(data_pb2.MarketSession(date=day.isoformat(),
                                                       open=to_timestamp(at + timedelta(hours=14.5)),
                                                       close=to_timestamp(at + timedelta(hours=21))))
            day += timedelta(days=1)
        return data_pb2.ListSessionsResponse(sessions=sessions)


class Services:
    """ListSessions, and the deposits' two calls (recorded in `done`)."""

    def __init__(self, done: list | None = None):
        self.data = Sessions()
        recorded = SimpleNamespace(FundPaperAccount=lambda request: None,
                                   RecordDeposit=lambda request: (done or []).append(("deposit", clock.now())))
        self.trading = self.portfolio = recorded


class Clients:
    def wait_serving(self, services, timeout_s, stopped):
        return True


def replay(schedules: dict[str, str], in_the_cycle: bool = False, first: date = FIRST, last: date = LAST,
           monthly_deposit: float = 0.0, failing: frozenset[int] = frozenset()
           ) -> tuple[list[tuple[str, datetime]], list[int]]:
    """What a replay from `first` to `last` did, in order: ("cycle", as of), (job, as of) and
    ("deposit", as of); and how many jobs went in each cycle's call (`in_the_cycle`: the jobs
    due on a day without deposits go in its cycle's call). The cycles numbered in `failing` fail."""
    done: list[tuple[str, datetime]] = []
    calls: list[int] = []

    def cycle(settle_only: bool) -> CycleResult:
        done.append(("close-out" if settle_only else "cycle", clock.now()))
        status = "FAILED" if len([name for name, _ in done if name == "cycle"]) in failing else "OK"
        return CycleResult(clock.now(), "0" * 32, [StepResult("sync", status, 1.0, "")])

    def run(name: str) -> tuple[str, str]:
        done.append((name, clock.now()))
        return ("FAILED", "the disk is full") if name == "integrity_check" else ("OK", "")

    def with_cycle(due):
        calls.append(len(due))
        outcomes = []
        for item in due:
            with clock.use_as_of(item.slot.astimezone(UTC)):
                outcomes.append(run(item.name))
        return cycle(False), outcomes

    config = ReplayConfig(autostart=False, start=first, end=last, cycles_per_second=0, initial_deposit=0,
                          monthly_deposit=monthly_deposit, max_cycles=0, day_tries=2)
    jobs = ReplayJobs({name: parse_schedule(text, "UTC") for name, text in schedules.items()}, run,
                      with_cycle if in_the_cycle else None)
    said: list[str] = []
    Replay(config, "EUR", Services(done), cycle, Clients(), threading.Event(), lambda *_: None, said.append,
           jobs).run(first)
    assert [line for line in said if "integrity_check" in line] == [
        f"{at:%Y-%m-%dT%H:%M:%SZ}  integrity_check  FAILED  the disk is full"
        for name, at in done if name == "integrity_check"]
    return done, calls


def test_jobs_run_before_the_cycle_of_each_day_at_their_slot():
    done, _ = replay({"dividend_reinvestment": "30 3 * * *", "integrity_check": "0 4 * * 0"})
    cycles = [at for name, at in done if name == "cycle"]
    assert [at.date() for at in cycles] == [date(2018, 1, d) for d in (2, 3, 4, 5, 8, 9, 10)]
    assert all(at.hour == 20 and at.minute == 30 for at in cycles)  # 30 minutes before the close
    # counted from the first cycle: the first runs come before the second day's cycle; one run
    # for the weekend's three slots, at Monday's
    dividends = [at for name, at in done if name == "dividend_reinvestment"]
    assert dividends == [datetime(2018, 1, d, 3, 30, tzinfo=UTC) for d in (3, 4, 5, 8, 9, 10)]
    assert [at for name, at in done if name == "integrity_check"] == [datetime(2018, 1, 7, 4, tzinfo=UTC)]
    # each before its day's cycle, and a failed job does not stop the replay
    order = [name for name, _ in done]
    assert order[:4] == ["cycle", "dividend_reinvestment", "cycle", "dividend_reinvestment"]
    monday = order.index("integrity_check")
    assert order[monday - 1:monday + 3] == ["cycle", "integrity_check", "dividend_reinvestment", "cycle"]
    assert order[-1] == "close-out" and [at for _, at in done] == sorted(at for _, at in done)


def test_a_job_off_never_runs():
    done, _ = replay({"bucket_reconciliation": "off"})
    assert {name for name, _ in done} == {"cycle", "close-out"}


def test_jobs_in_the_cycles_call_run_as_one_by_one():
    """RunSyncCycle's jobs_before: the same runs at the same slots in the same order as a call
    each, one call a day; a day with deposits runs its jobs on their own first (the deposits
    come between the jobs and the cycle)."""
    schedules = {"dividend_reinvestment": "30 3 * * *", "bucket_reconciliation": "45 3 * * *",
                 "integrity_check": "0 4 * * 0"}
    one_by_one, none = replay(schedules)
    together, calls = replay(schedules, in_the_cycle=True)
    assert together == one_by_one and none == []
    assert calls == [2, 2, 2, 3, 2, 2]  # Monday's call has the weekend's integrity check too
    first, last = date(2018, 1, 29), date(2018, 2, 2)  # 1 February: the month's deposit
    one_by_one, _ = replay(schedules, first=first, last=last, monthly_deposit=100.0)
    together, calls = replay(schedules, in_the_cycle=True, first=first, last=last, monthly_deposit=100.0)
    assert together == one_by_one and calls == [2, 2, 2]  # 30, 31 January; 2 February
    names = [name for name, _ in together]
    february = names.index("deposit")
    assert names[february - 2:february + 2] == ["dividend_reinvestment", "bucket_reconciliation", "deposit", "cycle"]


def test_a_retried_day_does_not_run_its_jobs_again():
    """The first day with jobs: its cycle fails; the retry runs the cycle only."""
    done, calls = replay({"dividend_reinvestment": "30 3 * * *"}, in_the_cycle=True, failing=frozenset({2}))
    names = [name for name, _ in done]
    # day 1; day 2: the job and the cycle, which failed, then the cycle again; day 3: job, cycle
    assert names[:6] == ["cycle", "dividend_reinvestment", "cycle", "cycle", "dividend_reinvestment", "cycle"]
    assert calls == [1] * 6 and names.count("dividend_reinvestment") == 6


def test_the_replay_jobs_setting():
    base = {"TRADER_AUTH_DISABLED": "1", "TRADER_MODE": "replay"}
    assert load(base).replay.jobs == ("dividend_reinvestment", "bucket_reconciliation")
    assert load({**base, "TRADER_REPLAY_JOBS": " maintenance,integrity_check "}).replay.jobs == (
        "maintenance", "integrity_check")
    assert load({**base, "TRADER_REPLAY_JOBS": "off"}).replay.jobs == ()
    for refused in ("sync_cycle", "display_ticker", "planner_batch", "nope"):
        with pytest.raises(Exception, match=f"TRADER_REPLAY_JOBS: {refused} cannot run on simulated days"):
            load({**base, "TRADER_REPLAY_JOBS": f"maintenance,{refused}"})


@pytest.mark.e2e
def test_make_runs_replay_records_the_jobs_on_their_simulated_days(tmp_path):
    suite = Suite(tmp_path, {"TRADER_MODE": "replay", "TRADER_REPLAY_AUTOSTART": "1",
                             "TRADER_REPLAY_START": FIRST.isoformat(), "TRADER_REPLAY_END": LAST.isoformat(),
                             "TRADER_REPLAY_CYCLES_PER_SECOND": "0",
                             "TRADER_REPLAY_JOBS": "dividend_reinvestment,bucket_reconciliation,integrity_check"})
    suite.start()
    try:
        suite.processes["gateway"].wait(timeout=300)  # the gateway stops once the replay has ended
    finally:
        suite.terminate()
    assert "replay reached the end of the history" in suite.log("gateway"), suite.log("gateway")[-3000:]
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        runs = db.execute("SELECT job, status, \"trigger\", as_of, simulated FROM job_runs ORDER BY id").fetchall()
    assert {(trigger, simulated) for _, _, trigger, _, simulated in runs} == {("REPLAY", 1)}
    assert all(status == "OK" for _, status, *_ in runs), runs
    by_job = {job: [as_of[:16] for name, _, _, as_of, _ in runs if name == job] for job in
              ("dividend_reinvestment", "bucket_reconciliation", "integrity_check")}
    days = (3, 4, 5, 8, 9, 10)
    assert by_job["dividend_reinvestment"] == [f"2018-01-{d:02d} 03:30" for d in days]
    assert by_job["bucket_reconciliation"] == [f"2018-01-{d:02d} 03:45" for d in days]
    assert by_job["integrity_check"] == ["2018-01-07 04:00"]


def test_list_jobs_says_who_triggers_the_jobs():
    from gateway.__main__ import scheduler_name

    replaying = {"TRADER_AUTH_DISABLED": "1", "TRADER_MODE": "replay", "TRADER_REPLAY_AUTOSTART": "1"}
    assert scheduler_name(load(replaying)) == "simulated days"
    assert scheduler_name(load({**replaying, "TRADER_REPLAY_JOBS": "off"})) == "off"
    assert scheduler_name(load({**replaying, "TRADER_REPLAY_AUTOSTART": "0"})) == "off"  # trader backtest drives
    assert scheduler_name(load({"TRADER_AUTH_DISABLED": "1", "TRADER_MODE": "research"})) == "wall clock"
