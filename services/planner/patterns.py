"""The 13 patterns of planner.md section 2: each builds one sequence from the opportunities
for a depth (at most `depth` steps), SELLs always before BUYs. "Fill" adds candidates in order
while each BUY fits the running cash (feasibility.RunningCash) and the sequence is shorter
than the depth; a symbol appears once. Pure.

Each pattern is a small function of (PatternInputs, depth) in PATTERNS, the one registry;
the configuration enables them ([patterns.<name>]); `adaptive` runs in full mode only.
Differences from the original: `adaptive` compares a BUY's country *group* with the groups
under target (the original compared a country with a group name and never matched).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from services.planner.feasibility import RunningCash
from services.planner.opportunities import Opportunities
from services.planner.opportunities.book import (
    AVERAGING_DOWN,
    OPPORTUNITY_BUYS,
    PROFIT_TAKING,
    REBALANCE_BUYS,
    REBALANCE_SELLS,
    SELL,
    Action,
    by_priority,
)

ADAPTIVE_COUNTRY_GAP = 0.02   # a country group this far under its target
ADAPTIVE_INDUSTRY_GAP = 0.01
ADAPTIVE_TOP_GROUPS = 3
REGIME_SELLS = 2              # market_regime: sells in a bull or sideways market


@dataclass(frozen=True)
class PatternInputs:
    opportunities: Opportunities            # category -> candidates (the selection for this depth)
    cash: RunningCash                       # at the start of the sequence
    regime: str = "sideways"                # bull, bear or sideways
    country_gaps: Mapping[str, float] = field(default_factory=dict)   # group -> target - share
    industry_gaps: Mapping[str, float] = field(default_factory=dict)

    def of(self, *categories: str) -> list[Action]:
        return [a for c in categories for a in self.opportunities.get(c, [])]

    @property
    def sells(self) -> list[Action]:
        return self.of(PROFIT_TAKING, REBALANCE_SELLS)

    @property
    def buys(self) -> list[Action]:
        return self.of(AVERAGING_DOWN, REBALANCE_BUYS, OPPORTUNITY_BUYS)


def fill(sequence: list[Action], candidates: Iterable[Action], cash: RunningCash, depth: int,
         limit: int | None = None) -> list[Action]:
    """`sequence` with candidates added in order: each fits the running cash, each symbol once,
    at most `depth` steps in all and at most `limit` added."""
    for action in sequence:
        cash = cash.after(action)
    result, seen, added = list(sequence), {a.symbol for a in sequence}, 0
    for action in candidates:
        if len(result) >= depth or (limit is not None and added >= limit):
            break
        if action.symbol in seen or not cash.fits(action):
            continue
        result.append(action)
        seen.add(action.symbol)
        cash = cash.after(action)
        added += 1
    return result


def _sells_then_buys(p: PatternInputs, sells: Iterable[Action], buys: Iterable[Action], depth: int,
                     sell_limit: int | None = None) -> list[Action]:
    return fill(fill([], sells, p.cash, depth, sell_limit), buys, p.cash, depth)


def direct_buy(p: PatternInputs, depth: int) -> list[Action]:
    """Cash > 0: buys from averaging down, rebalance and opportunity buys."""
    return fill([], p.buys, p.cash, depth) if p.cash.pooled > 0 else []


def profit_taking(p: PatternInputs, depth: int) -> list[Action]:
    """The top profit-taking sells, then averaging-down and rebalance buys."""
    sells = p.of(PROFIT_TAKING)
    return _sells_then_buys(p, sells, p.of(AVERAGING_DOWN, REBALANCE_BUYS), depth) if sells else []


def rebalance(p: PatternInputs, depth: int) -> list[Action]:
    """Rebalance sells, then rebalance buys."""
    return _sells_then_buys(p, p.of(REBALANCE_SELLS), p.of(REBALANCE_BUYS), depth)


def averaging_down(p: PatternInputs, depth: int) -> list[Action]:
    """Averaging-down buys; one profit-taking sell first when the cash does not cover the first."""
    buys = p.of(AVERAGING_DOWN)
    if not buys:
        return []
    sells = p.of(PROFIT_TAKING)
    start = [sells[0]] if sells and not p.cash.fits(buys[0]) and depth > 1 else []
    return fill(start, buys, p.cash, depth)


def single_best(p: PatternInputs, depth: int) -> list[Action]:
    """The highest-priority candidate (a BUY only if it fits the cash)."""
    for action in by_priority(p.sells + p.buys):
        if action.side == SELL or p.cash.fits(action):
            return [action]
    return []


def multi_sell(p: PatternInputs, depth: int) -> list[Action]:
    """Every sell, then every buy."""
    return _sells_then_buys(p, p.sells, p.buys, depth)


def mixed_strategy(p: PatternInputs, depth: int) -> list[Action]:
    """At most max(1, depth // 2) sells, then every buy."""
    return _sells_then_buys(p, p.sells, p.buys, depth, max(1, depth // 2))


def opportunity_first(p: PatternInputs, depth: int) -> list[Action]:
    """Opportunity buys, then averaging-down and rebalance buys."""
    return fill([], p.of(OPPORTUNITY_BUYS, AVERAGING_DOWN, REBALANCE_BUYS), p.cash, depth)


def deep_rebalance(p: PatternInputs, depth: int) -> list[Action]:
    """Needs rebalance candidates on both sides: at most depth // 2 sells, then rebalance buys."""
    sells, buys = p.of(REBALANCE_SELLS), p.of(REBALANCE_BUYS)
    if not sells or not buys or depth < 2:
        return []
    return _sells_then_buys(p, sells, buys, depth, depth // 2)


def cash_generation(p: PatternInputs, depth: int) -> list[Action]:
    """Sells, then opportunity, averaging-down and rebalance buys."""
    return _sells_then_buys(p, p.sells, p.of(OPPORTUNITY_BUYS, AVERAGING_DOWN, REBALANCE_BUYS), depth)


def cost_optimized(p: PatternInputs, depth: int) -> list[Action]:
    """Sells, then buys by priority across categories."""
    return _sells_then_buys(p, p.sells, by_priority(p.buys), depth)


def adaptive(p: PatternInputs, depth: int) -> list[Action]:
    """Buys into the (at most 3) country groups more than 2 points under target and the (at
    most 3) industry groups more than 1 point under, highest priority first."""
    countries = _top_gaps(p.country_gaps, ADAPTIVE_COUNTRY_GAP)
    industries = _top_gaps(p.industry_gaps, ADAPTIVE_INDUSTRY_GAP)
    if not countries and not industries:
        return []
    buys = [a for a in by_priority(p.buys)
            if a.group_tags("COUNTRY:") & countries or a.group_tags("INDUSTRY:") & industries]
    return fill([], buys, p.cash, depth)


def market_regime(p: PatternInputs, depth: int) -> list[Action]:
    """Bull: 2 profit-taking sells, then opportunity and rebalance buys; bear: sells up to
    depth // 2, then averaging-down buys; sideways: 2 rebalance sells, then rebalance and
    opportunity buys."""
    if p.regime == "bull":
        return _sells_then_buys(p, p.of(PROFIT_TAKING), p.of(OPPORTUNITY_BUYS, REBALANCE_BUYS), depth, REGIME_SELLS)
    if p.regime == "bear":
        return _sells_then_buys(p, p.sells, p.of(AVERAGING_DOWN), depth, depth // 2)
    return _sells_then_buys(p, p.of(REBALANCE_SELLS), p.of(REBALANCE_BUYS, OPPORTUNITY_BUYS), depth, REGIME_SELLS)


def _top_gaps(gaps: Mapping[str, float], threshold: float) -> frozenset[str]:
    above = sorted(((gap, group) for group, gap in gaps.items() if gap > threshold), key=lambda g: (-g[0], g[1]))
    return frozenset(group for _, group in above[:ADAPTIVE_TOP_GROUPS])


Pattern = Callable[[PatternInputs, int], list[Action]]
PATTERNS: dict[str, Pattern] = {
    "direct_buy": direct_buy, "profit_taking": profit_taking, "rebalance": rebalance,
    "averaging_down": averaging_down, "single_best": single_best, "multi_sell": multi_sell,
    "mixed_strategy": mixed_strategy, "opportunity_first": opportunity_first, "deep_rebalance": deep_rebalance,
    "cash_generation": cash_generation, "cost_optimized": cost_optimized, "adaptive": adaptive,
    "market_regime": market_regime,
}
FULL_MODE_ONLY = frozenset({"adaptive"})
