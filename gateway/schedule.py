"""Which jobs are due: a pure function of (schedules, last runs, now), so the wall-clock
scheduler (gateway/runner.py) and the replay's simulated days run the same rule.

A schedule is a cron expression (croniter): five fields (minute hour day-of-month month
day-of-week) or six with the seconds first (`*/10 * * * * *`), read in an explicit IANA time
zone: the `CRON_TZ=<zone>` prefix of the expression (as cronie and Kubernetes CronJobs write
it), else the default zone the caller passes (TRADER_JOB_TIMEZONE). `off` means never.

The rule (anacron-like, coalescing): a job is due when one of its scheduled times falls after
its last run and at or before `now`; however many fell in between, it runs once. A job that never
ran counts from `since` (when the scheduler started), so a fresh start does not run everything
at once. Daylight saving time follows the zone: a time that does not exist on the day the clocks
go forward fires at the change (02:30 runs at 03:00), and on the day they go back a job at a
fixed hour runs once, not in both copies of the repeated hour (as Vixie cron); jobs whose hour
field is `*` or `*/n` keep their spacing in elapsed time.

No I/O, no clock reads: `now` is passed in, every instant is timezone-aware.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

OFF = "off"
ZONE_PREFIX = "CRON_TZ="
_JUST_AFTER = timedelta(microseconds=1)  # croniter's get_prev is strictly before its start
_MAX_SKIPPED_REPEATS = 4                  # repeated fall-back times in a row (a day has at most one hour)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: `expression` (five or six fields) in `zone`; `text` as configured."""

    text: str
    expression: str
    zone: str

    @property
    def seconds(self) -> bool:
        return len(self.expression.split()) == 6

    @property
    def wildcard_hour(self) -> bool:
        hour = self.expression.split()[2 if self.seconds else 1]
        return hour == "*" or hour.startswith("*/")


@dataclass(frozen=True)
class Due:
    name: str
    slot: datetime  # the latest scheduled time at or before now (in the schedule's zone)


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message says why."""


def parse_schedule(text: str, default_zone: str) -> CronSchedule | None:
    """`text` as a schedule, None for `off`. Raises ScheduleError (an unknown zone, a wrong
    number of fields, a field croniter refuses)."""
    text = " ".join(text.split())
    if text.lower() == OFF:
        return None
    zone = default_zone
    expression = text
    if text.startswith(ZONE_PREFIX):
        zone, _, expression = text[len(ZONE_PREFIX):].partition(" ")
    check_zone(zone)
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(f"{text!r}: expected five fields (minute hour day month weekday), or six with the "
                            f"seconds first, optionally after CRON_TZ=<zone>, or 'off'")
    if not croniter.is_valid(expression, second_at_beginning=len(fields) == 6):
        raise ScheduleError(f"{text!r}: not a valid cron expression")
    return CronSchedule(text, expression, zone)


def check_zone(zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {zone!r}; expected an IANA name, e.g. UTC or Europe/Athens") from None


_kept = threading.local()  # this thread's croniter of each expression (see _iterator)


def _iterator(schedule: CronSchedule, start: datetime) -> croniter:
    """A croniter of `schedule` at `start`, in its zone. One per expression and thread is kept:
    building one parses the expression, half the cost of a look-up (a replay asks every day for
    every job). Setting its current time resets everything a look-up reads (time, zone, the
    daylight-saving start), so it answers as a new one would."""
    zoned = start.astimezone(ZoneInfo(schedule.zone))
    kept = getattr(_kept, "iterators", None)
    if kept is None:
        kept = _kept.iterators = {}
    key = (schedule.expression, schedule.seconds)
    iterator = kept.get(key)
    if iterator is None:
        iterator = kept[key] = croniter(schedule.expression, zoned, second_at_beginning=schedule.seconds)
    else:
        iterator.set_current(zoned, force=True)
    return iterator


def _repeated(schedule: CronSchedule, fire: datetime) -> bool:
    """`fire` is the second copy of a wall-clock time the clocks went back over, for a job at
    a fixed hour (it ran in the first copy)."""
    if schedule.wildcard_hour or not fire.fold:
        return False
    return fire.replace(fold=0).utcoffset() != fire.utcoffset()


def _skipping_repeats(schedule: CronSchedule, step: Callable[[], datetime]) -> datetime:
    """The first of `step()`'s fires that is not a repeated fall-back time (see _repeated)."""
    fire = step()
    for _ in range(_MAX_SKIPPED_REPEATS):
        if not _repeated(schedule, fire):
            break
        fire = step()
    return fire


def latest_fire(schedule: CronSchedule, at: datetime) -> datetime:
    """The latest scheduled time at or before `at`, in the schedule's zone."""
    it = _iterator(schedule, at + _JUST_AFTER)
    return _skipping_repeats(schedule, lambda: it.get_prev(datetime))


def next_fire(schedule: CronSchedule, after: datetime) -> datetime:
    """The first scheduled time strictly after `after`, in the schedule's zone."""
    it = _iterator(schedule, after)
    return _skipping_repeats(schedule, lambda: it.get_next(datetime))


def due(schedules: Mapping[str, CronSchedule | None], last_runs: Mapping[str, datetime], now: datetime,
        since: datetime) -> list[Due]:
    """The jobs to run at `now`, oldest slot first (then in `schedules`' order).

    `schedules`: name -> schedule (None: off). `last_runs`: name -> when it last ran (or was
    triggered); a job absent from it counts from `since`. A job is due when its latest scheduled
    time at or before `now` is after its last run.
    """
    if now.tzinfo is None or since.tzinfo is None:
        raise ValueError("now and since must be timezone-aware")
    found = []
    for order, (name, schedule) in enumerate(schedules.items()):
        if schedule is None:
            continue
        last = last_runs.get(name, since)
        slot = latest_fire(schedule, now)
        if slot > last:
            found.append((slot, order, Due(name, slot)))
    return [item for _, _, item in sorted(found, key=lambda entry: entry[:2])]
