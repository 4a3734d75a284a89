"""The bucket use cases (trading-portfolio-jobs.md section 6): booking cash flows into buckets,
the lifecycle, transfers, the daily reconciliation and maintenance, the quarterly
meta-allocator. The rules are in buckets.py; this gathers, applies and stores them."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy.orm import Session

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.logs import event
from services.portfolio import buckets as rules
from services.portfolio import cash_flows, performance, snapshots, store
from services.portfolio.adapters.peers import Peers, Rates
from services.portfolio.kept import KeptState

log = logging.getLogger("trader.portfolio.buckets")
SETTINGS_KEY = "bucket_settings"
ALERT_SOURCE = "bucket_reconciliation"
METRICS_WINDOW = timedelta(days=90)


@dataclass(frozen=True)
class BucketView:
    bucket: rules.Bucket
    name: str
    balances: dict[str, float]
    value_base: float | None
    drawdown: float | None
    aggression: float
    created_at: datetime


@dataclass(frozen=True)
class Maintenance:
    bucket: str
    status_before: str
    status_after: str
    drawdown: float | None
    note: str


@dataclass(frozen=True)
class MetaChange:
    bucket: str
    score: float | None
    current: float
    new: float
    change: str


class BucketState(NamedTuple):
    id: str
    status: str


@dataclass(frozen=True)
class LatestSnapshotBuckets:
    """The buckets' rows on the latest day the snapshots have bucket rows for."""

    day: date
    rows: dict[str, store.SnapshotBucketRow | store.SnapshotBucketRecord]


@dataclass(frozen=True)
class SnapshotInputs:
    """The buckets, their balances (bucket -> currency -> amount), their external flows since
    the previous snapshot (base) and their rows on that snapshot."""

    buckets: list[BucketState]
    balances: dict[str, dict[str, float]]
    flows: dict[str, float]
    before: dict[str, store.SnapshotBucketRow | store.SnapshotBucketRecord]


def serialized(method):
    """One change of the books at a time: balances are read, changed and written back, so two
    changes at once (a deposit during a sync) must not interleave. The portfolio is one process."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return locked


def _virtual(balances: dict[str, dict[str, float]]) -> dict[str, float]:
    """currency -> the buckets' balances in it, summed (bucket by bucket, as stored)."""
    virtual: dict[str, float] = {}
    for per_currency in balances.values():
        for currency, amount in per_currency.items():
            virtual[currency] = virtual.get(currency, 0.0) + amount
    return virtual


def _bucket_states(session) -> list[BucketState]:
    return [BucketState(r.id, r.status) for r in store.buckets(session)]


def _broker_from_store(session) -> tuple[datetime | None, dict[str, float]]:
    return store.broker_synced_at(session), store.cash(session)


def _rule(row: store.BucketRow) -> rules.Bucket:
    return rules.Bucket(row.id, row.kind, row.status, row.target_share, row.min_share, row.max_share,
                        row.consecutive_losses or 0, row.high_water_mark, row.high_water_mark_at,
                        row.loss_streak_paused_at, row.reawakening if row.reawakening is not None else 1.0,
                        row.win_cooldown_until, row.dividend_handling)


def _save(row: store.BucketRow, bucket: rules.Bucket, now: datetime) -> None:
    for name in ("status", "target_share", "min_share", "max_share", "consecutive_losses", "high_water_mark",
                 "high_water_mark_at", "loss_streak_paused_at", "reawakening", "win_cooldown_until",
                 "dividend_handling"):
        setattr(row, name, getattr(bucket, name))
    row.updated_at = now


class BucketBook:
    def __init__(self, db, peers: Peers, base_currency: str, lock: threading.RLock | None = None,
                 broker: Callable[[Session], tuple[datetime | None, dict[str, float]]] = _broker_from_store,
                 kept_broker: Callable[[], tuple[datetime | None, dict[str, float]] | None] = lambda: None):
        """`broker(session)`: when the broker was last synced (None: never) and its cash;
        `kept_broker()`: the same without a transaction when it is kept, else None."""
        self._db = db
        self._broker = broker
        self._kept_broker = kept_broker
        self._peers = peers
        self._base = base_currency
        self.lock = lock or threading.RLock()
        # Whether the reconciliation's alert is on the display: None = unknown (since this
        # process started, or the display was unreachable), so the next clean day clears it.
        # Only this book posts under ALERT_SOURCE.
        self._alert_shown: bool | None = None
        # what a cycle reads of the buckets, kept until written (services/portfolio/kept.py);
        # the values are shared: never change them
        self._states: KeptState[list[BucketState]] = KeptState(db.revisions, (store.BucketRow.__tablename__,))
        self._balances: KeptState[dict[str, dict[str, float]]] = KeptState(
            db.revisions, (store.BucketBalanceRow.__tablename__,))
        self._any_transaction: KeptState[bool] = KeptState(db.revisions, (store.BucketTransactionRow.__tablename__,))
        self._latest_rows: KeptState[LatestSnapshotBuckets] = KeptState(
            db.revisions, (store.SnapshotBucketRow.__tablename__,))
        # when the latest external transaction (rules.EXTERNAL_TRANSACTION_KINDS) occurred
        self._latest_external: KeptState[datetime | None] = KeptState(
            db.revisions, (store.BucketTransactionRow.__tablename__,))

    def ensure_core(self, now: datetime) -> None:
        """The core bucket exists from the first start ("Core Portfolio", active)."""
        with self._db.transaction() as session:
            if session.get(store.BucketRow, rules.CORE) is None:
                budget = self.settings(session).satellite_budget
                session.add(store.BucketRow(id=rules.CORE, name="Core Portfolio", kind=rules.CORE_KIND,
                                            status=rules.ACTIVE, target_share=1 - budget, min_share=0.0, max_share=1.0,
                                            consecutive_losses=0, reawakening=1.0, dividend_handling="reinvest_same",
                                            created_at=now, updated_at=now))

    # --- settings ---

    def settings(self, session) -> rules.BucketSettings:
        stored = store.setting(session, SETTINGS_KEY) or {}
        known = rules.BucketSettings.__dataclass_fields__
        return rules.BucketSettings(**{k: v for k, v in stored.items() if k in known})

    def current_settings(self) -> rules.BucketSettings:
        with self._db.transaction() as session:
            return self.settings(session)

    @serialized
    def update_settings(self, changes: dict, now: datetime) -> rules.BucketSettings:
        with self._db.transaction() as session:
            updated = replace(self.settings(session), **changes).validated()
            satellites = sum(r.target_share for r in store.buckets(session) if r.kind == rules.SATELLITE_KIND
                             and r.status != rules.RETIRED)
            if satellites > updated.satellite_budget + 1e-9:
                raise FailedPrecondition("satellite_budget_exceeded", f"the satellites' targets add up to "
                                                                      f"{satellites:.4f}, above a budget of "
                                                                      f"{updated.satellite_budget:.4f}")
            store.save_setting(session, SETTINGS_KEY, updated.__dict__)
            core = session.get(store.BucketRow, rules.CORE)
            core.target_share, core.updated_at = 1 - updated.satellite_budget, now
            return updated

    # --- booking (called inside the engine's transaction) ---

    def trading_bucket(self, session, bucket_id: str) -> str:
        """The bucket a fill books into: its own, or core when the portfolio does not know it
        (or it is retired)."""
        row = session.get(store.BucketRow, bucket_id) if bucket_id else None
        return row.id if row is not None and row.status != rules.RETIRED else rules.CORE

    def dividend_bucket(self, session, owner: str) -> str:
        """The bucket that owns the position, unless it sends dividends to core (or is unknown)."""
        row = session.get(store.BucketRow, owner) if owner else None
        if row is None or row.status == rules.RETIRED or row.dividend_handling == "send_to_core":
            return rules.CORE
        return row.id

    def book(self, session, bucket: str, kind: str, amount: float, currency: str, rates: Rates, at: datetime,
             description: str, cash_flow_id: int | None = None) -> None:
        rate = rates.rate(currency)
        store.book_to_bucket(session, bucket, kind, amount, currency, None if rate is None else amount / rate, at,
                             description, cash_flow_id)

    def values(self, session, rates: Rates) -> dict[str, float]:
        """bucket -> its virtual cash (base, now) + its positions: the books' quantities at the
        last snapshot's value per share, or at cost for a symbol bought since."""
        values: dict[str, float] = {r.id: 0.0 for r in store.buckets(session)}
        for bucket, balances in store.bucket_balances(session).items():
            values[bucket] = values.get(bucket, 0.0) + sum(a / rates.rate(c) for c, a in balances.items()
                                                           if rates.rate(c))
        per_share = {p.symbol: p.value_base / p.quantity for p in store.latest_snapshot_positions(session)
                     if p.quantity > 0}
        for held in store.position_histories(session).values():
            if held.quantity <= 0:
                continue
            rate = rates.rate(held.currency)
            value = held.quantity * per_share[held.symbol] if held.symbol in per_share else (
                held.cost / rate if rate else 0.0)
            values[held.bucket] = values.get(held.bucket, 0.0) + value
        return values

    def allocate_deposit(self, session, flow: store.CashFlowRow, rates: Rates) -> None:
        settings = self.settings(session)
        values = self.values(session, rates)
        funding = [rules.Funding(r.id, r.kind, r.status, r.target_share, values.get(r.id, 0.0))
                   for r in store.buckets(session, include_retired=False)]
        rate = rates.rate(flow.currency)
        # without a rate the deposit cannot be weighed against the buckets' values: all to core
        parts = rules.allocate_deposit(flow.amount / rate, funding, settings.satellite_budget) if rate else {}
        booked = 0.0
        for bucket, part in sorted(parts.items()):
            if bucket == rules.CORE or part <= 0:
                continue
            amount = part * rate
            booked += amount
            self.book(session, bucket, cash_flows.DEPOSIT, amount, flow.currency, rates, flow.occurred_at,
                      f"deposit allocation ({flow.reference or flow.broker_id})", flow.id)
        self.book(session, rules.CORE, cash_flows.DEPOSIT, flow.amount - booked, flow.currency, rates,
                  flow.occurred_at, f"deposit allocation ({flow.reference or flow.broker_id})", flow.id)

    def withdraw(self, session, flow: store.CashFlowRow, rates: Rates) -> None:
        balances = {b: v.get(flow.currency, 0.0) for b, v in store.bucket_balances(session).items()}
        for bucket, part in sorted(rules.split_withdrawal(-flow.amount, balances).items()):
            if part:
                self.book(session, bucket, cash_flows.WITHDRAWAL, part, flow.currency, rates, flow.occurred_at,
                          flow.description or "withdrawal", flow.id)

    def after_sell(self, session, bucket: str, pnl: float, cost: float | None, at: datetime) -> None:
        row = session.get(store.BucketRow, bucket)
        if row is None:
            return
        before = _rule(row)
        after = rules.after_sell(before, pnl, cost, at)
        if after != before:
            _save(row, after, at)
            if after.status != before.status:
                event(log, "satellite paused after a loss streak", logging.WARNING, bucket=bucket,
                      losses=after.consecutive_losses)

    def snapshot_inputs(self, session, today: date, previous_taken_at: datetime | None,
                        now: datetime) -> SnapshotInputs:
        """What snapshot_rows needs from the store (read before the valuation is known); the
        flows are those since the previous snapshot was taken (all without one)."""
        latest = self._latest_rows.current()
        before = (latest.rows if latest is not None and latest.day < today
                  else store.last_snapshot_buckets_before(session, today))
        return SnapshotInputs(self._states.read(session, _bucket_states), self._balances.read(session,
                                                                                              store.bucket_balances),
                              self._external_flows(session, previous_taken_at, now), before)

    def _external_flows(self, session, after: datetime | None, until: datetime) -> dict[str, float]:
        """bucket -> its external flows (base) in (after, until]: none, without a query, while
        no external transaction is later than `after` (most days: deposits come monthly)."""
        kinds = rules.EXTERNAL_TRANSACTION_KINDS
        if after is not None:
            latest = self._latest_external.read(session, lambda s: store.latest_bucket_transaction_at(s, kinds))
            if latest is None or latest <= after:
                return {}
        return store.bucket_flows_base(session, kinds, after, until)

    def snapshot_revisions(self) -> tuple[int, ...]:
        """Taken before a snapshot's transaction begins (for `snapshot_taken`)."""
        return self._latest_rows.revisions()

    def snapshot_taken(self, revisions: tuple[int, ...], written: frozenset[str], today: date,
                       rows: list[store.SnapshotBucketRecord], latest: bool) -> None:
        """A snapshot of `today` was committed with these bucket rows (`latest`: no later day
        is stored): they are the latest, unless none were written."""
        if rows and latest:
            self._latest_rows.handed_forward(revisions, written,
                                             LatestSnapshotBuckets(today, {r.bucket: r for r in rows}))

    def snapshot_rows(self, inputs: SnapshotInputs, today: date, view,
                      rates: Rates) -> list[store.SnapshotBucketRecord]:
        """Each bucket's value on a snapshot: virtual cash + its positions at today's valuation,
        external flows since the previous snapshot and the growth index."""
        positions_value: dict[str, float] = {}
        for position in view.positions:
            positions_value[position.bucket] = positions_value.get(position.bucket, 0.0) + \
                position.valued.market_value_base
        balances, flows, before = inputs.balances, inputs.flows, inputs.before
        rows = []
        for row in inputs.buckets:
            cash_base = sum(a / rates.rate(c) for c, a in balances.get(row.id, {}).items() if rates.rate(c))
            value = cash_base + positions_value.get(row.id, 0.0)
            if row.status == rules.RETIRED and not value and row.id not in before:
                continue
            flow = flows.get(row.id, 0.0)
            last = before.get(row.id)
            index = snapshots.next_index(last.growth_index if last else None, last.value_base if last else None,
                                         value, flow)
            rows.append(store.SnapshotBucketRecord(date=today, bucket=row.id, value_base=value, cash_base=cash_base,
                                                   flows_base=flow, growth_index=index))
        return rows

    def performance_points(self, session, bucket: str, start: date | None,
                           end: date | None) -> tuple[list[performance.Point], dict[date, float]]:
        rows = store.snapshot_buckets(session, bucket, start, end)
        return ([performance.Point(r.date, r.value_base, r.flows_base) for r in rows],
                {r.date: r.value_base for r in rows})

    def window_flows(self, session, bucket: str, start: datetime | None, end: datetime) -> dict[str, float]:
        sums = {kind: store.bucket_flows_base(session, frozenset(kinds), start, end).get(bucket, 0.0)
                for kind, kinds in (("fees", (cash_flows.TRADING_FEE, cash_flows.FEE)),
                                    ("dividends", tuple(cash_flows.INCOME_KINDS)),
                                    ("deposits", tuple(rules.EXTERNAL_TRANSACTION_KINDS)))}
        return sums

    # --- reads ---

    def views(self, include_retired: bool, now: datetime) -> list[BucketView]:
        rates = self._peers.rates()
        with self._db.transaction() as session:
            return [self._view(session, row, rates, now) for row in store.buckets(session, include_retired)]

    def view(self, bucket_id: str, now: datetime) -> BucketView:
        rates = self._peers.rates()
        with self._db.transaction() as session:
            return self._view(session, self._row(session, bucket_id), rates, now)

    def _view(self, session, row: store.BucketRow, rates: Rates, now: datetime) -> BucketView:
        values = self.values(session, rates)
        latest = store.snapshots(session, None, 1)
        total = latest[0].total_value_base if latest else None
        history = store.snapshot_buckets(session, row.id)
        index = history[-1].growth_index if history else None
        bucket = _rule(row)
        drawdown = (1 - index / bucket.high_water_mark if index is not None and bucket.high_water_mark else None)
        value = values.get(row.id)
        return BucketView(bucket, row.name, store.bucket_balances(session).get(row.id, {}), value, drawdown,
                          rules.aggression(bucket, value, total, drawdown, now), row.created_at)

    def _row(self, session, bucket_id: str) -> store.BucketRow:
        row = session.get(store.BucketRow, bucket_id)
        if row is None:
            raise NotFound(f"no bucket {bucket_id!r}")
        return row

    def transactions(self, bucket: str, limit: int) -> list[store.BucketTransactionRow]:
        with self._db.transaction() as session:
            if bucket:
                self._row(session, bucket)
            return store.bucket_transactions(session, bucket, limit)

    # --- changes ---

    @serialized
    def create(self, bucket_id: str, name: str, status: str, min_share: float | None, max_share: float | None,
               dividend_handling: str, now: datetime) -> BucketView:
        if not rules.BUCKET_ID.match(bucket_id):
            raise InvalidArgument("id", "lowercase letters, digits, _ and -, starting with a letter or digit, "
                                        f"up to 32: got {bucket_id!r}")
        if status not in (rules.RESEARCH, rules.ACCUMULATING):
            raise InvalidArgument("status", f"a new bucket starts in RESEARCH or ACCUMULATING, not {status.upper()}")
        if dividend_handling not in rules.DIVIDEND_HANDLING:
            raise InvalidArgument("dividend_handling", f"one of {', '.join(rules.DIVIDEND_HANDLING)}")
        with self._db.transaction() as session:
            settings = self.settings(session)
            low = settings.satellite_min if min_share is None else min_share
            high = settings.satellite_max if max_share is None else max_share
            rules.check_target(0.0, low, high)
            if session.get(store.BucketRow, bucket_id) is not None:
                raise AlreadyExists(f"bucket {bucket_id!r} exists")
            session.add(store.BucketRow(id=bucket_id, name=name, kind=rules.SATELLITE_KIND, status=status,
                                        target_share=0.0, min_share=low, max_share=high, consecutive_losses=0,
                                        reawakening=1.0, dividend_handling=dividend_handling, created_at=now,
                                        updated_at=now))
        return self.view(bucket_id, now)

    @serialized
    def update(self, bucket_id: str, changes: dict, now: datetime) -> BucketView:
        """Name, target/min/max shares and dividend handling; core's target follows the budget."""
        if "dividend_handling" in changes and changes["dividend_handling"] not in rules.DIVIDEND_HANDLING:
            raise InvalidArgument("dividend_handling", f"one of {', '.join(rules.DIVIDEND_HANDLING)}")
        with self._db.transaction() as session:
            row = self._row(session, bucket_id)
            shares = {k: changes.get(k, getattr(row, k)) for k in ("target_share", "min_share", "max_share")}
            if row.kind == rules.CORE_KIND and any(k in changes for k in shares):
                raise FailedPrecondition("core_target_follows_budget", "core holds 1 - the satellite budget: "
                                                                       "change the budget (UpdateBucketSettings)")
            rules.check_target(shares["target_share"], shares["min_share"], shares["max_share"])
            others = sum(r.target_share for r in store.buckets(session) if r.kind == rules.SATELLITE_KIND
                         and r.id != bucket_id and r.status != rules.RETIRED)
            budget = self.settings(session).satellite_budget
            if row.kind == rules.SATELLITE_KIND and others + shares["target_share"] > budget + 1e-9:
                raise FailedPrecondition("satellite_budget_exceeded", f"the satellites' targets would add up to "
                                                                      f"{others + shares['target_share']:.4f}, above "
                                                                      f"the budget {budget:.4f}")
            for name, value in changes.items():
                setattr(row, name, value)
            row.updated_at = now
        return self.view(bucket_id, now)

    @serialized
    def transition(self, bucket_id: str, action: str, reason: str, now: datetime) -> BucketView:
        with self._db.transaction() as session:
            row = self._row(session, bucket_id)
            balances = store.bucket_balances(session).get(bucket_id, {})
            status = rules.transition(_rule(row), action, max((abs(a) for a in balances.values()), default=0.0))
            event(log, "bucket transition", bucket=bucket_id, action=action, before=row.status, after=status,
                  reason=reason)
            if status == rules.ACTIVE and row.status == rules.HIBERNATING:
                row.reawakening = rules.REAWAKENING[0]
            row.status, row.updated_at = status, now
        return self.view(bucket_id, now)

    @serialized
    def transfer(self, source: str, destination: str, amount: float, currency: str, reference: str,
                 now: datetime) -> tuple[BucketView, BucketView, bool]:
        rates = self._peers.rates()
        if rates.rate(currency) is None:
            raise FailedPrecondition("fx_rate_missing", f"no {rates.base}{currency} rate")
        with self._db.transaction() as session:
            seen = session.get(store.BucketTransferRow, reference)
            if seen is not None:
                if (seen.from_bucket, seen.to_bucket, seen.currency) != (source, destination, currency) or \
                        abs(seen.amount - amount) >= cash_flows.CENT:
                    raise AlreadyExists(f"reference {reference!r} was used by another transfer")
                applied = False
            else:
                self._transfer(session, source, destination, amount, currency, reference, rates, now)
                applied = True
        return self.view(source, now), self.view(destination, now), applied

    def _transfer(self, session, source: str, destination: str, amount: float, currency: str, reference: str,
                  rates: Rates, now: datetime) -> None:
        from_row, to_row = self._row(session, source), self._row(session, destination)
        balance = store.bucket_balances(session).get(source, {}).get(currency, 0.0)
        values = self.values(session, rates)
        total = sum(values.values())
        moved_base = amount / rates.rate(currency)
        core_after = (values.get(rules.CORE, 0.0) - moved_base) / total if total > 0 else None
        rules.check_transfer(_rule(from_row), _rule(to_row), amount, balance, core_after,
                             self.settings(session).satellite_budget)
        session.add(store.BucketTransferRow(reference=reference, from_bucket=source, to_bucket=destination,
                                            amount=amount, currency=currency, at=now))
        self.book(session, source, "transfer_out", -amount, currency, rates, now, f"to {destination} ({reference})")
        self.book(session, destination, "transfer_in", amount, currency, rates, now, f"from {source} ({reference})")

    # --- the daily and quarterly jobs ---

    @serialized
    def reconcile(self, now: datetime) -> tuple[list[rules.CurrencyCheck], bool]:
        """Virtual balances against the broker's, per currency: a difference up to 5 is booked
        into core (reallocation), a larger one is an alert on the display (nothing changed).
        The FX rates are read only when something is booked, and the display is told to clear
        the alert only when one may be showing (`_alert_shown`): a clean day asks no service."""
        checks = self._kept_checks()
        if checks is None or any(c.action in ("opening_balance", "corrected") for c in checks):
            checks = self._reconciled(now)
        alerts = [c for c in checks if c.action == "alert"]
        if alerts:
            text = "BUCKETS OFF: " + ", ".join(f"{c.currency} {c.difference:+,.2f}" for c in alerts)
            event(log, "bucket balances disagree with the broker", logging.ERROR,
                  differences={c.currency: c.difference for c in alerts})
            shown = self._peers.post_alert(ALERT_SOURCE, text)
            self._alert_shown = True if shown else None
            return checks, shown
        if self._alert_shown is not False:
            self._alert_shown = False if self._peers.clear_alert(ALERT_SOURCE) else None
        return checks, False

    def _kept_checks(self) -> list[rules.CurrencyCheck] | None:
        """The checks from what is kept (the book's cash, the balances, whether any transaction
        exists), without a transaction; None when one of them is not kept."""
        broker = self._kept_broker()
        balances, any_transaction = self._balances.current(), self._any_transaction.current()
        if broker is None or broker[0] is None or balances is None or any_transaction is None:
            return None
        return rules.reconcile(_virtual(balances), broker[1], not any_transaction)

    def _reconciled(self, now: datetime) -> list[rules.CurrencyCheck]:
        """The checks, read in a transaction that books what they correct."""
        rates: Rates | None = None
        with self._db.transaction() as session:
            synced_at, broker_cash = self._broker(session)
            if synced_at is None:
                raise FailedPrecondition("not_synced", "no broker state yet: sync the broker first")
            virtual = _virtual(self._balances.read(session, store.bucket_balances))
            checks = rules.reconcile(virtual, broker_cash,
                                     not self._any_transaction.read(session, store.any_bucket_transaction))
            for check in checks:
                if check.action in ("opening_balance", "corrected") and rates is None:
                    rates = self._peers.rates()
                if check.action == "opening_balance":
                    self.book(session, rules.CORE, "opening_balance", check.broker, check.currency, rates, now,
                              "the broker's balance when the buckets began")
                elif check.action == "corrected":
                    self.book(session, rules.CORE, "reallocation", -check.difference, check.currency, rates, now,
                              f"reconciliation: virtual {check.virtual_total:.2f} vs broker {check.broker:.2f}")
        return checks

    @serialized
    def maintain(self, now: datetime) -> list[Maintenance]:
        results = []
        with self._db.transaction() as session:
            for row in store.buckets(session, include_retired=False):
                history = store.snapshot_buckets(session, row.id)
                before = _rule(row)
                after, note, drawdown = rules.maintain(before, history[-1].growth_index if history else None, now)
                if after != before:
                    _save(row, after, now)
                if note in ("hibernated", "reawakened", "warning"):
                    event(log, f"bucket {note}", logging.WARNING, bucket=row.id, drawdown=drawdown)
                results.append(Maintenance(row.id, before.status, after.status, drawdown, note))
        return results

    @serialized
    def meta_allocate(self, now: datetime, dry_run: bool) -> tuple[list[MetaChange], float, bool]:
        """New satellite targets from their composite scores over the last 90 days."""
        with self._db.transaction() as session:
            settings = self.settings(session)
            satellites = [r for r in store.buckets(session, include_retired=False)
                          if r.kind == rules.SATELLITE_KIND and r.status in rules.TRADING_STATUSES]
            scores = {r.id: self._composite(session, r.id, now) for r in satellites}
            current = {r.id: r.target_share for r in satellites}
            targets = rules.meta_allocate(scores, current, settings)
            changes = [MetaChange(b, scores[b], current[b], targets[b], rules.change_kind(current[b], targets[b]))
                       for b in sorted(targets)]
            if not dry_run:
                for row in satellites:
                    row.target_share = min(row.max_share, targets[row.id])
                    row.updated_at = now
        return changes, settings.satellite_budget, not dry_run

    def _composite(self, session, bucket: str, now: datetime) -> float | None:
        start = now - METRICS_WINDOW
        sells = [performance.Sell(f.executed_at, f.realized_pnl * f.value_base / (f.quantity * f.price),
                                  f.realized_pnl / f.cost_basis if f.cost_basis else None)
                 for f in store.fills(session, None, bucket=bucket, start=start, end=now, side="SELL")
                 if f.realized_pnl is not None and f.value_base is not None and f.quantity * f.price]
        history = store.snapshot_buckets(session, bucket, start.date(), now.date())
        start_value = history[0].value_base if history else None
        return performance.trade_metrics(sells, start_value, METRICS_WINDOW.days).composite_score
