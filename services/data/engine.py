"""Market-data use cases that span the provider, the bundled reference data and the store:
storing fetched bars (validated against the exchange's calendar), syncing from the provider
(with re-based series replaced), re-validating after a rules change, and loading the ECB's
reference rates; storing and reading fundamentals.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from currency_converter import CURRENCY_FILE
from sqlalchemy.orm import Session

from services.common.db import Database
from services.common.errors import NotFound
from services.common.revisions import KeptReads
from services.data import store
from services.data.adapters import ecb_rates
from services.data.fundamentals import Observation, from_yahoo_info
from services.data.fx import REFERENCE_CURRENCY
from services.data.history import Bar, Rebase, rebase_factors, rebased, sync_start
from services.data.market_hours import session_days
from services.data.providers import PriceProvider
from services.data.universe import Security

_reference_lock = threading.Lock()


@dataclass(frozen=True)
class SyncResult:
    added: int
    updated: int
    flagged: int
    synced: list[str]  # symbols the provider returned bars for


def sync_bars(db: Database, securities: list[Security], fetched: dict[str, list[Bar]],
              replacements: dict[str, list[Bar]] | None = None) -> tuple[int, int, int]:
    """Store what a provider returned, in one transaction: (added, updated, flagged).
    `replacements` are whole re-based histories that replace what is stored."""
    replacements = replacements or {}
    added = updated = flagged = 0
    with db.transaction() as session:
        extent = store.stored_extent(session)
        for security in securities:
            security_id = store.ensure_security(session, security)
            sessions = session_days(security.exchange)
            if security.symbol in replacements:
                new, changed, _ = store.replace_bars(session, security_id, replacements[security.symbol], sessions)
            else:
                bars = fetched.get(security.symbol, [])
                if not bars or extent.get(security_id) == (len(bars), bars[-1].date):
                    continue  # nothing new (the bundled provider's fast path)
                new, changed, _ = store.upsert_bars(session, security_id, bars, sessions)
            added, updated = added + new, updated + changed
            flagged += store.flagged_count(session, security_id)
    return added, updated, flagged


def store_imported(session: Session, security_id: int, security: Security, bars: list[Bar]) -> tuple[int, int, int]:
    """Store imported bars (a CSV) in the caller's transaction: (added, updated, unchanged).
    When the file's bars overlapping the stored ones all differ from them by one factor, the
    file is on another basis (a split, a re-adjustment, a unit): it replaces those bars and
    every other stored bar is scaled onto its basis (counted as updated), never mixed."""
    sessions = session_days(security.exchange)
    factors = rebase_factors(store.daily_bars(session, security_id, bars[0].date, bars[-1].date), bars)
    if factors is None:
        return store.upsert_bars(session, security_id, bars, sessions)
    stored = store.daily_bars(session, security_id, None, date.max)
    return store.replace_bars(session, security_id, rebased(stored, bars, factors), sessions)


def revalidate_stale(db: Database) -> int:
    """Re-validate every security whose flags came from older rules; returns how many."""
    with db.transaction() as session:
        stale = store.stale_validation(session)
        for security_id, security in stale:
            store.revalidate(session, security_id, session_days(security.exchange))
    return len(stale)


def revalidate_security(db: Database, symbol: str) -> None:
    """Re-validate one security (its exchange, hence its trading days, changed)."""
    with db.transaction() as session:
        row = store.find_security(session, symbol)
        if row is not None:
            store.revalidate(session, row.id, session_days(row.exchange))


def _rebased_series(db: Database, ids: dict[str, int], fetched: dict[str, list[Bar]], start: date | None,
                    end: date) -> dict[str, Rebase]:
    """symbol -> factors for the securities whose whole history must come again from the
    provider: its bars overlapping the stored ones all differ from them by one factor (a split,
    a re-adjustment, a change of unit), or the stored series ends in an unresolved unit change."""
    found: dict[str, Rebase] = {}
    compared = {symbol: bars for symbol, bars in fetched.items() if bars and symbol in ids}
    if not compared:
        return found  # nothing new from the provider (a replay's usual sync): nothing to compare
    with db.transaction() as session:
        for symbol, bars in compared.items():
            factors = rebase_factors(store.daily_bars(session, ids[symbol], start, end), bars)
            if factors is None and (store.latest_flag(session, ids[symbol]) or "").startswith("unit_change"):
                factors = Rebase(1.0, 1.0)
            if factors is not None:
                found[symbol] = factors
    return found


def sync_prices(db: Database, provider: PriceProvider, listed: list[tuple[int, Security]], end: date,
                fx_currencies: list[str], base: str, retention_days: int, kept: KeptReads | None = None) -> SyncResult:
    """Fetch bars (from a week before the oldest last stored bar) and FX history for the stored
    securities ((id, security) pairs), replace the history of re-based series with the
    provider's whole history, store everything. A provider failure (Unavailable) stores nothing.
    `kept`: the last stored bars' dates are read once per revision of the bars through it."""
    securities = [security for _, security in listed]
    ids = {security.symbol: security_id for security_id, security in listed}
    wanted = list(ids.values())
    if kept is None:
        with db.transaction() as session:
            last = store.last_bar_dates(session, wanted)
    else:  # without a transaction while kept
        last = kept.current(db.transaction, ("daily_bars", "securities"), ("last_bar_dates", tuple(wanted)),
                            lambda read: store.last_bar_dates(read, wanted))
    start = sync_start([last.get(ids.get(s.symbol)) for s in securities])
    fetched = provider.daily_bars(securities, start, end)
    dividends = provider.dividends(securities, start, end)
    fx = provider.fx_history(fx_currencies, base, start, end)
    factors = _rebased_series(db, ids, fetched, start, end)
    replacements: dict[str, list[Bar]] = {}
    if factors:
        whole = provider.daily_bars([s for s in securities if s.symbol in factors], None, end)
        with db.transaction() as session:
            for symbol, rebase in factors.items():  # without a whole history: the fetched part
                stored = store.daily_bars(session, ids[symbol], None, date.max)
                replacements[symbol] = rebased(stored, whole.get(symbol) or fetched.get(symbol, []), rebase)
    if not (replacements or dividends or fx or any(fetched.values())) and not retention_days:
        return SyncResult(0, 0, 0, [])  # the provider has nothing new (a replay before its data's end)
    added, updated, flagged = sync_bars(db, securities, fetched, replacements)
    with db.transaction() as session:
        ids = {symbol: security_id for symbol, (security_id, _) in
               store.find_securities(session, sorted(dividends)).items()}
        for symbol, paid in dividends.items():
            if paid and symbol in ids:
                store.upsert_dividends(session, ids[symbol], paid, provider.name)
        for currency, history in fx.items():
            for day, rate in history:
                store.save_fx_rate(session, currency, day, rate, provider.name)
        if retention_days:
            store.delete_bars_before(session, end - timedelta(days=retention_days))
    return SyncResult(added, updated, flagged, sorted(s for s in fetched if fetched[s]))


def needed_currencies(db: Database, base: str, configured: list[str]) -> set[str]:
    """The currencies the service prices: the base, the configured ones, every security's."""
    with db.transaction() as session:
        held = {security.currency for _, security in store.list_securities(session, True, True)}
    return {base, *configured, *held}


def load_reference_rates(db: Database, currencies: set[str], path: str = CURRENCY_FILE) -> int:
    """Store the ECB reference rates of `currencies` that are not stored yet, or only up to an
    older file's last date (bulk insert, idempotent); returns the rows added. A currency the
    ECB never published is skipped (the configured rate, if any, stays its only rate)."""
    last_day, latest = ecb_rates.latest_fixing(path)
    wanted = {c for c in currencies if c in latest and c != REFERENCE_CURRENCY}
    with _reference_lock, db.transaction() as session:
        extent = store.reference_rate_extent(session)
        missing = {c for c in wanted if c not in extent or (latest[c] is not None and extent[c] < last_day)}
        if not missing:
            return 0
        after = {c: extent[c] for c in missing if c in extent}
        return store.save_reference_rates(session, ecb_rates.read_rates(missing, after, path))


# --- fundamentals ---

@dataclass(frozen=True)
class FundamentalsSaved:
    added: int
    updated: int
    unchanged: int
    symbols: list[str]


def save_fundamentals(db: Database, observations: list[Observation], source: str,
                      recorded_at: datetime) -> FundamentalsSaved:
    """Store observations (an import or a provider's) in one transaction; unknown symbols
    refuse the lot (NOT_FOUND) and store nothing."""
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    symbols = sorted({item.symbol for item in observations})
    with db.transaction() as session:
        found = store.find_securities(session, symbols)
        unknown = [symbol for symbol in symbols if symbol not in found]
        if unknown:
            raise NotFound(f"unknown symbols: {', '.join(unknown)}")
        for item in observations:
            outcome = store.save_fundamental(session, found[item.symbol][0], item.field, item.observed_on,
                                             item.value, source, recorded_at)
            counts[outcome] += 1
    return FundamentalsSaved(symbols=symbols, **counts)


def sync_fundamentals(db: Database, provider: PriceProvider, securities: list[Security],
                      observed_at: datetime) -> tuple[FundamentalsSaved, list[str]]:
    """Read each security's fundamentals from the provider's info, as observed on
    `observed_at`'s date (the wall clock: a provider only knows today's values). Returns what
    was stored and the symbols the provider had no info for. A field the provider no longer
    reports is recorded as unknown from that day."""
    day = observed_at.date()
    observations, unavailable = [], []
    for security in securities:
        info = provider.info(security)
        if info is None:
            unavailable.append(security.symbol)
            continue
        observations += [Observation(security.symbol, name, day, value)
                         for name, value in from_yahoo_info(info, security.currency).items()]
    if not observations:
        return FundamentalsSaved(0, 0, 0, []), unavailable
    return save_fundamentals(db, observations, provider.name, observed_at), unavailable
