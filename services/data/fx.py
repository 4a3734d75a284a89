"""Which FX rate applies on a day: the stored history where it exists, else the configured rate."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date


def effective_rates(configured: Mapping[str, float],
                    stored: Mapping[str, tuple[float, date, str]]) -> dict[str, tuple[float, str, str]]:
    """currency -> (rate, its date or "" when configured, source). `stored` holds the latest
    stored rate at or before the day (store.fx_rates_as_of)."""
    rates = {currency: (rate, "", "configured") for currency, rate in configured.items()}
    rates.update({currency: (rate, day.isoformat(), source) for currency, (rate, day, source) in stored.items()})
    return rates
