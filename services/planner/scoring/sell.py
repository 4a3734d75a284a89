"""Sell scoring (planner.md section 1, `sell.py` of the original): hard blocks, five weighted
components and the quantity to sell. Pure: `today` is passed in.

Hard blocks follow trading's rules (decisions.md rule 7, the same names trading refuses with):
`allow_sell`, `min_hold` (90 days since the last BUY), `sell_cooldown` (180 days since the last
SELL), `max_sell_loss` (a loss worse than -20%, or no average cost to tell) and
`holding_rules` (the fill dates could not be read: fail closed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

from services.planner.scoring.curves import NEUTRAL, clamp, known
from services.planner.scoring.inputs import Holding, Metrics, PortfolioContext
from services.trading.risk import RiskSettings  # trading's rules, read where they are defined

WEIGHTS = {"underperformance": 0.35, "time_held": 0.18, "balance": 0.18, "instability": 0.14, "drawdown": 0.15}
UNKNOWN_DAYS_HELD = 365          # assumed when the first buy is unknown
UNKNOWN_TIME_HELD = 0.6
NO_TECHNICAL_DATA = 0.3          # instability part (or all of it) without its indicators
NO_DRAWDOWN_DATA = 0.3
TARGET_RETURN = (0.08, 0.15)     # annual return band where a holding is doing its job
MIN_SELL_FRACTION, MAX_SELL_FRACTION = 0.1, 0.5
MIN_SELL_VALUE_BASE = 100.0


@dataclass(frozen=True)
class SellRules:
    """Trading's holding rules (trading GetSettings); defaults are trading's defaults."""

    min_hold_days: int = RiskSettings.min_hold_days
    sell_cooldown_days: int = RiskSettings.sell_cooldown_days
    max_sell_loss: float = RiskSettings.max_sell_loss


@dataclass(frozen=True)
class SellScore:
    symbol: str
    eligible: bool
    total: float                      # 0..1, 0 when blocked
    quantity: int                     # whole lots; 0 when blocked or below the minimum value
    fraction: float                   # quantity / held quantity
    value_base: float
    block_rule: str = ""              # the hard block (or "min_sell_value"), empty when eligible
    block_detail: str = ""
    components: dict[str, float] = field(default_factory=dict)


def hard_block(holding: Holding, today: date, rules: SellRules = SellRules()) -> tuple[str, str] | None:
    """(rule, detail) of the first hard block, or None when the holding may be sold."""
    symbol = holding.symbol
    if not holding.allow_sell:
        return "allow_sell", f"{symbol} may not be sold"
    if not holding.dates_known:
        return "holding_rules", f"the fill dates of {symbol} could not be read"
    if holding.last_buy is not None and (today - holding.last_buy).days < rules.min_hold_days:
        return "min_hold", (f"{symbol} was bought {(today - holding.last_buy).days} days ago "
                            f"(minimum hold {rules.min_hold_days} days)")
    if holding.last_sell is not None and (today - holding.last_sell).days < rules.sell_cooldown_days:
        return "sell_cooldown", (f"{symbol} was sold {(today - holding.last_sell).days} days ago "
                                 f"(cooldown {rules.sell_cooldown_days} days)")
    gain = holding.gain
    if gain is None:
        return "max_sell_loss", f"the average cost or price of {symbol} is unknown"
    if gain < rules.max_sell_loss:
        return "max_sell_loss", f"selling {symbol} at {gain:.1%} is below the {rules.max_sell_loss:.0%} floor"
    return None


def annualised(gain: float, days: int) -> float:
    """(1 + gain)^(365/days) - 1; the simple gain under a quarter of a year."""
    years = days / 365
    if years < 0.25:
        return gain
    try:
        return (1 + gain) ** (1 / years) - 1
    except (OverflowError, ZeroDivisionError, ValueError):
        return gain


def underperformance_score(gain: float, days_held: int, max_loss: float = RiskSettings.max_sell_loss) -> float:
    """From the annualised return r: a gain below the loss floor -> 0; r < -0.05 -> 0.9;
    r < 0 -> 0.7; r < 0.08 -> 0.5; r <= 0.15 -> 0.1; higher -> 0.3. No days held -> 0.5."""
    if days_held <= 0:
        return NEUTRAL
    if gain < max_loss:
        return 0.0
    r = annualised(gain, days_held)
    if r < -0.05:
        return 0.9
    if r < 0:
        return 0.7
    if r < TARGET_RETURN[0]:
        return 0.5
    if r <= TARGET_RETURN[1]:
        return 0.1
    return 0.3


def time_held_score(days_held: int | None, min_hold_days: int = RiskSettings.min_hold_days) -> float:
    """Days since the first buy: < 90 -> 0; < 180 -> 0.3; < 365 -> 0.6; < 730 -> 0.8; else 1;
    unknown -> 0.6."""
    if days_held is None:
        return UNKNOWN_TIME_HELD
    if days_held < min_hold_days:
        return 0.0
    if days_held < 180:
        return 0.3
    if days_held < 365:
        return 0.6
    if days_held < 730:
        return 0.8
    return 1.0


def concentration_score(share: float) -> float:
    """share > 0.1 -> min(1, share/0.15); else share/0.1."""
    return min(1.0, share / 0.15) if share > 0.1 else max(0.0, share / 0.1)


def balance_score(symbol: str, country: str, industry: str, context: PortfolioContext) -> float:
    """0.5·min(1, country-group share/0.5) + 0.3·mean(min(1, industry-group share/0.3))
    + 0.2·concentration; no portfolio value -> 0.5, no industry -> 0.5 for that part."""
    if not (known(context.total_value_base) or 0) > 0:
        return NEUTRAL
    country_share = context.country_group_shares().get(context.country_group(country), 0.0)
    industry_shares = context.industry_group_shares()
    groups = context.industry_groups(industry)
    industry_part = (sum(min(1.0, industry_shares.get(g, 0.0) / 0.3) for g in groups) / len(groups)
                     if groups else NEUTRAL)
    return (0.5 * min(1.0, country_share / 0.5) + 0.3 * industry_part
            + 0.2 * concentration_score(context.share(symbol)))


def rate_of_gain_score(gain: float, days_held: int) -> float:
    """Annualised gain: held <= 30 days -> 0.5; > 0.5 -> 1; > 0.3 -> 0.7; > 0.2 -> 0.4; else 0.1."""
    if days_held <= 30:
        return NEUTRAL
    try:
        rate = (1 + gain) ** (365 / days_held) - 1
    except OverflowError:
        rate = math.inf
    return 1.0 if rate > 0.5 else 0.7 if rate > 0.3 else 0.4 if rate > 0.2 else 0.1


def volatility_spike_score(recent: float | None, usual: float | None) -> float:
    """60-day / 1-year volatility: > 2 -> 1; > 1.5 -> 0.7; > 1.2 -> 0.4; else 0.1; missing -> 0.3."""
    recent, usual = known(recent), known(usual)
    if recent is None or usual is None or usual <= 0:
        return NO_TECHNICAL_DATA
    ratio = recent / usual
    return 1.0 if ratio > 2 else 0.7 if ratio > 1.5 else 0.4 if ratio > 1.2 else 0.1


def stretch_score(distance_from_ma200: float | None) -> float:
    """Distance above the 200-day average: > 0.3 -> 1; > 0.2 -> 0.7; > 0.1 -> 0.4; else 0.1;
    missing -> 0.3."""
    d = known(distance_from_ma200)
    if d is None:
        return NO_TECHNICAL_DATA
    return 1.0 if d > 0.3 else 0.7 if d > 0.2 else 0.4 if d > 0.1 else 0.1


def instability_score(gain: float, days_held: int, metrics: Metrics) -> float:
    """0.4·rate + 0.3·volatility spike + 0.3·stretch, floored at 0.2 above a 100% gain and 0.1
    above 75%; no technical data at all -> 0.3."""
    technical = (metrics.volatility_60d, metrics.volatility_1y, metrics.distance_from_ema_200)
    if all(known(value) is None for value in technical):
        value = NO_TECHNICAL_DATA
    else:
        value = (0.4 * rate_of_gain_score(gain, days_held)
                 + 0.3 * volatility_spike_score(metrics.volatility_60d, metrics.volatility_1y)
                 + 0.3 * stretch_score(metrics.distance_from_ema_200))
    if gain > 1.0:
        return max(value, 0.2)
    if gain > 0.75:
        return max(value, 0.1)
    return value


def drawdown_score(current_drawdown: float | None, days_in_drawdown: float | None) -> float:
    """Current drawdown from the 1-year high: below -0.25 -> 1; below -0.15 -> 0.9 after more
    than 180 days in drawdown, 0.7 after more than 90, else 0.5; below -0.10 -> 0.3; else 0.1;
    missing -> 0.3."""
    dd, days = known(current_drawdown), known(days_in_drawdown) or 0.0
    if dd is None:
        return NO_DRAWDOWN_DATA
    if dd < -0.25:
        return 1.0
    if dd < -0.15:
        return 0.9 if days > 180 else 0.7 if days > 90 else 0.5
    if dd < -0.10:
        return 0.3
    return 0.1


def floor_to_lots(quantity: float, lot_size: int) -> int:
    lot = max(1, int(lot_size))
    return int(math.floor(quantity / lot)) * lot if quantity > 0 else 0


def sell_quantity(total: float, held: int, lot_size: int, unit_value_base: float,
                  min_value_base: float = MIN_SELL_VALUE_BASE) -> int:
    """clamp(0.1 + 0.4·score, 0.1, 0.5) of the holding in whole lots, always keeping one lot;
    0 when that is under one lot or worth less than `min_value_base`."""
    lot = max(1, int(lot_size))
    fraction = clamp(MIN_SELL_FRACTION + 0.4 * total, MIN_SELL_FRACTION, MAX_SELL_FRACTION)
    quantity = floor_to_lots(held * fraction, lot)
    if quantity >= held - lot:
        quantity = floor_to_lots(held - lot, lot)
    if quantity < lot or quantity * unit_value_base < min_value_base:
        return 0
    return quantity


def score_sell(holding: Holding, metrics: Metrics, country: str, industry: str, context: PortfolioContext,
               today: date, rules: SellRules = SellRules()) -> SellScore:
    """The sell score of one holding as of `today` (planner.md section 1, sell scoring)."""
    block = hard_block(holding, today, rules)
    if block is not None:
        return SellScore(holding.symbol, False, 0.0, 0, 0.0, 0.0, *block)
    gain = holding.gain
    days_held = (today - holding.first_buy).days if holding.first_buy is not None else None
    days_for_rates = days_held if days_held is not None else UNKNOWN_DAYS_HELD
    components = {
        "underperformance": underperformance_score(gain, days_for_rates, rules.max_sell_loss),
        "time_held": time_held_score(days_held, rules.min_hold_days),
        "balance": balance_score(holding.symbol, country, industry, context),
        "instability": instability_score(gain, days_for_rates, metrics),
        "drawdown": drawdown_score(metrics.current_drawdown_1y, metrics.days_in_drawdown_1y),
    }
    total = round(clamp(sum(components[name] * weight for name, weight in WEIGHTS.items())), 3)
    components = {name: round(value, 3) for name, value in components.items()}
    value_base = known(holding.value_base)
    if value_base is None or value_base <= 0 or holding.quantity <= 0:
        return SellScore(holding.symbol, False, total, 0, 0.0, 0.0, "price_unavailable",
                         f"the value of the holding of {holding.symbol} in the base currency is unknown", components)
    unit_value = value_base / holding.quantity
    quantity = sell_quantity(total, holding.quantity, holding.lot_size, unit_value)
    if quantity == 0:
        return SellScore(holding.symbol, False, total, 0, 0.0, 0.0, "min_sell_value",
                         f"a sell of {holding.symbol} would be under one lot or under {MIN_SELL_VALUE_BASE:g} "
                         "in the base currency", components)
    return SellScore(holding.symbol, True, total, quantity, quantity / holding.quantity,
                     quantity * unit_value, components=components)
