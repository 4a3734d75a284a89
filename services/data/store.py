"""Market-data storage: securities, daily bars keyed by (security, date) with validation flags,
an indicator cache, FX rates with history (the provider's, per base unit) and the ECB's euro
reference rates (per 1 EUR, as published), and fundamentals observed per field and day."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database, UtcDateTime
from services.common.maintenance import RetentionRule
from services.common.migrations import Schema
from services.data.bar_cache import ALL, touch
from services.data.fundamentals import FieldHistory
from services.data.history import Bar
from services.data.market_hours import SessionDays
from services.data.migrations import LEGACY_STEPS
from services.data.universe import Security, select_securities
from services.data.validation import RULES_VERSION, flag_bars


class Base(DeclarativeBase):
    pass


class SecurityRow(Base):
    __tablename__ = "securities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    exchange: Mapped[str] = mapped_column(String(8))
    country: Mapped[str] = mapped_column(String(64))
    sector: Mapped[str] = mapped_column(String(100))
    industry: Mapped[str] = mapped_column(String(100))
    lot_size: Mapped[int] = mapped_column(BigInteger)  # int64 in the contract
    active: Mapped[bool] = mapped_column(Boolean)
    allow_buy: Mapped[bool] = mapped_column(Boolean)
    allow_sell: Mapped[bool] = mapped_column(Boolean)
    kind: Mapped[str] = mapped_column(String(16))
    isin: Mapped[str] = mapped_column(String(12), default="", index=True)
    min_target: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_target: Mapped[float | None] = mapped_column(Float, nullable=True)
    bucket: Mapped[str] = mapped_column(String(64), default="core")
    yahoo_symbol: Mapped[str] = mapped_column(String(32), default="")
    # the validation rules (validation.RULES_VERSION) the stored flags were computed with
    validated_with: Mapped[int] = mapped_column(Integer, default=0)

    def to_domain(self) -> Security:
        return Security(**{f: getattr(self, f) for f in Security.__dataclass_fields__})


class DailyBarRow(Base):
    __tablename__ = "daily_bars"
    security_id: Mapped[int] = mapped_column(ForeignKey("securities.id"), primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    open: Mapped[float | None] = mapped_column(Float, nullable=True)
    high: Mapped[float | None] = mapped_column(Float, nullable=True)
    low: Mapped[float | None] = mapped_column(Float, nullable=True)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float | None] = mapped_column(Float, nullable=True)
    adj_close: Mapped[float | None] = mapped_column(Float, nullable=True)
    flag: Mapped[str | None] = mapped_column(String(120), nullable=True)
    flag_known_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class IndicatorCacheRow(Base):
    __tablename__ = "indicator_cache"
    security_id: Mapped[int] = mapped_column(ForeignKey("securities.id"), primary_key=True)
    through: Mapped[date] = mapped_column(Date, primary_key=True)
    values: Mapped[str] = mapped_column(Text)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DividendRow(Base):
    """A cash dividend per share, keyed by (security, ex-date): the provider's or an import's."""

    __tablename__ = "dividends"
    security_id: Mapped[int] = mapped_column(ForeignKey("securities.id"), primary_key=True)
    ex_date: Mapped[date] = mapped_column(Date, primary_key=True)
    amount: Mapped[float] = mapped_column(Float)  # per share, in the security's currency
    source: Mapped[str] = mapped_column(String(32))


class FxRateRow(Base):
    __tablename__ = "fx_rates"
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    rate: Mapped[float] = mapped_column(Float)  # units of `currency` per 1 base unit
    source: Mapped[str] = mapped_column(String(40))


class ReferenceRateRow(Base):
    """The ECB's euro foreign exchange reference rates, as published: units of `currency` per
    1 EUR (whatever the base currency), one row per TARGET business day."""

    __tablename__ = "reference_rates"
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True, index=True)
    rate: Mapped[float] = mapped_column(Float)


class FundamentalRow(Base):
    """One field of a security's fundamentals as observed on a day (units: fundamentals.py).
    A value is stored when it changes, so `observed_on` is the day a value was first seen;
    a row with neither number nor text records that a provider stopped reporting the field."""

    __tablename__ = "fundamentals"
    security_id: Mapped[int] = mapped_column(ForeignKey("securities.id"), primary_key=True)
    field: Mapped[str] = mapped_column(String(40), primary_key=True)
    observed_on: Mapped[date] = mapped_column(Date, primary_key=True)
    number: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str | None] = mapped_column(String(40), nullable=True)
    source: Mapped[str] = mapped_column(String(40))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


SCHEMA = Schema("data", (Base.metadata,), Path(__file__).with_name("migrations") / "versions",
                legacy_version=2, legacy_steps=LEGACY_STEPS)


def open_database(url: str, seeded: str | None = None) -> Database:
    return Database(url, SCHEMA, seeded)


# --- securities ---

def find_security(session: Session, symbol: str = "", isin: str = "") -> SecurityRow | None:
    column, value = (SecurityRow.symbol, symbol) if symbol else (SecurityRow.isin, isin)
    return session.scalars(select(SecurityRow).where(column == value)).first()


def ensure_security(session: Session, security: Security) -> int:
    """The id of `security`, inserting it if unknown. A stored security is left as it is, so a
    provider sync never overwrites what the owner changed."""
    row = find_security(session, security.symbol)
    if row is None:
        row = SecurityRow(**{f: getattr(security, f) for f in Security.__dataclass_fields__})
        session.add(row)
        session.flush()
    return row.id


def save_security(session: Session, security: Security) -> SecurityRow:
    row = find_security(session, security.symbol)
    if row is None:
        row = SecurityRow(symbol=security.symbol)
        session.add(row)
    for field in Security.__dataclass_fields__:
        setattr(row, field, getattr(security, field))
    session.flush()
    return row


def all_securities(session: Session) -> tuple[tuple[int, Security], ...]:
    """Every stored security as (id, security) pairs, ordered by symbol (the database's order)."""
    fields = [getattr(SecurityRow, name) for name in Security.__dataclass_fields__]
    rows = session.execute(select(SecurityRow.id, *fields).order_by(SecurityRow.symbol))
    return tuple((row[0], Security(*row[1:])) for row in rows)


def list_securities(session: Session, include_inactive: bool, include_indices: bool,
                    **filters: str) -> list[tuple[int, Security]]:
    """(id, security) pairs ordered by symbol, as universe.select_securities selects them."""
    return select_securities(all_securities(session), include_inactive, include_indices, **filters)


def find_securities(session: Session, symbols: list[str]) -> dict[str, tuple[int, Security]]:
    rows = session.scalars(select(SecurityRow).where(SecurityRow.symbol.in_(symbols)))
    return {row.symbol: (row.id, row.to_domain()) for row in rows}


# --- bars ---

_BAR_COLUMNS = (DailyBarRow.date, DailyBarRow.close, DailyBarRow.open, DailyBarRow.high, DailyBarRow.low,
                DailyBarRow.volume, DailyBarRow.adj_close)


def _bar(row) -> Bar:
    return Bar._make(row)


def daily_bars(session: Session, security_id: int, start: date | None, end: date) -> list[Bar]:
    query = select(*_BAR_COLUMNS).where(DailyBarRow.security_id == security_id, DailyBarRow.date <= end)
    if start is not None:
        query = query.where(DailyBarRow.date >= start)
    return [_bar(row) for row in session.connection().execute(query.order_by(DailyBarRow.date))]


def daily_bars_with_flags(session: Session, security_id: int, start: date | None,
                          end: date) -> list[tuple[Bar, str | None, date | None]]:
    query = select(*_BAR_COLUMNS, DailyBarRow.flag, DailyBarRow.flag_known_on).where(
        DailyBarRow.security_id == security_id, DailyBarRow.date <= end)
    if start is not None:
        query = query.where(DailyBarRow.date >= start)
    return [(_bar(row[:7]), row[7], row[8]) for row in session.connection().execute(query.order_by(DailyBarRow.date))]


def last_bar_dates(session: Session, security_ids: list[int]) -> dict[int, date]:
    """security id -> the date of its last stored bar (securities without bars are absent); one
    query, each a lookup in the (security, date) key rather than a scan of every bar."""
    if not security_ids:
        return {}
    last = (select(func.max(DailyBarRow.date)).where(DailyBarRow.security_id == SecurityRow.id)
            .correlate(SecurityRow).scalar_subquery())
    rows = session.execute(select(SecurityRow.id, last).where(SecurityRow.id.in_(security_ids)))
    return {security_id: day for security_id, day in rows if day is not None}


def stored_extent(session: Session) -> dict[int, tuple[int, date]]:
    """security id -> (number of bars, last bar date), in one grouped query."""
    rows = session.execute(
        select(DailyBarRow.security_id, func.count(), func.max(DailyBarRow.date)).group_by(DailyBarRow.security_id)
    )
    return {security_id: (count, last) for security_id, count, last in rows}


def upsert_bars(session: Session, security_id: int, bars: list[Bar],
                sessions: SessionDays | None) -> tuple[int, int, int]:
    """Insert new dates, update changed bars, leave equal ones; then re-validate the series
    (`sessions`: the exchange's trading days) and invalidate cached indicators from the first
    change on. Returns (added, updated, unchanged)."""
    stored = {b.date: b for b in daily_bars(session, security_id, None, date.max)}
    new_rows, changed = [], []
    for bar in bars:
        old = stored.get(bar.date)
        if old is None:
            new_rows.append({"security_id": security_id, **_bar_fields(bar)})
        elif old != bar:
            changed.append(bar)
    if new_rows:
        session.execute(DailyBarRow.__table__.insert(), new_rows)
    for bar in changed:
        session.execute(DailyBarRow.__table__.update().where(
            DailyBarRow.security_id == security_id, DailyBarRow.date == bar.date).values(**_bar_fields(bar)))
    touched = [r["date"] for r in new_rows] + [b.date for b in changed]
    if touched:
        touch(session, security_id)
        first_flag_change = refresh_flags(session, security_id, sessions)
        invalidate_cache(session, security_id, min(touched + ([first_flag_change] if first_flag_change else [])))
    return len(new_rows), len(changed), len(bars) - len(new_rows) - len(changed)


def replace_bars(session: Session, security_id: int, bars: list[Bar],
                 sessions: SessionDays | None) -> tuple[int, int, int]:
    """Make `bars` the security's whole stored history (a re-based series from its source):
    every other stored bar is deleted, flags are recomputed and every cached indicator of the
    security is dropped. Returns (added, updated, unchanged) against what was stored."""
    stored = {b.date: b for b in daily_bars(session, security_id, None, date.max)}
    touch(session, security_id)
    session.execute(delete(DailyBarRow).where(DailyBarRow.security_id == security_id))
    if bars:
        session.execute(DailyBarRow.__table__.insert(), [{"security_id": security_id, **_bar_fields(b)} for b in bars])
    refresh_flags(session, security_id, sessions)
    invalidate_cache(session, security_id, date.min)
    added = sum(1 for b in bars if b.date not in stored)
    unchanged = sum(1 for b in bars if stored.get(b.date) == b)
    return added, len(bars) - added - unchanged, unchanged


def _bar_fields(bar: Bar) -> dict:
    return {"date": bar.date, "open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close,
            "volume": bar.volume, "adj_close": bar.adj_close}


def refresh_flags(session: Session, security_id: int, sessions: SessionDays | None) -> date | None:
    """Re-validate every bar of a security and record the rules used; returns the earliest
    date whose flag changed."""
    rows = daily_bars_with_flags(session, security_id, None, date.max)
    flags = flag_bars([bar for bar, _, _ in rows], sessions)
    first_change = None
    for (bar, old_reason, old_known), flag in zip(rows, flags, strict=True):
        new = (flag.reason, flag.known_on) if flag else (None, None)
        if new != (old_reason, old_known):
            touch(session, security_id)
            session.execute(DailyBarRow.__table__.update().where(
                DailyBarRow.security_id == security_id, DailyBarRow.date == bar.date).values(
                flag=new[0], flag_known_on=new[1]))
            changed_on = min(bar.date, flag.known_on if flag else bar.date, old_known or bar.date)
            first_change = changed_on if first_change is None else min(first_change, changed_on)
    session.execute(SecurityRow.__table__.update().where(SecurityRow.id == security_id).values(
        validated_with=RULES_VERSION))
    return first_change


def revalidate(session: Session, security_id: int, sessions: SessionDays | None) -> None:
    """Recompute a security's flags (new rules, another exchange) and drop what they change."""
    first_change = refresh_flags(session, security_id, sessions)
    if first_change is not None:
        invalidate_cache(session, security_id, first_change)


def stale_validation(session: Session) -> list[tuple[int, Security]]:
    """Securities whose flags were computed with older validation rules."""
    rows = session.scalars(select(SecurityRow).where(SecurityRow.validated_with != RULES_VERSION))
    return [(row.id, row.to_domain()) for row in rows]


def latest_flag(session: Session, security_id: int) -> str | None:
    """The flag of the security's latest stored bar (None when valid or no bars)."""
    return session.scalar(select(DailyBarRow.flag).where(DailyBarRow.security_id == security_id)
                          .order_by(DailyBarRow.date.desc()).limit(1))


def flagged_count(session: Session, security_id: int) -> int:
    return session.scalar(select(func.count()).select_from(DailyBarRow).where(
        DailyBarRow.security_id == security_id, DailyBarRow.flag.is_not(None))) or 0


def delete_bars_before(session: Session, cutoff: date) -> int:
    touch(session, ALL)
    result = session.execute(delete(DailyBarRow).where(DailyBarRow.date < cutoff))
    session.execute(delete(IndicatorCacheRow))
    return result.rowcount or 0


# --- indicator cache ---

def cached_indicators_of(session: Session,
                         keys: list[tuple[int, date]]) -> dict[tuple[int, date], tuple[dict, datetime]]:
    """(values, computed_at) of the cached indicators of each (security id, through) key that
    has an entry; one query."""
    if not keys:
        return {}
    wanted = set(keys)
    rows = session.scalars(select(IndicatorCacheRow).where(
        IndicatorCacheRow.security_id.in_(sorted({k[0] for k in wanted})),
        IndicatorCacheRow.through.in_(sorted({k[1] for k in wanted}))))
    return {(row.security_id, row.through): (json.loads(row.values), row.computed_at)
            for row in rows if (row.security_id, row.through) in wanted}


def cache_indicators(session: Session, security_id: int, through: date, values: dict, computed_at: datetime,
                     replace: bool = True) -> None:
    """Store the indicators computed through a date; `replace=False` when cached_indicators_of just
    found none (an insert without reading the row again: a replay caches a new day each cycle)."""
    row = IndicatorCacheRow(security_id=security_id, through=through, values=json.dumps(values),
                            computed_at=computed_at)
    if replace:
        session.merge(row)
    else:
        session.add(row)


def cache_new_indicators(session: Session, entries: list[tuple[int, date, dict]], computed_at: datetime) -> None:
    """Store (security id, through, values) entries that cached_indicators_of just found absent,
    in one statement."""
    if entries:
        session.execute(insert(IndicatorCacheRow), [
            {"security_id": security_id, "through": through, "values": json.dumps(values), "computed_at": computed_at}
            for security_id, through, values in entries])


def invalidate_cache(session: Session, security_id: int, from_date: date) -> None:
    session.execute(delete(IndicatorCacheRow).where(IndicatorCacheRow.security_id == security_id,
                                                    IndicatorCacheRow.through >= from_date))


# --- FX ---

def save_fx_rate(session: Session, currency: str, day: date, rate: float, source: str) -> None:
    session.merge(FxRateRow(currency=currency, date=day, rate=rate, source=source))


def _fx_rates_as_of_statement():
    latest = select(FxRateRow.currency, func.max(FxRateRow.date).label("day")).where(
        FxRateRow.date <= bindparam("day", type_=Date)).group_by(FxRateRow.currency).subquery()
    return select(FxRateRow.currency, FxRateRow.rate, FxRateRow.date, FxRateRow.source).join(
        latest, (FxRateRow.currency == latest.c.currency) & (FxRateRow.date == latest.c.day))


_FX_RATES_AS_OF = _fx_rates_as_of_statement()  # built once: a statement's construction costs more than its run


def fx_rates_as_of(session: Session, day: date) -> dict[str, tuple[float, date, str]]:
    """currency -> (rate, its date, source): the latest stored rate at or before `day`."""
    return {currency: (rate, rate_day, source)
            for currency, rate, rate_day, source in session.execute(_FX_RATES_AS_OF, {"day": day})}


def fx_rate_history(session: Session) -> dict[str, tuple[tuple[date, ...], tuple[tuple[float, date, str], ...]]]:
    """currency -> (its stored rates' dates, ascending; (rate, date, source) of each), in one
    query: fx.rates_as_of answers fx_rates_as_of for any day from it."""
    found: dict[str, tuple[list, list]] = {}
    for currency, day, rate, source in session.execute(
            select(FxRateRow.currency, FxRateRow.date, FxRateRow.rate, FxRateRow.source)
            .order_by(FxRateRow.currency, FxRateRow.date)):
        days, entries = found.setdefault(currency, ([], []))
        days.append(day)
        entries.append((rate, day, source))
    return {currency: (tuple(days), tuple(entries)) for currency, (days, entries) in found.items()}


# --- ECB reference rates ---

def reference_rate_extent(session: Session) -> dict[str, date]:
    """currency -> date of its latest stored reference rate."""
    rows = session.execute(select(ReferenceRateRow.currency, func.max(ReferenceRateRow.date))
                           .group_by(ReferenceRateRow.currency))
    return dict(rows.all())


def save_reference_rates(session: Session, rates: dict[str, list[tuple[date, float]]]) -> int:
    """Insert new reference rates in one bulk statement; returns the number of rows."""
    rows = [{"currency": currency, "date": day, "rate": rate} for currency, history in rates.items()
            for day, rate in history]
    if rows:
        session.execute(insert(ReferenceRateRow), rows)
    return len(rows)


_FIXING_DAY = select(func.max(ReferenceRateRow.date)).where(
    ReferenceRateRow.date <= bindparam("day", type_=Date), ReferenceRateRow.date >= bindparam("oldest", type_=Date))
_FIXING = select(ReferenceRateRow.currency, ReferenceRateRow.rate).where(
    ReferenceRateRow.date == bindparam("day", type_=Date))


def reference_fixing(session: Session, day: date, oldest: date) -> tuple[date, dict[str, float]] | None:
    """(date, currency -> units per 1 EUR) of the latest fixing between `oldest` and `day`."""
    fixing_day = session.scalar(_FIXING_DAY, {"day": day, "oldest": oldest})
    if fixing_day is None:
        return None
    return fixing_day, dict(session.execute(_FIXING, {"day": fixing_day}).all())


def reference_fixings(session: Session, year: int) -> tuple[tuple[date, ...], tuple[dict[str, float], ...]]:
    """The fixings dated in `year`: (their dates, ascending; currency -> units per 1 EUR of
    each), in one query: fx.fixing_between answers reference_fixing from a window's years."""
    days: list[date] = []
    rates: list[dict[str, float]] = []
    for day, currency, rate in session.execute(
            select(ReferenceRateRow.date, ReferenceRateRow.currency, ReferenceRateRow.rate)
            .where(ReferenceRateRow.date >= date(year, 1, 1), ReferenceRateRow.date <= date(year, 12, 31))
            .order_by(ReferenceRateRow.date, ReferenceRateRow.currency)):
        if not days or days[-1] != day:
            days.append(day)
            rates.append({})
        rates[-1][currency] = rate
    return tuple(days), tuple(rates)


# --- fundamentals ---

FundamentalValue = float | str | None


def _fundamental_value(row) -> FundamentalValue:
    return row.number if row.number is not None else row.text


def fundamentals_history(session: Session) -> dict[int, dict[str, FieldHistory]]:
    """security id -> field -> its every observation (fundamentals.FieldHistory), in one query."""
    rows = session.execute(select(FundamentalRow.security_id, FundamentalRow.field, FundamentalRow.observed_on,
                                  FundamentalRow.number, FundamentalRow.text, FundamentalRow.source)
                           .order_by(FundamentalRow.security_id, FundamentalRow.field, FundamentalRow.observed_on))
    found: dict[int, dict[str, tuple[list, list]]] = {}
    for security_id, field, observed_on, number, text, source in rows:
        days, entries = found.setdefault(security_id, {}).setdefault(field, ([], []))
        days.append(observed_on)
        entries.append((number if number is not None else text, source))
    return {security_id: {field: FieldHistory(tuple(days), tuple(entries)) for field, (days, entries) in fields.items()}
            for security_id, fields in found.items()}


def save_fundamental(session: Session, security_id: int, field: str, day: date, value: FundamentalValue,
                     source: str, recorded_at: datetime) -> str:
    """Store one observation; returns "added", "updated" or "unchanged". An observation equal
    to the value already in force on `day` (or an unknown one where nothing is known) adds
    nothing, so a daily sync of unchanged values writes no rows."""
    row = session.get(FundamentalRow, (security_id, field, day))
    number, text = (value, None) if isinstance(value, float | int) else (None, value)
    if row is not None:
        if (row.number, row.text) == (number, text):
            return "unchanged"
        row.number, row.text, row.source, row.recorded_at = number, text, source, recorded_at
        return "updated"
    previous = session.scalars(select(FundamentalRow).where(
        FundamentalRow.security_id == security_id, FundamentalRow.field == field,
        FundamentalRow.observed_on < day).order_by(FundamentalRow.observed_on.desc()).limit(1)).first()
    in_force = (None, None) if previous is None else (previous.number, previous.text)
    if in_force == (number, text):
        return "unchanged"
    session.add(FundamentalRow(security_id=security_id, field=field, observed_on=day, number=number, text=text,
                               source=source, recorded_at=recorded_at))
    return "added"


# --- dividends ---

def upsert_dividends(session: Session, security_id: int, dividends: list[tuple[date, float]],
                     source: str) -> tuple[int, int, int]:
    """Insert new ex-dates, update changed amounts: (added, updated, unchanged)."""
    stored = {r.ex_date: r for r in session.scalars(select(DividendRow).where(DividendRow.security_id == security_id))}
    added = updated = 0
    for day, amount in dividends:
        row = stored.get(day)
        if row is None:
            session.add(DividendRow(security_id=security_id, ex_date=day, amount=amount, source=source))
            added += 1
        elif row.amount != amount:
            row.amount, row.source = amount, source
            updated += 1
    return added, updated, len(dividends) - added - updated


def all_dividends(session: Session) -> tuple[tuple[int, date, float, str], ...]:
    """Every stored dividend as (security id, ex-date, amount, source), by security then date."""
    query = select(DividendRow.security_id, DividendRow.ex_date, DividendRow.amount, DividendRow.source)
    return tuple(tuple(r) for r in session.execute(query.order_by(DividendRow.security_id, DividendRow.ex_date)))


def dividends_between(dividends: Iterable[tuple[int, date, float, str]], security_ids: Iterable[int],
                      start: date | None, end: date) -> list[tuple[int, date, float, str]]:
    """Those of `dividends` (all_dividends) of the securities with ex-dates in [start, end], in order."""
    wanted = set(security_ids)
    return [row for row in dividends if row[0] in wanted and (start is None or row[1] >= start) and row[1] <= end]


# --- retention (services/common/maintenance.py) ---

def delete_indicators_computed_before(session: Session, cutoff: datetime) -> int:
    return session.execute(delete(IndicatorCacheRow).where(IndicatorCacheRow.computed_at < cutoff)).rowcount or 0


INDICATOR_CACHE_KEEP_DAYS = 7  # the longest TTL of a cached indicator (analytics.TTL)

# Bars are history (indicators, scores and the optimiser read years of them): they go only when
# TRADER_DATA_RETENTION_DAYS says so. Cached indicators are recomputed on demand; none lives
# longer than the longest TTL (analytics.py), so older ones are dead weight.
RETENTION_RULES = (
    RetentionRule("indicator_cache", "cached indicators computed before the cutoff (recomputed on demand)",
                  "TRADER_INDICATOR_CACHE_RETENTION_DAYS", INDICATOR_CACHE_KEEP_DAYS,
                  delete_indicators_computed_before),
    RetentionRule("daily_bars", "daily bars dated before the cutoff (0, the default, keeps the history)",
                  "TRADER_DATA_RETENTION_DAYS", 0, delete_bars_before, by_day=True),
)
