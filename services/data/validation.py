"""Price validation: bad bars are flagged (with the reason), kept, and left out of metrics.

A flag records the date it became known. A non-positive or inconsistent bar is known bad on its
own date; a one-day spike only once the next bar shows the move reversing. Metrics as of a date
leave out only the flags known by then, so adding later bars never changes an earlier metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.data.history import Bar

SPIKE_MOVE = 0.5       # a move of at least 50% in one day...
SPIKE_REVERSAL = 0.33  # ...followed by a reverse move of at least 33% the next day...
SPIKE_NET = 0.2        # ...that leaves the price within 20% of where it started
GAP_DAYS = 14          # calendar days between bars beyond which the later bar is flagged


@dataclass(frozen=True)
class Flag:
    reason: str
    known_on: date


def _ohlc_problem(bar: Bar) -> str | None:
    values = {"close": bar.close, "open": bar.open, "high": bar.high, "low": bar.low}
    bad = [f"{name} {value:g}" for name, value in values.items() if value is not None and not value > 0]
    if bad:
        return "non_positive: " + ", ".join(bad)
    if bar.high is not None and bar.low is not None and bar.high < bar.low:
        return f"inconsistent: high {bar.high:g} below low {bar.low:g}"
    return None


def flag_bars(bars: list[Bar]) -> list[Flag | None]:
    """One entry per bar (chronological): its flag, or None for a valid bar."""
    flags: list[Flag | None] = [None] * len(bars)
    for i, bar in enumerate(bars):
        problem = _ohlc_problem(bar)
        if problem:
            flags[i] = Flag(problem, bar.date)
            continue
        if i and (bar.date - bars[i - 1].date).days > GAP_DAYS:
            flags[i] = Flag(f"gap: {(bar.date - bars[i - 1].date).days} days since the previous bar", bar.date)
    for i in range(1, len(bars) - 1):
        if flags[i] or flags[i - 1] or flags[i + 1]:
            continue
        before, here, after = bars[i - 1].close, bars[i].close, bars[i + 1].close
        move, back = here / before - 1, after / here - 1
        if abs(move) >= SPIKE_MOVE and abs(back) >= SPIKE_REVERSAL and move * back < 0 \
                and abs(after / before - 1) <= SPIKE_NET:
            flags[i] = Flag(f"spike: {move:+.0%} then {back:+.0%}", bars[i + 1].date)
    return flags
