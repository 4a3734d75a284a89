"""Buckets: the core portfolio plus satellites, each with virtual cash per currency
(trading-portfolio-jobs.md section 6, decisions.md rule 17). Pure functions on plain data.

Invariant: for each currency, the buckets' balances add up to the broker's balance. Every cash
flow of the books is booked into exactly one bucket (a deposit split over several), every
change with a transaction row, and what no rule assigns goes to core.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.common.errors import FailedPrecondition, InvalidArgument

CORE = "core"
CORE_KIND, SATELLITE_KIND = "core", "satellite"
RESEARCH, ACCUMULATING, ACTIVE, HIBERNATING, PAUSED, RETIRED = (
    "research", "accumulating", "active", "hibernating", "paused", "retired")
STATUSES = (RESEARCH, ACCUMULATING, ACTIVE, HIBERNATING, PAUSED, RETIRED)
TRADING_STATUSES = frozenset({ACTIVE, ACCUMULATING})  # new trades only in these
ACTIVATE, PAUSE, RESUME, HIBERNATE, RETIRE = "activate", "pause", "resume", "hibernate", "retire"
# transition -> (the rule's name, the statuses it may start from)
TRANSITIONS: dict[str, tuple[str, frozenset[str]]] = {
    ACTIVATE: ("activate_from_research_or_accumulating", frozenset({RESEARCH, ACCUMULATING})),
    PAUSE: ("pause_not_from_paused_or_retired", frozenset({RESEARCH, ACCUMULATING, ACTIVE, HIBERNATING})),
    RESUME: ("resume_only_from_paused", frozenset({PAUSED})),
    HIBERNATE: ("hibernate_not_from_research_retired_or_hibernating", frozenset({ACCUMULATING, ACTIVE, PAUSED})),
    RETIRE: ("retire_only_from_paused", frozenset({PAUSED})),
}
DIVIDEND_HANDLING = ("reinvest_same", "send_to_core", "accumulate_cash")
BUCKET_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

MAX_BUDGET = 0.30
MAX_LOSS_STREAK = 5
HIBERNATE_AT, WARN_AT, AWAKEN_BELOW = 0.35, 0.25, 0.30   # drawdown from the high-water mark
WIN_COOLDOWN_GAIN, WIN_COOLDOWN, WIN_COOLDOWN_FACTOR = 0.20, timedelta(days=30), 0.75
REAWAKENING = (0.25, 0.5, 0.75, 1.0)
RETIRE_MAX_CASH = 0.01
RECONCILED_BELOW, CORRECTABLE_UP_TO = 0.01, 5.0
NO_CHANGE_BELOW, MAJOR_ABOVE = 0.005, 0.02

# Transaction kinds that move money into or out of a bucket from outside its own trading: its
# "external flows", excluded from its returns like deposits from the account's.
EXTERNAL_TRANSACTION_KINDS = frozenset({"deposit", "withdrawal", "transfer_in", "transfer_out", "reallocation",
                                        "opening_balance"})


@dataclass(frozen=True)
class BucketSettings:
    """One set of defaults (the original's meta-allocator read other ones: unified here)."""

    satellite_budget: float = 0.0
    satellite_min: float = 0.02
    satellite_max: float = 0.15
    dampening: float = 0.5

    def validated(self) -> BucketSettings:
        if not 0 <= self.satellite_budget <= MAX_BUDGET:
            raise InvalidArgument("satellite_budget",
                                  f"must be between 0 and {MAX_BUDGET}, got {self.satellite_budget!r}")
        for name in ("satellite_min", "satellite_max", "dampening"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise InvalidArgument(name, f"must be between 0 and 1, got {value!r}")
        if self.satellite_min > self.satellite_max:
            raise InvalidArgument("satellite_min", f"{self.satellite_min} is above satellite_max {self.satellite_max}")
        return self


@dataclass(frozen=True)
class Bucket:
    id: str
    kind: str
    status: str
    target_share: float
    min_share: float
    max_share: float
    consecutive_losses: int = 0
    high_water_mark: float | None = None     # of the bucket's growth index
    high_water_mark_at: datetime | None = None
    loss_streak_paused_at: datetime | None = None
    reawakening: float = 1.0
    win_cooldown_until: datetime | None = None
    dividend_handling: str = "reinvest_same"


# --- lifecycle ---

def transition(bucket: Bucket, action: str, largest_balance: float) -> str:
    """The status `action` moves the bucket to; FailedPrecondition naming the rule otherwise.
    `largest_balance` is the largest absolute virtual balance of the bucket (retiring needs
    every balance at most 0.01)."""
    if action not in TRANSITIONS:
        raise InvalidArgument("transition", f"unknown transition {action!r}")
    if bucket.kind == CORE_KIND and action == HIBERNATE:
        raise FailedPrecondition("core_never_hibernates", "the core bucket cannot hibernate")
    if bucket.kind == CORE_KIND and action == RETIRE:
        raise FailedPrecondition("core_is_permanent", "the core bucket cannot be retired")
    rule, allowed_from = TRANSITIONS[action]
    if bucket.status not in allowed_from:
        raise FailedPrecondition(rule, f"bucket {bucket.id} is {bucket.status}; {action} needs "
                                       f"{' or '.join(sorted(allowed_from))}")
    if action == RETIRE and largest_balance > RETIRE_MAX_CASH:
        raise FailedPrecondition("retire_needs_empty_balances", f"bucket {bucket.id} still holds "
                                                                f"{largest_balance:.2f}; transfer it out first")
    return {ACTIVATE: ACTIVE, PAUSE: PAUSED, HIBERNATE: HIBERNATING, RETIRE: RETIRED,
            RESUME: ACTIVE if bucket.target_share >= bucket.min_share else ACCUMULATING}[action]


def check_target(target: float, minimum: float, maximum: float, field: str = "target_share") -> None:
    for name, value in ((field, target), ("min_share", minimum), ("max_share", maximum)):
        if not 0 <= value <= 1:
            raise InvalidArgument(name, f"must be between 0 and 1, got {value!r}")
    if minimum > maximum:
        raise InvalidArgument("min_share", f"{minimum} is above max_share {maximum}")
    if target > maximum:
        raise InvalidArgument(field, f"{target} is above the bucket's max_share {maximum}")


# --- money in and out ---

@dataclass(frozen=True)
class Funding:
    """A bucket as the deposit allocation sees it: value in the base currency (virtual cash plus
    its positions at the last snapshot)."""

    id: str
    kind: str
    status: str
    target_share: float
    value_base: float


def allocate_deposit(amount: float, buckets: list[Funding], budget: float) -> dict[str, float]:
    """Split a deposit (any currency; shares computed in base values): core is topped up to
    (1 - budget) of the new total first, the rest goes to ACTIVE or ACCUMULATING satellites with
    a target in proportion to their deficits (new total * target - value), never beyond them,
    and whatever is left goes to core. The parts add up to `amount` exactly (core takes the
    remainder). `amount` and the values must be in the same unit (base)."""
    new_total = sum(b.value_base for b in buckets) + amount
    core_value = sum(b.value_base for b in buckets if b.id == CORE)
    to_core = min(amount, max(0.0, new_total * (1 - budget) - core_value))
    rest = amount - to_core
    deficits = {b.id: max(0.0, new_total * b.target_share - b.value_base) for b in buckets
                if b.kind == SATELLITE_KIND and b.status in TRADING_STATUSES and b.target_share > 0}
    total_deficit = sum(deficits.values())
    parts = {}
    if rest > 0 and total_deficit > 0:
        given = min(rest, total_deficit)
        parts = {b: given * d / total_deficit for b, d in deficits.items() if d > 0}
    parts[CORE] = amount - sum(parts.values())
    return parts


def split_withdrawal(amount: float, balances: Mapping[str, float]) -> dict[str, float]:
    """Take `amount` (positive) of one currency out: from core's balance first, then from the
    satellites in proportion to their positive balances; what they cannot cover comes from core
    (its balance goes negative and the daily reconciliation shows it). Negative parts, summing
    to -amount."""
    parts: dict[str, float] = {}
    from_core = min(amount, max(0.0, balances.get(CORE, 0.0)))
    remaining = amount - from_core
    satellites = {b: v for b, v in balances.items() if b != CORE and v > 0}
    available = sum(satellites.values())
    if remaining > 0 and available > 0:
        taken = min(remaining, available)
        parts = {b: -taken * v / available for b, v in satellites.items()}
    parts[CORE] = -(amount - sum(-p for p in parts.values()))
    return parts


def check_transfer(source: Bucket, destination: Bucket, amount: float, source_balance: float,
                   core_share_after: float | None, budget: float) -> None:
    """A transfer between two buckets, as the original allowed it; FailedPrecondition naming
    the rule when refused."""
    if destination.status == RETIRED:
        raise FailedPrecondition("bucket_retired", f"bucket {destination.id} is retired")
    if source_balance < amount:
        raise FailedPrecondition("insufficient_bucket_funds", f"bucket {source.id} holds {source_balance:.2f}, "
                                                              f"less than {amount:.2f}")
    if source.id == CORE and core_share_after is not None and core_share_after < 1 - budget - 1e-9:
        raise FailedPrecondition("core_minimum_share", f"core would hold {core_share_after:.1%} of the portfolio, "
                                                       f"below 1 - satellite budget = {1 - budget:.1%}")


# --- risk controls ---

def after_sell(bucket: Bucket, pnl: float, cost: float | None, at: datetime) -> Bucket:
    """A satellite's SELL with realised P&L: a win resets the loss streak and advances the
    re-awakening; a gain of 20% or more starts a 30-day cooldown; a loss counts toward the
    streak (5 pause an ACTIVE or ACCUMULATING satellite) and resets the re-awakening to 0.25.
    Core keeps trading whatever its streak: it is the long-term portfolio."""
    if bucket.kind == CORE_KIND or pnl == 0:
        return bucket
    if pnl > 0:
        cooldown = bucket.win_cooldown_until
        if cost and cost > 0 and pnl / cost >= WIN_COOLDOWN_GAIN:
            cooldown = at + WIN_COOLDOWN
        return replace(bucket, consecutive_losses=0, reawakening=_next_step(bucket.reawakening),
                       win_cooldown_until=cooldown)
    losses = bucket.consecutive_losses + 1
    reawakening = REAWAKENING[0] if bucket.reawakening < 1 else 1.0
    if losses >= MAX_LOSS_STREAK and bucket.status in TRADING_STATUSES:
        return replace(bucket, consecutive_losses=losses, reawakening=reawakening, status=PAUSED,
                       loss_streak_paused_at=at)
    return replace(bucket, consecutive_losses=losses, reawakening=reawakening)


def _next_step(current: float) -> float:
    return next((step for step in REAWAKENING if step > current), 1.0)


def maintain(bucket: Bucket, index: float | None, now: datetime) -> tuple[Bucket, str, float | None]:
    """Daily: (bucket, note, drawdown) from the bucket's growth index (time-weighted, external
    flows excluded). A new high resets the loss streak; a drawdown of 35% hibernates a
    satellite; 25% warns; a hibernating bucket re-awakens below 30% (ACTIVE, or ACCUMULATING
    below its minimum share) at a quarter of its aggression."""
    if index is None or index <= 0:
        return bucket, "no_value", None
    note = ""
    if bucket.high_water_mark is None or index > bucket.high_water_mark:
        bucket = replace(bucket, high_water_mark=index, high_water_mark_at=now, consecutive_losses=0)
        note = "new_high"
    drawdown = 1 - index / bucket.high_water_mark
    if bucket.status == HIBERNATING and drawdown < AWAKEN_BELOW:
        status = ACTIVE if bucket.target_share >= bucket.min_share else ACCUMULATING
        return replace(bucket, status=status, reawakening=REAWAKENING[0]), "reawakened", drawdown
    if bucket.kind != CORE_KIND and bucket.status in (ACCUMULATING, ACTIVE, PAUSED) and drawdown >= HIBERNATE_AT:
        return replace(bucket, status=HIBERNATING), "hibernated", drawdown
    if drawdown >= WARN_AT:
        note = "warning"
    return bucket, note, drawdown


def allocation_factor(value_base: float | None, target_value_base: float) -> float:
    """Value as a fraction of the target value: >= 1 -> 1, >= .8 -> .8, >= .6 -> .6, >= .4 -> .4, else 0."""
    if value_base is None or target_value_base <= 0:
        return 0.0
    ratio = value_base / target_value_base
    return next((step for step in (1.0, 0.8, 0.6, 0.4) if ratio >= step), 0.0)


def drawdown_factor(drawdown: float | None) -> float:
    if drawdown is None:
        return 1.0
    return 0.0 if drawdown >= 0.35 else 0.3 if drawdown >= 0.25 else 0.7 if drawdown >= 0.15 else 1.0


def aggression(bucket: Bucket, value_base: float | None, portfolio_value_base: float | None,
               drawdown: float | None, now: datetime) -> float:
    """Planned quantities are scaled by this: core 1; a satellite min(allocation factor,
    drawdown factor), x0.75 during a win cooldown, x its re-awakening step; 0 unless it may trade."""
    if bucket.kind == CORE_KIND:
        return 1.0 if bucket.status in TRADING_STATUSES else 0.0
    if bucket.status not in TRADING_STATUSES or not portfolio_value_base:
        return 0.0
    factor = min(allocation_factor(value_base, bucket.target_share * portfolio_value_base), drawdown_factor(drawdown))
    if bucket.win_cooldown_until is not None and now < bucket.win_cooldown_until:
        factor *= WIN_COOLDOWN_FACTOR
    return factor * bucket.reawakening


# --- the quarterly meta-allocator ---

def meta_allocate(scores: Mapping[str, float | None], current: Mapping[str, float],
                  settings: BucketSettings) -> dict[str, float]:
    """New targets of the satellites scored: composite scores (missing: 0) shifted to at least
    0.01, share = s / sum(s) * budget clamped to [min, max], moved `dampening` of the way from the
    current target, and rescaled so they add up to the budget."""
    if not scores:
        return {}
    values = {b: (s if s is not None else 0.0) for b, s in scores.items()}
    low = min(values.values())
    shifted = {b: s - low + 0.01 for b, s in values.items()}
    total = sum(shifted.values())
    shares = {b: min(settings.satellite_max, max(settings.satellite_min, s / total * settings.satellite_budget))
              for b, s in shifted.items()}
    moved = {b: current.get(b, 0.0) + (shares[b] - current.get(b, 0.0)) * settings.dampening for b in shares}
    moved_total = sum(moved.values())
    if moved_total <= 0:
        return {b: 0.0 for b in moved}
    return {b: v * settings.satellite_budget / moved_total for b, v in moved.items()}


def change_kind(old: float, new: float) -> str:
    delta = abs(new - old)
    return "none" if delta < NO_CHANGE_BELOW else "major" if delta > MAJOR_ABOVE else "minor"


# --- daily reconciliation ---

@dataclass(frozen=True)
class CurrencyCheck:
    currency: str
    virtual_total: float
    broker: float
    difference: float
    action: str  # ok, corrected, alert, opening_balance


def reconcile(virtual: Mapping[str, float], broker: Mapping[str, float], never_booked: bool) -> list[CurrencyCheck]:
    """Per currency, virtual total - broker balance: below 0.01 ok; up to 5 corrected (core
    adjusted by -difference); otherwise an alert and nothing changed. Buckets that never booked
    anything take the whole broker balance into core (opening_balance)."""
    checks = []
    for currency in sorted(set(virtual) | set(broker)):
        v, b = virtual.get(currency, 0.0), broker.get(currency, 0.0)
        difference = v - b
        if never_booked and b != 0:
            action = "opening_balance"
        elif abs(difference) < RECONCILED_BELOW:
            action = "ok"
        elif abs(difference) <= CORRECTABLE_UP_TO:
            action = "corrected"
        else:
            action = "alert"
        checks.append(CurrencyCheck(currency, v, b, difference, action))
    return checks
