"""Price validation: bad bars are flagged (with the reason), kept, and left out of quotes,
metrics and plans.

A flag's reason starts with its kind:
- `non_positive`: a price (open, high, low, close or adjusted close) is zero or negative;
  `non_finite`: one is infinite or not a number;
- `inconsistent`: high below low, open or close outside the bar's own low-high range, or a
  negative volume;
- `no_session`: dated on a day the security's exchange had no session (exchange-calendars), e.g.
  a Monday bar labelled Sunday, which would otherwise show Monday's close before Monday's
  session; outside the calendar's span, or for an exchange without a calendar, a Saturday or
  Sunday;
- `unit_change`: the close (or adjusted close) stands 50 times or more above or below the last
  valid bar's: a change of unit (pence to pounds, cents to dollars, thousands) rather than a
  market move. Every bar of the new level is flagged for as long as it lasts, so a lasting step
  keeps the security out of quotes and metrics until its history is re-based (a sync replaces
  it from the provider, see engine.py) and a step that comes back costs only its bars;
- `gap`: more than 14 calendar days since the previous bar;
- `spike`: a one-day move of 50% or more, reversed the next day.

A flag records the date it became known. Every kind is known on the bar's own date from the
bar and the bars before it, except a spike, known once the next bar shows the move reversing.
Metrics as of a date leave out only the flags known by then, so adding later bars never changes
an earlier metric (a re-based history is a correction, not a later bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from services.data.history import Bar
from services.data.market_hours import SessionDays

# Stored flags record the rules they were computed with; a store validated with an older
# version is re-validated at start (engine.revalidate_stale). Bump on any rule change.
RULES_VERSION = 2

SPIKE_MOVE = 0.5       # a move of at least 50% in one day...
SPIKE_REVERSAL = 0.33  # ...followed by a reverse move of at least 33% the next day...
SPIKE_NET = 0.2        # ...that leaves the price within 20% of where it started
GAP_DAYS = 14          # calendar days between bars beyond which the later bar is flagged
UNIT_STEP = 50.0       # a ratio to the last valid close at or beyond this (or its inverse)
RANGE_TOLERANCE = 1e-6  # relative slack for open/close against low/high (float rounding)
REASON_LENGTH = 120     # the stored reason's column width (store.DailyBarRow.flag)


@dataclass(frozen=True)
class Flag:
    reason: str
    known_on: date


_PRICE_FIELDS = ("open", "high", "low", "close", "adj_close")


def _value_problem(bar: Bar) -> str | None:
    values = (bar.open, bar.high, bar.low, bar.close, bar.adj_close)
    if all(value is None or 0 < value < math.inf for value in values) and \
            (bar.volume is None or math.isfinite(bar.volume)):  # NaN fails every comparison
        return None  # the common case, checked fast: a sync validates thousands of bars
    prices = [(name, value) for name, value in zip(_PRICE_FIELDS, values, strict=True) if value is not None]
    infinite = [f"{name} {value}" for name, value in prices if not math.isfinite(value)]
    if infinite or (bar.volume is not None and not math.isfinite(bar.volume)):
        return "non_finite: " + ", ".join(infinite or [f"volume {bar.volume}"])
    return "non_positive: " + ", ".join(f"{name} {value:g}" for name, value in prices if not value > 0)


def _range_problem(bar: Bar) -> str | None:
    high, low = bar.high, bar.low
    if high is not None and low is not None and high < low:
        return f"inconsistent: high {high:g} below low {low:g}"
    for name, value in (("open", bar.open), ("close", bar.close)):
        if value is None:
            continue
        if high is not None and value > high * (1 + RANGE_TOLERANCE):
            return f"inconsistent: {name} {value:g} above high {high:g}"
        if low is not None and value < low * (1 - RANGE_TOLERANCE):
            return f"inconsistent: {name} {value:g} below low {low:g}"
    if bar.volume is not None and bar.volume < 0:
        return f"inconsistent: volume {bar.volume:g} below 0"
    return None


def _session_problem(day: date, sessions: SessionDays | None) -> str | None:
    if sessions is not None and sessions.first <= day <= sessions.last:
        return None if day in sessions.days else f"no_session: {day:%A} {day} was not a trading session"
    return f"no_session: {day:%A} {day} is a weekend day" if day.weekday() >= 5 else None


def _step(value: float | None, reference: float | None) -> float | None:
    """The ratio of a value to the reference when it is a unit-sized step, else None."""
    if value is None or reference is None:
        return None
    ratio = value / reference
    return ratio if ratio >= UNIT_STEP or ratio <= 1 / UNIT_STEP else None


def _unit_problem(bar: Bar, reference: Bar) -> str | None:
    ratio = bar.close / reference.close
    if 1 / UNIT_STEP < ratio < UNIT_STEP and (bar.adj_close is None or reference.adj_close is None):
        return None  # the common case, checked fast
    for name, value, before in (("close", bar.close, reference.close),
                                ("adjusted close", bar.adj_close, reference.adj_close)):
        ratio = _step(value, before)
        if ratio is not None:
            return f"unit_change: {name} {value:g} is {ratio:.4g} times the last valid bar's ({before:g} on " \
                   f"{reference.date})"
    return None


def _is_spike(before: float | None, here: float | None, after: float | None) -> tuple[float, float] | None:
    if before is None or here is None or after is None:
        return None
    move, back = here / before - 1, after / here - 1
    if abs(move) >= SPIKE_MOVE and abs(back) >= SPIKE_REVERSAL and move * back < 0 \
            and abs(after / before - 1) <= SPIKE_NET:
        return move, back
    return None


def flag_bars(bars: list[Bar], sessions: SessionDays | None = None) -> list[Flag | None]:
    """One entry per bar (chronological): its flag, or None for a valid bar. `sessions` are the
    security's exchange's trading days (market_hours.session_days); None when it has none."""
    flags: list[Flag | None] = [None] * len(bars)
    reference: Bar | None = None  # the last bar whose prices passed every check so far
    for i, bar in enumerate(bars):
        problem = _value_problem(bar) or _range_problem(bar) or _session_problem(bar.date, sessions)
        if problem is None and i and (bar.date - bars[i - 1].date).days > GAP_DAYS:
            problem = f"gap: {(bar.date - bars[i - 1].date).days} days since the previous bar"
        if problem is None and reference is not None:
            problem = _unit_problem(bar, reference)
        if problem:
            flags[i] = Flag(problem[:REASON_LENGTH], bar.date)
        else:
            reference = bar
    for i in range(1, len(bars) - 1):
        if flags[i] or flags[i - 1] or flags[i + 1]:
            continue
        before, here, after = bars[i - 1], bars[i], bars[i + 1]
        moves = _is_spike(before.close, here.close, after.close) or _is_spike(
            before.adj_close, here.adj_close, after.adj_close)
        if moves:
            flags[i] = Flag(f"spike: {moves[0]:+.0%} then {moves[1]:+.0%}", after.date)
    return flags
