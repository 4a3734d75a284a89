"""The one FX convention (decisions.md rule 1), used by every service that converts money.

A rate is "units of the quote currency per 1 unit of the base currency": with base EUR and
USD 1.08, 1 EUR = 1.08 USD, so USD -> EUR divides by the rate and EUR -> USD multiplies.
Nothing else in the code base converts currency. A missing rate is refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.common.errors import FailedPrecondition


def _rate(currency: str, base: str, rates: Mapping[str, float]) -> float:
    rate = rates.get(currency)
    if rate is None or not rate > 0:
        raise FailedPrecondition("fx_rate_missing", f"no exchange rate for {currency} (base {base})")
    return rate


def to_base(amount: float, currency: str, base: str, rates: Mapping[str, float]) -> float:
    return amount if currency == base else amount / _rate(currency, base, rates)


def from_base(amount_base: float, currency: str, base: str, rates: Mapping[str, float]) -> float:
    return amount_base if currency == base else amount_base * _rate(currency, base, rates)


def convert(amount: float, from_currency: str, to_currency: str, base: str,
            rates: Mapping[str, float]) -> float:
    if from_currency == to_currency:
        return amount
    return from_base(to_base(amount, from_currency, base, rates), to_currency, base, rates)
