"""The optimiser's plain inputs from what the engine read from the other services. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.planner.adapters.peers import FundamentalsView, MetricsView
from services.planner.eligibility import Listing
from services.planner.optimizer import SecurityInput
from services.planner.optimizer.bounds import BoundInput
from services.planner.plan import Candidate


def security_inputs(candidates: Mapping[str, Candidate], listings: Mapping[str, Listing],
                    closes: Mapping[str, Sequence[tuple[str, float]]], cagrs: Mapping[str, float | None],
                    scores: Mapping[str, float | None], yields: Mapping[str, float | None],
                    held_value_base: Mapping[str, float], quantities: Mapping[str, int]) -> list[SecurityInput]:
    """One input per candidate (a security trading would buy now), in symbol order."""
    securities = []
    for symbol, candidate in sorted(candidates.items()):
        listing = listings[symbol]
        bounds = BoundInput(listing.min_target, listing.max_target, listing.allow_buy, listing.allow_sell,
                            candidate.lot_size, candidate.price_base, quantities.get(symbol, 0),
                            held_value_base.get(symbol, 0.0))
        securities.append(SecurityInput(symbol, list(closes.get(symbol, [])), cagrs.get(symbol), yields.get(symbol),
                                        scores.get(symbol), listing.country, listing.industry, bounds))
    return securities


def cagrs(metrics: Mapping[str, MetricsView]) -> dict[str, float | None]:
    """symbol -> CAGR_5Y, else CAGR_10Y, of its valid monthly averages (planner.md section 3);
    None when neither is known."""
    return {s: m.metrics.cagr_5y if m.metrics.cagr_5y is not None else m.metrics.cagr_10y
            for s, m in metrics.items()}


def dividend_yields(facts: Mapping[str, FundamentalsView]) -> dict[str, float | None]:
    """symbol -> dividend yield (fraction) from its fundamentals; None when unknown (the CAGR
    alone is then the total return)."""
    return {s: f.fundamentals.dividend_yield for s, f in facts.items()}


def held_elsewhere(held_value_base: Mapping[str, float], optimised: set[str], total_value_base: float) -> float:
    """The weight of holdings outside the optimisation: they keep their place, the targets share
    the rest."""
    if total_value_base <= 0:
        return 0.0
    return sum(v for s, v in held_value_base.items() if s not in optimised and v > 0) / total_value_base


def current_weights(held_value_base: Mapping[str, float], total_value_base: float) -> dict[str, float]:
    if total_value_base <= 0:
        return {}
    return {s: v / total_value_base for s, v in sorted(held_value_base.items())}
