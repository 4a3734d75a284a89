"""Diversification group (planner.md section 1): country 0.4, industry 0.3, averaging 0.3.

Dynamic (depends on the portfolio) and never cached. Without a portfolio context or a country
the group is neutral. Only the group's target counts, not the gap to it (as the original).
"""

from __future__ import annotations

from services.planner.scoring.curves import NEUTRAL, GroupScore, clamp, group, known
from services.planner.scoring.inputs import PortfolioContext

WEIGHTS = {"country": 0.4, "industry": 0.3, "averaging": 0.3}
MAX_LOSS_FOR_BONUS = 0.20      # a dip deeper than this gets no cost-basis bonus
MAX_COST_BASIS_BONUS = 0.4


def target_score(target: float | None) -> float:
    """clamp(0.5 + 0.4·target, 0.1, 0.9); an untargeted group has target 0 (-> 0.5)."""
    t = known(target)
    return clamp(0.5 + 0.4 * (t or 0.0), 0.1, 0.9)


def country_score(country: str, context: PortfolioContext) -> float:
    return target_score(context.country_targets.get(context.country_group(country)))


def industry_score(industry: str, context: PortfolioContext) -> float:
    """The mean over the security's industries; none -> 0.5."""
    groups = context.industry_groups(industry)
    if not groups:
        return NEUTRAL
    return sum(target_score(context.industry_targets.get(name)) for name in groups) / len(groups)


def averaging_potential_score(quality: float, opportunity: float) -> float:
    """pot = quality × opportunity: >= 0.5 -> 0.7 + 0.6(pot - 0.5); >= 0.3 -> 0.5 + (pot - 0.3);
    else 0.3."""
    pot = quality * opportunity
    if pot >= 0.5:
        return 0.7 + 0.6 * (pot - 0.5)
    if pot >= 0.3:
        return 0.5 + (pot - 0.3)
    return 0.3


def averaging_score(symbol: str, quality: float, opportunity: float, context: PortfolioContext) -> float:
    """Not held -> 0.5. Held: the potential score, plus min(0.4, 2·loss) when the price is below
    the average cost by at most 20% (capped at 1), times 0.7 above 10% of the portfolio or
    0.9 above 5%."""
    holding = context.holdings.get(symbol)
    if holding is None or not (known(holding.value_base) or 0) > 0:
        return NEUTRAL
    value = averaging_potential_score(quality, opportunity)
    gain = holding.gain
    if gain is not None and gain < 0 and -gain <= MAX_LOSS_FOR_BONUS:
        value = min(1.0, value + min(MAX_COST_BASIS_BONUS, 2 * -gain))
    share = context.share(symbol)
    if share > 0.10:
        value *= 0.7
    elif share > 0.05:
        value *= 0.9
    return clamp(value)


def score(symbol: str, country: str, industry: str, quality: float, opportunity: float,
          context: PortfolioContext | None) -> GroupScore:
    """`quality` = (long_term + fundamentals)/2 and `opportunity` of the same security."""
    if context is None or not country:
        return group({"country": NEUTRAL, "industry": NEUTRAL, "averaging": NEUTRAL}, WEIGHTS)
    return group({"country": country_score(country, context), "industry": industry_score(industry, context),
                  "averaging": averaging_score(symbol, quality, opportunity, context)}, WEIGHTS)
