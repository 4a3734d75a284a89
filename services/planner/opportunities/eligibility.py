"""Which side of a trade the planner may propose for a security now (planner.md section 2
"Opportunities", fact 1; decisions.md rule 7). Pure: `today` is passed in.

The rules are trading's (its GetSettings: min_hold_days, sell_cooldown_days, buy_cooldown_days,
max_sell_loss) or the planner configuration's, whichever is stricter, so the planner never
proposes what trading refuses:
- SELL: `allow_sell` (the security's flag and the configuration's), `market_closed` (a SELL
  needs its market open; unknown counts closed), `min_hold` (the last BUY), `sell_cooldown`
  (the last SELL), `holding_period` (the original's rule: both periods count from the last
  transaction, BUY or SELL, so effectively the longer one after any trade), `max_sell_loss`
  (a loss worse than the floor, or no average cost to tell). Days are whole calendar days and a
  period ends only the day after it has fully passed: trading counts fractional days from the
  fill's time, so this is never earlier than trading.
- BUY: what eligibility.screen says trading refuses (allow_buy, market_closed, price, FX,
  cash, trading's buy cooldown), the configuration's allow_buy and its buy cooldown (the
  stricter of the two), and a BUY dismissed for the state. The quality threshold is the
  heuristic calculators' own rule (min_security_score), not a block here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from services.planner.config import PlannerSection
from services.planner.eligibility import TradingRules
from services.planner.opportunities.book import PositionView


@dataclass(frozen=True)
class HoldingRules:
    min_hold_days: int
    sell_cooldown_days: int
    buy_cooldown_days: int
    max_sell_loss: float


def holding_rules(trading: TradingRules, planner: PlannerSection) -> HoldingRules:
    """The stricter of trading's rule and the configuration's, for each."""
    return HoldingRules(max(trading.min_hold_days, planner.min_hold_days),
                        max(trading.sell_cooldown_days, planner.sell_cooldown_days),
                        max(trading.buy_cooldown_days, planner.buy_cooldown_days),
                        max(trading.max_sell_loss, planner.max_loss_threshold))


def _within(day: date | None, today: date, days: int) -> int | None:
    """Days since `day` when that is `days` or fewer (the period has not fully passed)."""
    if day is None:
        return None
    since = (today - day).days
    return since if since <= days else None


def sell_block(symbol: str, position: PositionView, price: float, allow_sell: bool, market_open: bool | None,
               rules: HoldingRules, today: date) -> str:
    """"rule: detail" of the first rule that refuses a SELL of `position` now, or ""."""
    if not allow_sell:
        return f"allow_sell: {symbol} may not be sold"
    if market_open is not True:
        return f"market_closed: the market of {symbol} is {'closed' if market_open is False else 'in an unknown state'}"
    since = _within(position.last_buy, today, rules.min_hold_days)
    if since is not None:
        return f"min_hold: {symbol} was bought {since} days ago (minimum hold {rules.min_hold_days} days)"
    since = _within(position.last_sell, today, rules.sell_cooldown_days)
    if since is not None:
        return f"sell_cooldown: {symbol} was sold {since} days ago (cooldown {rules.sell_cooldown_days} days)"
    last = max((d for d in (position.first_buy, position.last_buy, position.last_sell) if d is not None), default=None)
    period = max(rules.min_hold_days, rules.sell_cooldown_days)
    since = _within(last, today, period)
    if since is not None:
        return (f"holding_period: the last transaction in {symbol} was {since} days ago (no SELL within "
                f"{period} days of the last transaction)")
    gain = position.gain(price)
    if gain is None:
        return f"max_sell_loss: the average cost of {symbol} is unknown"
    if gain < rules.max_sell_loss:
        return f"max_sell_loss: selling {symbol} at {gain:.1%} is below the {rules.max_sell_loss:.0%} floor"
    return ""


def buy_block(symbol: str, screened: str, allow_buy: bool, last_buy: datetime | None, rules: HoldingRules,
              today: date, dismissed: bool) -> str:
    """"rule: detail" of the first rule that refuses a BUY now, or "". `screened` is trading's
    refusal found by eligibility.screen ("" when it would buy)."""
    if screened:
        return screened
    if not allow_buy:
        return "allow_buy: the planner configuration allows no BUY"
    if last_buy is not None:
        since = _within(last_buy.date(), today, rules.buy_cooldown_days - 1)
        if since is not None:
            return f"buy_cooldown: {symbol} was bought {since} days ago (cooldown {rules.buy_cooldown_days} days)"
    if dismissed:
        return f"dismissed: the BUY of {symbol} was dismissed for this state"
    return ""

