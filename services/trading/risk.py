"""The pre-trade risk check: one function that every order passes (plans, manual orders,
dividend reinvestment, the emergency path). Pure: facts in, a decision or a refusal out.

Each refusal is FailedPrecondition with the rule's name first. A fact that could not be looked
up arrives as None and refuses the order (fail closed). The emergency path may skip the holding
rules and the frequency caps, and nothing else (decisions.md rule 15).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta

from services.common.errors import FailedPrecondition, InvalidArgument
from services.trading.orders import BUY, SELL, conversion_for

STRICT_EXCHANGES = frozenset({"XHKG", "XSHG", "XTSE", "XASX"})  # BUYs need an open market there too
TRADING_MODES = ("replay", "backtest", "paper", "live")           # research places no order at all


@dataclass(frozen=True)
class RiskSettings:
    """Limits stored in the trading service and changed over gRPC (UpdateSettings)."""

    trading_enabled: bool = True              # the owner's kill switch
    min_minutes_between_trades: int = 60      # decisions.md rule 8
    max_trades_per_day: int = 4
    max_trades_per_week: int = 10             # rolling 7 days
    buy_cooldown_days: int = 30               # rule 7: no BUY within 30 days of the last BUY
    min_hold_days: int = 90                   # no SELL within 90 days of the last BUY
    sell_cooldown_days: int = 180             # no SELL within 180 days of the last SELL
    max_sell_loss: float = -0.20              # no SELL at a loss worse than this
    daily_loss_sell_block: float = -0.02      # rule 9: SELLs blocked at this daily P&L
    daily_loss_halt: float = -0.05            # everything halted at this daily P&L
    max_price_age_days: int = 4               # calendar days between the quote's bar and now
    price_band: float = 0.05                  # limit price at reference +- band
    auto_convert_currency: bool = True        # foreign BUYs convert the deficit + 2%

    LIMITS = {
        "min_minutes_between_trades": (0, 24 * 60), "max_trades_per_day": (1, 100),
        "max_trades_per_week": (1, 500), "buy_cooldown_days": (0, 3650), "min_hold_days": (0, 3650),
        "sell_cooldown_days": (0, 3650), "max_sell_loss": (-1.0, 0.0), "daily_loss_sell_block": (-1.0, 0.0),
        "daily_loss_halt": (-1.0, 0.0), "max_price_age_days": (0, 30), "price_band": (0.001, 0.2),
    }

    def validated(self) -> RiskSettings:
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise InvalidArgument(f"settings.{name}", f"must be between {low:g} and {high:g}, got {value!r}")
        if self.daily_loss_halt > self.daily_loss_sell_block:
            raise InvalidArgument("settings.daily_loss_halt", "must be at or below daily_loss_sell_block")
        if self.max_trades_per_day > self.max_trades_per_week:
            raise InvalidArgument("settings.max_trades_per_day", "must not exceed max_trades_per_week")
        return self

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class OrderFacts:
    """What the check knows about one order, gathered before it runs. None = could not be known."""

    symbol: str
    side: str
    quantity: int
    now: datetime
    mode: str
    currency: str
    exchange: str
    lot_size: int
    allow: bool                      # allow_buy or allow_sell, by side; False for an index
    market_open: bool | None
    quote_price: float | None
    quote_date: date | None
    limit_price: float | None        # the caller's limit, None = market order at the band
    held_quantity: int | None
    average_cost: float | None
    last_buy_at: datetime | None
    last_sell_at: datetime | None
    ledger_known: bool               # the trade history could be read (holding rules need it)
    trade_times: list[datetime] | None  # fills of every symbol, for the frequency caps
    daily_pnl: float | None          # vs the last snapshot before today; None = cannot be checked
    daily_pnl_armed: bool            # False while no snapshot before today exists (new account)
    cash_available: float | None     # in the order currency, after pending BUYs (may be negative)
    commission: float | None         # in the order currency; None = no FX rate to price the fee
    pending_same_side: bool | None
    reconciled: bool
    emergency: bool = False
    # A BUY in a foreign currency may convert the missing amount from the base currency first:
    # the free base balance (after pending BUYs in it) it may draw on, or None when no automatic
    # conversion is possible (same currency, a SELL, switched off, or the broker cannot convert).
    convertible_base_cash: float | None = None
    base_currency: str = ""
    rates: Mapping[str, float] = field(default_factory=dict)  # units of a currency per 1 base unit


@dataclass(frozen=True)
class Approval:
    quantity: int
    reference_price: float
    limit_price: float
    required_cash: float  # value at the limit + commission, BUYs only (0 for SELLs)
    notes: list[str] = field(default_factory=list)
    conversion: float = 0.0  # base currency to convert first (whole cents), 0 when none is needed


def refuse(rule: str, detail: str):
    raise FailedPrecondition(rule, detail)


def check(facts: OrderFacts, settings: RiskSettings) -> Approval:
    """Approve the order or raise FailedPrecondition naming the first rule it breaks."""
    _mode(facts, settings)
    _market(facts)
    reference, limit = _price(facts, settings)
    quantity = _quantity(facts)
    if not facts.emergency:
        _holding_rules(facts, settings, reference)
        _frequency(facts, settings)
    _daily_loss(facts, settings)
    _pending(facts)
    required, conversion = _cash(facts, quantity, limit)
    return Approval(quantity, reference, limit, required, conversion=conversion)


def _mode(facts: OrderFacts, settings: RiskSettings) -> None:
    if facts.mode not in TRADING_MODES:
        refuse("trading_mode", f"mode {facts.mode!r} places no orders")
    if not settings.trading_enabled:
        refuse("trading_disabled", "trading is switched off in the settings")
    if not facts.reconciled:
        refuse("reconciliation", "the books disagree with the broker; reconcile first")
    if not facts.allow:
        refuse("allow_buy" if facts.side == BUY else "allow_sell",
               f"{facts.symbol} may not be {'bought' if facts.side == BUY else 'sold'}")


def _market(facts: OrderFacts) -> None:
    needs_open = facts.side == SELL or facts.exchange in STRICT_EXCHANGES
    if needs_open and facts.market_open is not True:
        state = "unknown" if facts.market_open is None else "closed"
        refuse("market_closed", f"{facts.exchange or 'the exchange'} is {state} (a {facts.side} there needs it open)")


def _price(facts: OrderFacts, settings: RiskSettings) -> tuple[float, float]:
    if facts.quote_price is None or facts.quote_date is None or not facts.quote_price > 0:
        refuse("price_unavailable", f"no valid price for {facts.symbol} as of now")
    age = (facts.now.date() - facts.quote_date).days
    if age > settings.max_price_age_days:
        refuse("price_stale", f"the latest price of {facts.symbol} is from {facts.quote_date} ({age} days old, "
                              f"limit {settings.max_price_age_days})")
    reference = facts.quote_price
    band = reference * settings.price_band
    worst = reference + band if facts.side == BUY else reference - band
    if facts.limit_price is None:
        return reference, worst
    if not facts.limit_price > 0 or abs(facts.limit_price - reference) > band + 1e-9:
        refuse("price_band", f"limit {facts.limit_price:g} is outside {reference:g} +- {settings.price_band:.1%}")
    return reference, facts.limit_price


def _quantity(facts: OrderFacts) -> int:
    quantity = facts.quantity - facts.quantity % max(1, facts.lot_size)  # whole lots, rounded down
    if quantity <= 0:
        refuse("lot_size", f"{facts.quantity} is less than one lot of {facts.lot_size}")
    if facts.side == SELL:
        if facts.held_quantity is None:
            refuse("holding", f"the holding of {facts.symbol} could not be read")
        if quantity > facts.held_quantity:
            refuse("holding", f"SELL {quantity} {facts.symbol} exceeds the holding of {facts.held_quantity}")
    return quantity


def _days_since(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else (now - moment).total_seconds() / 86400


def _holding_rules(facts: OrderFacts, settings: RiskSettings, reference: float) -> None:
    if not facts.ledger_known:
        refuse("holding_rules", "the trade history could not be read")
    since_buy = _days_since(facts.last_buy_at, facts.now)
    if facts.side == BUY:
        if since_buy is not None and since_buy < settings.buy_cooldown_days:
            refuse("buy_cooldown", f"{facts.symbol} was bought {since_buy:.0f} days ago "
                                   f"(cooldown {settings.buy_cooldown_days} days)")
        return
    if since_buy is not None and since_buy < settings.min_hold_days:
        refuse("min_hold", f"{facts.symbol} was bought {since_buy:.0f} days ago (minimum hold "
                           f"{settings.min_hold_days} days)")
    since_sell = _days_since(facts.last_sell_at, facts.now)
    if since_sell is not None and since_sell < settings.sell_cooldown_days:
        refuse("sell_cooldown", f"{facts.symbol} was sold {since_sell:.0f} days ago (cooldown "
                                f"{settings.sell_cooldown_days} days)")
    if facts.average_cost is None or not facts.average_cost > 0:
        refuse("max_sell_loss", f"the average cost of {facts.symbol} is unknown")
    loss = reference / facts.average_cost - 1
    if loss < settings.max_sell_loss:
        refuse("max_sell_loss", f"selling {facts.symbol} at {loss:.1%} is below the {settings.max_sell_loss:.0%} floor")


def _frequency(facts: OrderFacts, settings: RiskSettings) -> None:
    if facts.trade_times is None:
        refuse("frequency", "the trade history could not be read")
    now = facts.now
    if facts.trade_times:
        minutes = (now - max(facts.trade_times)).total_seconds() / 60
        if minutes < settings.min_minutes_between_trades:
            refuse("min_time_between_trades", f"the last trade was {minutes:.0f} minutes ago "
                                              f"(minimum {settings.min_minutes_between_trades})")
    today = sum(1 for t in facts.trade_times if t.date() == now.date())
    if today >= settings.max_trades_per_day:
        refuse("max_trades_per_day", f"{today} trades today (limit {settings.max_trades_per_day})")
    week = sum(1 for t in facts.trade_times if now - t < timedelta(days=7))
    if week >= settings.max_trades_per_week:
        refuse("max_trades_per_week", f"{week} trades in 7 days (limit {settings.max_trades_per_week})")


def _daily_loss(facts: OrderFacts, settings: RiskSettings) -> None:
    if not facts.daily_pnl_armed:
        return  # no snapshot before today yet (a new account): nothing to compare with
    if facts.daily_pnl is None:
        refuse("daily_pnl", "today's P&L could not be computed")
    if facts.daily_pnl <= settings.daily_loss_halt:
        refuse("daily_loss_halt", f"today's P&L {facts.daily_pnl:.2%} is at or below {settings.daily_loss_halt:.0%}: "
                                  "all trading halted")
    if facts.side == SELL and facts.daily_pnl <= settings.daily_loss_sell_block:
        refuse("daily_loss_sell_block", f"today's P&L {facts.daily_pnl:.2%} is at or below "
                                        f"{settings.daily_loss_sell_block:.0%}: SELLs blocked")


def _pending(facts: OrderFacts) -> None:
    if facts.pending_same_side is None:
        refuse("pending_order", "open orders could not be read")
    if facts.pending_same_side:
        refuse("pending_order", f"a {facts.side} order for {facts.symbol} is still open")


def _cash(facts: OrderFacts, quantity: int, limit: float) -> tuple[float, float]:
    """(cash required in the order currency, base currency to convert first). The conversion is
    the one `orders.conversion_for` computes, in whole cents: the same amount the engine then
    converts, so an order this allows is never refused for a rounded-up cent."""
    if facts.side == SELL:
        return 0.0, 0.0
    if facts.commission is None:
        refuse("fx_rate_missing", f"no {facts.base_currency or 'base'}{facts.currency} rate to price the commission")
    required = quantity * limit + facts.commission
    if facts.cash_available is None:
        refuse("cash", f"the {facts.currency} balance could not be read")
    if required <= facts.cash_available + 1e-9:
        return required, 0.0
    if facts.convertible_base_cash is None:
        if facts.cash_available < 0:
            refuse("cash", f"the {facts.currency} balance is negative ({facts.cash_available:.2f})")
        refuse("cash", f"needs {required:.2f} {facts.currency} (at the limit, with commission), "
                       f"{facts.cash_available:.2f} available")
    return required, conversion_for(required, facts.cash_available, facts.currency, facts.convertible_base_cash,
                                    facts.base_currency, facts.rates)
