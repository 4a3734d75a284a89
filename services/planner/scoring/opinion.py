"""Opinion group (planner.md section 1): analyst recommendation 0.6, price target 0.4.

Yahoo's recommendation keys are snake case (strong_buy); the original compared them with
camel case (strongBuy), so a strong buy scored as "other". Both spellings count here.
"""

from __future__ import annotations

from services.data.fundamentals import canonical_recommendation  # the data service's reading of the keys
from services.planner.scoring.curves import NEUTRAL, GroupScore, clamp, group, known
from services.planner.scoring.inputs import Fundamentals

WEIGHTS = {"recommendation": 0.6, "target": 0.4}
RECOMMENDATION = {"strong_buy": 1.0, "buy": 0.8, "hold": 0.5, "sell": 0.2, "strong_sell": 0.0}


def recommendation_score(key: str | None) -> float:
    """strong_buy 1, buy 0.8, hold 0.5, sell 0.2, strong_sell 0, any other key or none 0.5."""
    if not isinstance(key, str):
        return NEUTRAL
    return RECOMMENDATION.get(canonical_recommendation(key) or "", NEUTRAL)


def target_score(target_mean_price: float | None, price: float | None) -> float:
    """clamp(0.5 + 2.5·(target/price - 1), 0, 1); no target or no price -> 0.5."""
    target, current = known(target_mean_price), known(price)
    if target is None or current is None or current <= 0 or target <= 0:
        return NEUTRAL
    return clamp(0.5 + 2.5 * (target / current - 1))


def score(fundamentals: Fundamentals, price: float | None) -> GroupScore:
    return group({"recommendation": recommendation_score(fundamentals.recommendation_key),
                  "target": target_score(fundamentals.target_mean_price, price)}, WEIGHTS)
