"""Fundamentals: the fields the planner's scoring uses, their units and checks, the import file
formats, and the reading of a provider's Yahoo-style `info`. Pure: text and dicts in, plain
data out.

Units (the store's, and the GetFundamentals reply's): trailing and forward P/E, debt/equity and
the current ratio are ratios (a debt/equity of 1.5 is 150%); profit margin, payout ratio and
the dividend yields are fractions (0.03 is 3%); the target mean price is in the security's
currency; the recommendation key is one of RECOMMENDATIONS.

Yahoo's units differ and have changed (`from_yahoo_info` normalises them):
- `debtToEquity` is in percent (150.0 = 1.5);
- `fiveYearAvgDividendYield` is in percent (3.1 = 3.1%);
- `dividendYield` is a fraction in older replies and percent in current ones (Yahoo's reply
  changed; yfinance passes it through). It is read as whichever of the two agrees with the yield implied by
  `dividendRate` / price (else `trailingAnnualDividendYield`, always a fraction); with neither
  to compare against, as percent (the reply of the pinned yfinance 1.7);
- `recommendationKey` is snake case (`strong_buy`), `none` when no analyst covers it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from services.common.errors import InvalidArgument

NUMBER_FIELDS = ("trailing_pe", "forward_pe", "profit_margin", "debt_to_equity", "current_ratio", "dividend_yield",
                 "payout_ratio", "five_year_avg_dividend_yield", "target_mean_price")
TEXT_FIELDS = ("recommendation_key",)
FIELDS = NUMBER_FIELDS + TEXT_FIELDS
RECOMMENDATIONS = ("strong_buy", "buy", "hold", "underperform", "sell", "strong_sell")
MAX_ROWS = 100_000
IMPORT_SOURCE = "import"

Value = float | str | None  # None: observed as unknown (the provider no longer reports it)


@dataclass(frozen=True)
class Observation:
    """One field of one security observed on a day (from an import or a provider)."""

    symbol: str
    field: str
    observed_on: date
    value: Value
    where: str = ""  # for error messages: "line 3" or "[2]"


class FieldHistory(NamedTuple):
    """One field of one security as stored: the days it was observed on, ascending, and on each
    the value (None: observed as unknown) and its source."""

    days: tuple[date, ...]
    entries: tuple[tuple[Value, str], ...]


def as_of(history: Mapping[int, Mapping[str, FieldHistory]], security_ids: list[int],
          day: date) -> dict[int, dict[str, tuple[float | str, date, str]]]:
    """security id -> field -> (value, observed on, source): each field's latest observation at
    or before `day` (none later: no lookahead); a field last observed as unknown is left out,
    and so is a security without any."""
    found: dict[int, dict[str, tuple[float | str, date, str]]] = {}
    for security_id in security_ids:
        for field, observed in history.get(security_id, {}).items():
            latest = bisect_right(observed.days, day) - 1
            if latest >= 0 and observed.entries[latest][0] is not None:
                value, source = observed.entries[latest]
                found.setdefault(security_id, {})[field] = (value, observed.days[latest], source)
    return found


# --- checks ---

def canonical_recommendation(text: str) -> str | None:
    """`strongBuy`, `Strong Buy`, `STRONG_BUY` -> `strong_buy`; empty or `none` -> None."""
    key = text.strip()
    if not key.isupper():
        key = "".join(f"_{c}" if c.isupper() else c for c in key)
    words = key.lower().replace("-", " ").replace("_", " ").split()
    canonical = "_".join(words)
    return None if canonical in ("", "none") else canonical


def check_value(field: str, value: object, where: str) -> float | str:
    """The value in the store's form, or InvalidArgument naming the place and field."""
    name = f"{where}: {field}" if where else field
    if field in TEXT_FIELDS:
        key = canonical_recommendation(str(value))
        if key not in RECOMMENDATIONS:
            raise InvalidArgument(name, f"{value!r} is not one of {', '.join(RECOMMENDATIONS)}")
        return key
    if isinstance(value, bool):
        raise InvalidArgument(name, f"not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(name, f"not a number: {value!r}") from exc
    if not math.isfinite(number):
        raise InvalidArgument(name, f"not a finite number: {value!r}")
    if field in ("dividend_yield", "five_year_avg_dividend_yield") and not 0 <= number < 1:
        raise InvalidArgument(name, f"{number:g} is not a fraction in [0, 1) (0.03 is 3%; is it in percent?)")
    if field in ("payout_ratio", "current_ratio") and number < 0:
        raise InvalidArgument(name, f"{number:g} is negative")
    if field == "target_mean_price" and number <= 0:
        raise InvalidArgument(name, f"{number:g} is not a positive price")
    return number


def _day(text: object, where: str) -> date:
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError as exc:
        raise InvalidArgument(f"{where}: date", f"not YYYY-MM-DD: {text!r}") from exc


def _symbol(text: object, where: str) -> str:
    symbol = str(text or "").strip()
    if not symbol or len(symbol) > 32:
        raise InvalidArgument(f"{where}: symbol", "is required (at most 32 characters)")
    return symbol


# --- import files ---

def parse_import(content: str, file_format: str = "") -> list[Observation]:
    """Observations from an import file: `csv` (a header `symbol,date,<field>...`, one row per
    security and day, an empty cell not observed) or `json` (a list of objects with `symbol`,
    `date` and fields; null not observed). An empty `file_format` is told by the first
    character. Any problem refuses the whole file, naming the place and field."""
    if not content.strip():
        raise InvalidArgument("content", "is empty")
    kind = (file_format or "").strip().lower() or ("json" if content.lstrip()[0] in "[{" else "csv")
    if kind == "csv":
        observations = _parse_csv(content)
    elif kind == "json":
        observations = _parse_json(content)
    else:
        raise InvalidArgument("format", f"{file_format!r} is not csv or json")
    if not observations:
        raise InvalidArgument("content", "holds no observation")
    seen: dict[tuple[str, str, date], str] = {}
    for item in observations:
        key = (item.symbol, item.field, item.observed_on)
        if key in seen:
            raise InvalidArgument(f"{item.where}: {item.field}", f"{item.symbol} on {item.observed_on} is also "
                                                                 f"given at {seen[key]}")
        seen[key] = item.where
    return observations


def _parse_csv(content: str) -> list[Observation]:
    try:
        return _read_csv(content)
    except csv.Error as exc:  # a NUL byte, a field over the csv module's size limit, ...
        raise InvalidArgument("content", f"not readable as CSV: {exc}") from exc


def _read_csv(content: str) -> list[Observation]:
    reader = csv.DictReader(io.StringIO(content.strip()))
    header = [(name or "").strip() for name in (reader.fieldnames or [])]
    for required in ("symbol", "date"):
        if required not in header:
            raise InvalidArgument("content", f"the CSV header has no {required!r} column; expected symbol,date,"
                                             f"and any of {','.join(FIELDS)}")
    unknown = [name for name in header if name not in FIELDS + ("symbol", "date")]
    if unknown:
        raise InvalidArgument("content", f"unknown column(s) {', '.join(map(repr, unknown))}; fields are "
                                         f"{', '.join(FIELDS)}")
    reader.fieldnames = header
    observations = []
    for line, row in enumerate(reader, start=2):
        where = f"line {line}"
        if line - 1 > MAX_ROWS:
            raise InvalidArgument("content", f"more than {MAX_ROWS} rows")
        if None in row or any(row.get(name) is None for name in header):
            raise InvalidArgument(where, f"expected {len(header)} columns")
        symbol, day = _symbol(row["symbol"], where), _day(row["date"], where)
        observations += [Observation(symbol, name, day, check_value(name, row[name].strip(), where), where)
                         for name in header if name in FIELDS and row[name].strip()]
    return observations


def _parse_json(content: str) -> list[Observation]:
    try:
        items = json.loads(content)
    except json.JSONDecodeError as exc:
        raise InvalidArgument("content", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except (RecursionError, ValueError) as exc:  # nested too deep; an integer too long to read
        raise InvalidArgument("content", f"not readable as JSON: {type(exc).__name__}") from exc
    if not isinstance(items, list):
        raise InvalidArgument("content", "the JSON must be a list of objects")
    if len(items) > MAX_ROWS:
        raise InvalidArgument("content", f"more than {MAX_ROWS} objects")
    observations = []
    for index, item in enumerate(items):
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise InvalidArgument(where, "is not an object")
        unknown = [key for key in item if key not in FIELDS + ("symbol", "date")]
        if unknown:
            raise InvalidArgument(f"{where}: {unknown[0]}", f"unknown field; fields are {', '.join(FIELDS)}")
        symbol, day = _symbol(item.get("symbol"), where), _day(item.get("date"), where)
        observations += [Observation(symbol, name, day, check_value(name, value, where), where)
                         for name, value in item.items() if name in FIELDS and value is not None]
    return observations


# --- a provider's info (Yahoo field names) ---

def _number(info: Mapping, key: str) -> float | None:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def dividend_yield_fraction(info: Mapping) -> float | None:
    """Yahoo's `dividendYield` as a fraction, whichever unit the reply used (module docstring)."""
    raw = _number(info, "dividendYield")
    if raw is None or raw < 0:
        return None
    rate, price = _number(info, "dividendRate"), _number(info, "currentPrice") or _number(info, "regularMarketPrice")
    implied = rate / price if rate is not None and price and price > 0 and rate > 0 else None
    implied = implied or _number(info, "trailingAnnualDividendYield")
    if raw == 0:
        return 0.0
    if implied and implied > 0:  # the reading closer to the implied yield (by ratio) wins
        return raw if abs(math.log(raw / implied)) <= abs(math.log(raw / 100 / implied)) else raw / 100
    return raw / 100


def from_yahoo_info(info: Mapping, currency: str) -> dict[str, float | str | None]:
    """The fields a provider's info holds, in the store's units; a field it lacks or holds in a
    form that fails the checks is None. The target price counts only in the security's currency."""
    raw: dict[str, object] = {
        "trailing_pe": _number(info, "trailingPE"), "forward_pe": _number(info, "forwardPE"),
        "profit_margin": _number(info, "profitMargins"), "current_ratio": _number(info, "currentRatio"),
        "payout_ratio": _number(info, "payoutRatio"), "dividend_yield": dividend_yield_fraction(info),
        "target_mean_price": _number(info, "targetMeanPrice"),
    }
    debt = _number(info, "debtToEquity")
    raw["debt_to_equity"] = None if debt is None else debt / 100
    five_year = _number(info, "fiveYearAvgDividendYield")
    raw["five_year_avg_dividend_yield"] = None if five_year is None else five_year / 100
    quoted_in = info.get("currency")
    if isinstance(quoted_in, str) and quoted_in and quoted_in != currency:
        raw["target_mean_price"] = None  # e.g. GBp (pence) against GBP
    key = info.get("recommendationKey")
    raw["recommendation_key"] = canonical_recommendation(key) if isinstance(key, str) else None
    values: dict[str, float | str | None] = {}
    for name in FIELDS:
        try:
            values[name] = None if raw[name] is None else check_value(name, raw[name], "")
        except InvalidArgument:
            values[name] = None
    return values
