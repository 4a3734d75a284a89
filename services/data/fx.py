"""Which FX rate applies on a day. One convention throughout (services/common/money.py): units
of a currency per 1 base unit.

Precedence, per currency: the most recent dated rate at or before the day from either history,
the ECB's euro reference rates (shipped offline, loaded at start) or the provider's synced rates
(yfinance in paper and live), the ECB's on the same date; else the configured rate
(TRADER_FX_RATES), the fallback for a currency without history. An ECB fixing applies for
REFERENCE_VALID_DAYS after its date (weekends and TARGET holidays), no longer: the shipped file
ends at the package's release and a currency the ECB stopped publishing must not keep its last
rate for ever. Nothing is interpolated: a rate is never taken from after the day.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

REFERENCE_CURRENCY = "EUR"  # the ECB's rates are units of a currency per 1 EUR
REFERENCE_VALID_DAYS = 7    # longest TARGET closure with a weekend: Good Friday to Easter Monday
# The ECB publishes the day's fixing at about 16:00 Frankfurt time: before that, the day before's.
REFERENCE_PUBLISHED = (ZoneInfo("Europe/Berlin"), time(16, 0))


def reference_day(now: datetime) -> date:
    """The date of the latest ECB fixing published at `now` (weekends aside)."""
    zone, published = REFERENCE_PUBLISHED
    local = now.astimezone(zone)
    return local.date() if local.time() >= published else _days_before(local.date(), 1)


def _days_before(day: date, days: int) -> date:
    return date.fromordinal(max(1, day.toordinal() - days))  # date.min, not OverflowError


def reference_window(day: date, now: datetime) -> tuple[date, date]:
    """(oldest, latest) dates of an ECB fixing that may apply on `day` as seen at `now`."""
    latest = min(day, reference_day(now))
    return _days_before(latest, REFERENCE_VALID_DAYS), latest


def reference_in_base(fixing: tuple[date, Mapping[str, float]] | None,
                      base: str) -> dict[str, tuple[float, date]]:
    """An ECB fixing (units per 1 EUR) as currency -> (units per 1 `base`, date), crossed via
    EUR: units of X per 1 base = (X per EUR) / (base per EUR). Empty without a fixing or when
    the fixing has no rate for the base."""
    if fixing is None:
        return {}
    day, per_eur = fixing
    per_eur = {**per_eur, REFERENCE_CURRENCY: 1.0}
    base_per_eur = per_eur.get(base)
    if not base_per_eur or base_per_eur <= 0:
        return {}
    return {currency: (rate / base_per_eur, day) for currency, rate in per_eur.items()
            if currency != base and rate > 0}


def effective_rates(configured: Mapping[str, float], stored: Mapping[str, tuple[float, date, str]],
                    reference: Mapping[str, tuple[float, date]] | None = None,
                    reference_source: str = "ECB") -> dict[str, tuple[float, str, str]]:
    """currency -> (rate, its date or "" when configured, source). `stored` holds the provider's
    latest rate at or before the day (store.fx_rates_as_of), `reference` the ECB's in base
    units (reference_in_base)."""
    rates = {currency: (rate, "", "configured") for currency, rate in configured.items()}
    dated: dict[str, tuple[float, date, str]] = dict(stored)
    for currency, (rate, day) in (reference or {}).items():
        if currency not in dated or dated[currency][1] <= day:
            dated[currency] = (rate, day, reference_source)
    rates.update({currency: (rate, day.isoformat(), source) for currency, (rate, day, source) in dated.items()})
    return rates


def rates_as_of(history: Mapping[str, tuple[tuple[date, ...], tuple[tuple[float, date, str], ...]]],
                day: date) -> dict[str, tuple[float, date, str]]:
    """currency -> (rate, its date, source) of the latest rate at or before `day`, from every
    stored rate (store.fx_rate_history): what store.fx_rates_as_of reads."""
    found = {}
    for currency, (days, entries) in history.items():
        index = bisect_right(days, day)
        if index:
            found[currency] = entries[index - 1]
    return found


def fixing_between(fixings_of_year: Callable[[int], tuple[tuple[date, ...], tuple[Mapping[str, float], ...]]],
                   oldest: date, latest: date) -> tuple[date, Mapping[str, float]] | None:
    """(date, currency -> units per 1 EUR) of the latest fixing from `oldest` to `latest`, from
    the fixings of each year (store.reference_fixings), the latest year first: what
    store.reference_fixing reads."""
    for year in range(latest.year, oldest.year - 1, -1):
        days, rates = fixings_of_year(year)
        index = bisect_right(days, latest)
        if index:
            return (days[index - 1], rates[index - 1]) if days[index - 1] >= oldest else None
    return None
