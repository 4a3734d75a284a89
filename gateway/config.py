"""Gateway configuration: the shared settings, the replay driver's and the jobs' schedules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from gateway.jobs import JOBS, REPLAY_DEFAULT, REPLAYABLE
from gateway.schedule import CronSchedule, ScheduleError, check_zone, parse_schedule
from services.common.config import CommonConfig, Env, load_common

WALL_CLOCK_MODES = ("paper", "research", "live")  # the modes whose clock is the wall clock


@dataclass(frozen=True)
class ReplayConfig:
    autostart: bool            # drive cycles from the gateway process (make run)
    start: date                # first simulated trading day
    end: date | None           # last simulated trading day (None: end of the bundled history)
    cycles_per_second: float   # pace; 0 = as fast as possible
    initial_deposit: float     # base currency, before the first simulated day
    monthly_deposit: float     # base currency, on the first trading day of each month
    max_cycles: int            # stop after this many cycles (0 = no limit)
    day_tries: int = 10        # a simulated day whose cycle is not ok is tried this often, then the replay gives up
    exchange: str = "XNYS"     # the primary exchange: its sessions are the simulated days
    minutes_before_close: float = 30.0  # each cycle runs this long before its session's close
    jobs: tuple[str, ...] = REPLAY_DEFAULT  # the jobs run on the simulated days (TRADER_REPLAY_JOBS)


@dataclass(frozen=True)
class JobsConfig:
    schedules: dict[str, CronSchedule | None]  # job -> its schedule (None: off)
    time_zone: str                             # of the schedules without CRON_TZ=
    scheduler: bool                            # the wall-clock scheduler triggers them


@dataclass(frozen=True)
class GatewayConfig:
    common: CommonConfig
    replay: ReplayConfig
    jobs: JobsConfig


def _date(env: Env, name: str, default: str | None) -> date | None:
    text = env.raw(name) or default
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        env.problems.append(f"{name}={text!r}: expected a date YYYY-MM-DD")
        return None


def load(environ: Mapping[str, str] | None = None) -> GatewayConfig:
    env = Env(environ)
    common = load_common("gateway", env=env)
    start = _date(env, "TRADER_REPLAY_START", "2018-01-02")
    end = _date(env, "TRADER_REPLAY_END", None)
    if start and end and end < start:
        env.problems.append(f"TRADER_REPLAY_END={end}: before TRADER_REPLAY_START={start}")
    replay = ReplayConfig(
        autostart=env.flag("TRADER_REPLAY_AUTOSTART", False),
        start=start or date(2018, 1, 2),
        end=end,
        cycles_per_second=env.number("TRADER_REPLAY_CYCLES_PER_SECOND", 4.0, minimum=0, maximum=1000),
        initial_deposit=env.number("TRADER_INITIAL_DEPOSIT", 10000.0, minimum=0, maximum=1e9),
        monthly_deposit=env.number("TRADER_MONTHLY_DEPOSIT", 1000.0, minimum=0, maximum=1e7),
        max_cycles=int(env.number("TRADER_REPLAY_MAX_CYCLES", 0, minimum=0, maximum=1e7)),
        day_tries=int(env.number("TRADER_REPLAY_DAY_TRIES", 10, minimum=1, maximum=1000)),
        exchange=env.text("TRADER_REPLAY_EXCHANGE", "XNYS").strip().upper(),
        minutes_before_close=env.number("TRADER_REPLAY_MINUTES_BEFORE_CLOSE", 30.0, minimum=1, maximum=600),
        jobs=replay_jobs(env),
    )
    if not (len(replay.exchange) == 4 and replay.exchange.isalpha()):
        env.problems.append(f"TRADER_REPLAY_EXCHANGE={replay.exchange!r}: expected an exchange's MIC, e.g. XNYS")
    if replay.autostart and common.mode not in ("replay", "backtest", "research"):
        env.problems.append(f"TRADER_REPLAY_AUTOSTART: the replay driver simulates time; it cannot run in "
                            f"TRADER_MODE={common.mode}")
    jobs = load_jobs(env, common.mode, replay.autostart)
    env.check()
    return GatewayConfig(common, replay, jobs)


def replay_jobs(env: Env) -> tuple[str, ...]:
    """TRADER_REPLAY_JOBS: the jobs a replay or backtest runs on its simulated days, comma-separated
    (of gateway.jobs.REPLAYABLE), or `off`; by default dividend_reinvestment,bucket_reconciliation.
    Another name is a problem naming the variable."""
    text = env.raw("TRADER_REPLAY_JOBS")
    if text is None:
        return REPLAY_DEFAULT
    if text.lower() == "off":
        return ()
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    refused = [name for name in names if name not in REPLAYABLE]
    if refused:
        env.problems.append(f"TRADER_REPLAY_JOBS: {', '.join(refused)[:200]} cannot run on simulated days; "
                            f"expected some of {', '.join(REPLAYABLE)} (comma-separated), or off (the replay's "
                            f"cycle is the sync cycle)")
    return tuple(name for name in names if name in REPLAYABLE)


def load_jobs(env: Env, mode: str, replaying: bool) -> JobsConfig:
    """TRADER_JOB_TIMEZONE (UTC), TRADER_JOB_<NAME>_SCHEDULE (each job's default, or `off`) and
    TRADER_SCHEDULER (on by default where the clock is the wall clock: paper, research, live)."""
    zone = env.text("TRADER_JOB_TIMEZONE", "UTC")
    try:
        check_zone(zone)
    except ScheduleError as exc:
        env.problems.append(f"TRADER_JOB_TIMEZONE={zone!r}: {exc}")
        zone = "UTC"
    schedules: dict[str, CronSchedule | None] = {}
    for job in JOBS:
        text = env.text(job.variable, job.default_schedule)
        try:
            schedules[job.name] = parse_schedule(text, zone)
        except ScheduleError as exc:
            env.problems.append(f"{job.variable}: {exc}")
            schedules[job.name] = None
    wall_clock = mode in WALL_CLOCK_MODES and not replaying
    scheduler = env.flag("TRADER_SCHEDULER", wall_clock)
    if scheduler and not wall_clock:
        env.problems.append(f"TRADER_SCHEDULER: the scheduler runs the jobs on the wall clock, in "
                            f"{', '.join(WALL_CLOCK_MODES)} mode without the replay driver; a replay or backtest "
                            f"runs the jobs due on each simulated day itself")
    return JobsConfig(schedules, zone, scheduler)
