"""The emergency path for negative cash (decisions.md rule 15, trading-portfolio-jobs.md section 7).

First currency: each negative balance is covered from other currencies, keeping a reserve in
every source. Then positions: the largest sellable holdings in the short currency are sold until
the proceeds cover the deficit with a 10% buffer. Every SELL goes through the one risk check
with `emergency=True`, which waives the holding rules and frequency caps only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.money import convert

RESERVE = 5.0   # kept in every currency a conversion draws from
BUFFER = 1.10   # sell until proceeds cover the deficit by 10% more


@dataclass(frozen=True)
class PlannedConversion:
    from_currency: str
    from_amount: float
    to_currency: str
    to_amount: float


def plan_conversions(cash: dict[str, float], base: str, rates: dict[str, float]) -> list[PlannedConversion]:
    """Conversions that cover negative balances from the others, richest source first, each
    source keeping RESERVE. A currency without an FX rate can be neither priced nor converted:
    it is left out (its own shortfall is covered by sales). Pure: the caller executes them."""
    balances = {c: amount for c, amount in cash.items() if c == base or rates.get(c, 0) > 0}
    planned = []
    for short in sorted(c for c, amount in balances.items() if amount < 0):
        for source in sorted((c for c in balances if c != short and balances[c] > RESERVE),
                             key=lambda c: -convert(balances[c], c, base, base, rates)):
            need = RESERVE - balances[short]  # leave the short currency at its reserve too
            if need <= 0:
                break
            available = balances[source] - RESERVE
            take = min(available, math.ceil(convert(need, short, source, base, rates) * 100) / 100)
            if take <= 0:
                continue
            received = convert(take, source, short, base, rates)
            planned.append(PlannedConversion(source, take, short, received))
            balances[source] -= take
            balances[short] += received
    return planned


def plan_sales(deficit: float, positions: list[tuple[str, int, float]],
               lot_sizes: dict[str, int]) -> list[tuple[str, int]]:
    """(symbol, quantity) sales covering `deficit` x BUFFER from `positions` (symbol, quantity,
    price in the short currency), largest position first, whole lots, never above the holding."""
    target = deficit * BUFFER
    sales = []
    for symbol, quantity, price in sorted(positions, key=lambda p: -p[1] * p[2]):
        if target <= 0:
            break
        lot = max(1, lot_sizes.get(symbol, 1))
        wanted = math.ceil(target / price / lot) * lot
        sell = min(quantity - quantity % lot, wanted)
        if sell > 0:
            sales.append((symbol, sell))
            target -= sell * price
    return sales
