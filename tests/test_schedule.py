"""The pure due-function (gateway/schedule.py): which jobs run, over a simulated week.

The expected times are written out independently of croniter: plain dates and zoneinfo.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import load
from gateway.jobs import JOBS
from gateway.schedule import ScheduleError, due, latest_fire, next_fire, parse_schedule

NEW_YORK = ZoneInfo("America/New_York")
DEFAULTS = {job.name: job.default_schedule for job in JOBS}


def ny(day: date, hour: int, minute: int = 0, fold: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK, fold=fold).astimezone(UTC)


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=n) for n in range(count)]


def simulate(schedules, start: datetime, end: datetime, step: timedelta) -> dict[str, list[datetime]]:
    """Tick from `start` to `end` (exclusive) every `step`, running what is due; job -> run times."""
    runs: dict[str, list[datetime]] = {name: [] for name in schedules}
    last: dict[str, datetime] = {}
    now = start
    while now < end:
        for item in due(schedules, last, now, since=start - timedelta(microseconds=1)):
            assert item.slot <= now
            runs[item.name].append(now)
            last[item.name] = now
        now += step
    return runs


def test_a_week_across_the_spring_change_and_a_weekend_runs_every_job_exactly_on_its_schedule():
    # Thursday 2026-03-05 to Thursday 2026-03-12: a weekend, and New York's clocks go from 02:00
    # to 03:00 on Sunday 03-08. The default zone (TRADER_JOB_TIMEZONE) is New York's here.
    zone = "America/New_York"
    schedules = {name: parse_schedule(text, zone) for name, text in DEFAULTS.items() if name != "display_ticker"}
    schedules["at_0230"] = parse_schedule("30 2 * * *", zone)  # a time that does not exist on 03-08
    start, end = datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 12, tzinfo=UTC)
    # every default schedule fires on a quarter hour: ticks on each, and halfway between (nothing runs then)
    runs = simulate(schedules, start, end, timedelta(minutes=7, seconds=30))
    week = [d for d in days(date(2026, 3, 4), 9) if start <= ny(d, 0) < end or start <= ny(d, 23) < end]

    def within(times):
        return sorted(t for t in times if start <= t < end)

    assert runs["sync_cycle"] == within(ny(d, h, m) for d in week if d.weekday() < 5
                                        for h in range(9, 17) for m in (0, 15, 30, 45))
    assert not [t for t in runs["sync_cycle"] if t.astimezone(NEW_YORK).weekday() >= 5]  # no weekend cycle
    # 09:00 New York is 14:00 UTC before the change and 13:00 UTC after it
    assert datetime(2026, 3, 6, 14, tzinfo=UTC) in runs["sync_cycle"]
    assert datetime(2026, 3, 9, 13, tzinfo=UTC) in runs["sync_cycle"]
    hours = (end - start) // timedelta(hours=1)
    assert runs["securities_data_sync"] == [start + timedelta(hours=n) for n in range(hours)]
    assert runs["planner_batch"] == [start + timedelta(minutes=30 * n) for n in range(2 * hours)]
    assert runs["maintenance"] == within(ny(d, 3) for d in week)
    assert runs["fundamentals_sync"] == within(ny(d, 2, 15) if d != date(2026, 3, 8) else ny(d, 3) for d in week)
    assert runs["dividend_reinvestment"] == within(ny(d, 3, 30) for d in week)
    assert runs["bucket_reconciliation"] == within(ny(d, 3, 45) for d in week)
    assert runs["integrity_check"] == [ny(date(2026, 3, 8), 4)]  # Sunday 04:00, EDT
    # 02:30 does not exist on 03-08: it runs at the change (03:00 EDT = 07:00 UTC), once
    assert runs["at_0230"] == within(ny(d, 2, 30) if d != date(2026, 3, 8) else datetime(2026, 3, 8, 7, tzinfo=UTC)
                                     for d in week)


def test_the_autumn_change_runs_a_fixed_hour_once_and_keeps_intervals_in_elapsed_time():
    # 2026-11-01: New York's clocks go back from 02:00 EDT to 01:00 EST; 01:30 happens twice
    schedules = {"at_0130": parse_schedule("30 1 * * *", "America/New_York"),
                 "half_hourly": parse_schedule("*/30 * * * *", "America/New_York")}
    start, end = datetime(2026, 10, 31, 12, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC)
    runs = simulate(schedules, start, end, timedelta(minutes=15))
    assert runs["at_0130"] == [ny(date(2026, 11, 1), 1, 30), ny(date(2026, 11, 2), 1, 30)]
    assert runs["at_0130"][0] == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first 01:30 (EDT)
    halves = (end - start) // timedelta(minutes=30)
    assert runs["half_hourly"] == [start + timedelta(minutes=30 * n) for n in range(halves)]


def test_the_display_ticker_runs_every_ten_seconds():
    schedules = {"display_ticker": parse_schedule(DEFAULTS["display_ticker"], "UTC")}
    start = datetime(2026, 3, 6, 12, 0, 3, tzinfo=UTC)
    runs = simulate(schedules, start, start + timedelta(minutes=2), timedelta(seconds=1))
    assert runs["display_ticker"] == [datetime(2026, 3, 6, 12, 0, 10, tzinfo=UTC) + timedelta(seconds=10 * n)
                                      for n in range(12)]


def test_missed_times_run_once_and_a_fresh_start_runs_nothing_at_once():
    schedules = {"maintenance": parse_schedule("0 3 * * *", "UTC"), "hourly": parse_schedule("0 * * * *", "UTC"),
                 "off": parse_schedule("off", "UTC")}
    now = datetime(2026, 3, 6, 12, 30, tzinfo=UTC)
    # down from 01:00 to 12:30: each missed job runs once, however many times it was due
    last = {"maintenance": datetime(2026, 3, 5, 3, tzinfo=UTC), "hourly": datetime(2026, 3, 6, 1, tzinfo=UTC)}
    found = due(schedules, last, now, since=now)
    assert [(d.name, d.slot) for d in found] == [("maintenance", datetime(2026, 3, 6, 3, tzinfo=UTC)),
                                                  ("hourly", datetime(2026, 3, 6, 12, tzinfo=UTC))]
    # never run: counted from the start; the schedule decides, not the empty history
    assert due(schedules, {}, now, since=now) == []
    assert [d.name for d in due(schedules, {}, now + timedelta(minutes=30), since=now)] == ["hourly"]
    # a job that just ran is not due again until its next time
    assert due(schedules, {"hourly": now}, now + timedelta(minutes=29), since=now) == []


def test_cron_tz_and_the_default_zone():
    athens = parse_schedule("0 3 * * *", "Europe/Athens")
    new_york = parse_schedule("CRON_TZ=America/New_York  0 3 * * *", "Europe/Athens")
    assert (athens.zone, new_york.zone, new_york.expression) == ("Europe/Athens", "America/New_York", "0 3 * * *")
    at = datetime(2026, 7, 1, 12, tzinfo=UTC)
    assert next_fire(athens, at) == datetime(2026, 7, 2, 0, tzinfo=UTC)   # 03:00 EEST
    assert next_fire(new_york, at) == datetime(2026, 7, 2, 7, tzinfo=UTC)  # 03:00 EDT
    assert latest_fire(new_york, datetime(2026, 7, 2, 7, tzinfo=UTC)) == datetime(2026, 7, 2, 7, tzinfo=UTC)
    assert parse_schedule(" OFF ", "UTC") is None


@pytest.mark.parametrize("text, problem", [
    ("61 * * * *", "not a valid cron expression"),
    ("* * * *", "expected five fields"),
    ("* * * * * * *", "expected five fields"),
    ("CRON_TZ=Mars/Base 0 3 * * *", "unknown time zone 'Mars/Base'"),
    ("CRON_TZ= 0 3 * * *", "unknown time zone"),
    ("every day", "expected five fields"),
    ("", "expected five fields"),
])
def test_bad_schedules_are_refused_saying_why(text, problem):
    with pytest.raises(ScheduleError, match=problem):
        parse_schedule(text, "UTC")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_schedule_or_a_clear_refusal(text):
    try:
        schedule = parse_schedule(text, "UTC")
    except ScheduleError as exc:
        assert str(exc)
        return
    if schedule is not None:
        now = datetime(2026, 3, 6, 12, tzinfo=UTC)
        assert latest_fire(schedule, now) <= now < next_fire(schedule, now)


def test_the_gateway_refuses_a_wrong_schedule_at_start_naming_the_variable():
    env = {"TRADER_AUTH_DISABLED": "1", "TRADER_JOB_MAINTENANCE_SCHEDULE": "0 25 * * *",
           "TRADER_JOB_TIMEZONE": "Nowhere/City"}
    with pytest.raises(Exception) as raised:
        load(env)
    text = str(raised.value)
    assert "TRADER_JOB_MAINTENANCE_SCHEDULE: '0 25 * * *': not a valid cron expression" in text
    assert "TRADER_JOB_TIMEZONE='Nowhere/City': unknown time zone" in text


@pytest.mark.parametrize("mode, replaying, scheduler", [
    ("paper", False, True), ("live", False, True), ("research", False, True), ("research", True, False),
    ("replay", True, False), ("backtest", False, False)])
def test_the_scheduler_runs_where_the_clock_is_the_wall_clock(mode, replaying, scheduler):
    env = {"TRADER_AUTH_DISABLED": "1", "TRADER_MODE": mode, "TRADER_REPLAY_AUTOSTART": "1" if replaying else "0"}
    if mode == "live":
        env.update({"TRADER_TRADERNET_API_KEY": "k", "TRADER_TRADERNET_API_SECRET": "s",
                    "TRADER_LIVE_CONFIRM": "I-ACCEPT-REAL-MONEY-RISK"})
    if mode in ("paper", "live"):
        env.pop("TRADER_REPLAY_AUTOSTART")
    assert load(env).jobs.scheduler is scheduler
    if not scheduler:
        with pytest.raises(Exception, match="TRADER_SCHEDULER: the scheduler runs the jobs on the wall clock"):
            load({**env, "TRADER_SCHEDULER": "on"})


@settings(max_examples=200, deadline=None)
@given(at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
       text=st.sampled_from(["30 3 * * *", "CRON_TZ=America/New_York 30 2 * * *", "CRON_TZ=Europe/Athens 30 3 * * 0",
                             "CRON_TZ=America/New_York */15 9-16 * * 1-5", "*/10 * * * * *"]))
def test_kept_iterators_answer_as_new_ones(at, text):
    """The kept croniter per expression (schedule._iterator) answers latest_fire and next_fire as
    a new one would, whatever it answered before, in another zone or direction."""
    schedule = parse_schedule(text, "UTC")
    same_fields_elsewhere = parse_schedule(text.split(" ", 1)[-1] if text.startswith("CRON_TZ") else text,
                                           "Asia/Kolkata")
    for other in (same_fields_elsewhere, schedule):  # leave the kept one in another state first
        latest_fire(other, at + timedelta(days=3))
        next_fire(other, at - timedelta(days=5))
    fresh_prev = croniter(schedule.expression, (at + timedelta(microseconds=1)).astimezone(ZoneInfo(schedule.zone)),
                          second_at_beginning=schedule.seconds).get_prev(datetime)
    fresh_next = croniter(schedule.expression, at.astimezone(ZoneInfo(schedule.zone)),
                          second_at_beginning=schedule.seconds).get_next(datetime)
    for fire, fresh in ((latest_fire(schedule, at), fresh_prev), (next_fire(schedule, at), fresh_next)):
        if not fresh.fold or fresh.replace(fold=0).utcoffset() == fresh.utcoffset():  # not a skipped repeat
            assert fire == fresh and fire.utcoffset() == fresh.utcoffset()
