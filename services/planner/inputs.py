"""Plain inputs from what the engine read from the other services: the optimiser's, and the
holistic planner's books (with each side's eligibility), outlooks and correlations. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from services.planner.adapters.peers import Fill, FundamentalsView, MetricsView, PortfolioView
from services.planner.eligibility import Exclusion, Listing
from services.planner.opportunities.book import Book, PositionView, SecurityView
from services.planner.opportunities.eligibility import HoldingRules, buy_block, sell_block
from services.planner.optimizer import SecurityInput
from services.planner.optimizer.bounds import BoundInput
from services.planner.optimizer.risk import NO_CLOSES, Closes, aligned, as_closes
from services.planner.optimizer.sectors import GroupTargets
from services.planner.plan import Candidate, Cash
from services.planner.scoring.end_state import Outlook, outlook
from services.planner.scoring.inputs import OTHER_GROUP, Fundamentals, Holding, Metrics, split_industries

CORRELATION_WINDOW = 252       # daily returns the correlation-aware filter looks at (a year)
MIN_CORRELATION_RETURNS = 20


def security_inputs(candidates: Mapping[str, Candidate], listings: Mapping[str, Listing],
                    closes: Mapping[str, Closes | Sequence[tuple[str, float]]], cagrs: Mapping[str, float | None],
                    scores: Mapping[str, float | None], yields: Mapping[str, float | None],
                    held_value_base: Mapping[str, float], quantities: Mapping[str, int]) -> list[SecurityInput]:
    """One input per candidate (a security trading would buy now), in symbol order."""
    securities = []
    for symbol, candidate in sorted(candidates.items()):
        listing = listings[symbol]
        bounds = BoundInput(listing.min_target, listing.max_target, listing.allow_buy, listing.allow_sell,
                            candidate.lot_size, candidate.price_base, quantities.get(symbol, 0),
                            held_value_base.get(symbol, 0.0))
        securities.append(SecurityInput(symbol, as_closes(closes.get(symbol, NO_CLOSES)), cagrs.get(symbol),
                                        yields.get(symbol), scores.get(symbol), listing.country, listing.industry,
                                        bounds))
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


# --- the holistic planner's books ---


@dataclass(frozen=True)
class PlanningReads:
    """What the engine read for a plan, beyond the optimiser's result."""

    today: date
    base: str
    portfolio: PortfolioView
    listings: Mapping[str, Listing]
    candidates: Mapping[str, Candidate]          # securities trading would buy now
    excluded: Sequence[Exclusion]                # the others, with trading's reason
    quality: Mapping[str, float | None]          # the planner's score
    metrics: Mapping[str, MetricsView]
    groups: GroupTargets
    cash: Cash
    price_band: float
    markets: Mapping[str, bool | None]           # exchange -> open now (None: unknown)
    fills: Sequence[Fill]
    dismissed: frozenset[tuple[str, str]]        # (symbol, side) dismissed for the state


def planning_book(reads: PlanningReads, rules: HoldingRules, allow_buy: bool, allow_sell: bool,
                  weights: Mapping[str, float], optimised: frozenset[str], regime: str) -> Book:
    """The books the holistic planner starts from: every security it can price (the candidates
    at their quotes, the holdings at the portfolio's prices) with what blocks each side now."""
    excluded = {e.symbol: f"{e.reason}: {e.detail}" for e in reads.excluded}
    holdings = reads.portfolio.holdings
    last_buys: dict[str, datetime] = {}
    last_sells: dict[str, date] = {}
    for fill in reads.fills:
        if fill.side == "BUY":
            last_buys[fill.symbol] = max(fill.executed_at, last_buys.get(fill.symbol, fill.executed_at))
        elif fill.side == "SELL":
            last_sells[fill.symbol] = max(fill.executed_at.date(), last_sells.get(fill.symbol, fill.executed_at.date()))
    securities = {}
    for symbol in sorted(set(reads.candidates) | set(holdings)):
        listing, candidate, holding = reads.listings.get(symbol), reads.candidates.get(symbol), holdings.get(symbol)
        metrics = reads.metrics[symbol].metrics if symbol in reads.metrics else Metrics()
        if candidate is not None:
            currency, lot, price, price_base = candidate.currency, candidate.lot_size, candidate.price, \
                candidate.price_base
        elif holding.quantity > 0 and holding.value_base > 0 and listing is not None:
            currency, lot, price, price_base = listing.currency, listing.lot_size, holding.price, \
                holding.value_base / holding.quantity
        else:
            continue  # neither priced by a quote nor by the books in a known currency
        blocked_buy = buy_block(symbol, excluded.get(symbol, ""), allow_buy, last_buys.get(symbol), rules,
                                reads.today, (symbol, "BUY") in reads.dismissed)
        position = _position(holding) if holding is not None else None
        blocked_sell = "not held" if position is None else _sell_block(
            symbol, position, price, listing, allow_sell, reads.markets, rules, reads.today,
            (symbol, "SELL") in reads.dismissed)
        country = listing.country if listing else ""
        industry = listing.industry if listing else ""
        securities[symbol] = SecurityView(
            symbol, currency, lot, price, price_base, country, industry,
            reads.groups.country_groups.get(country, OTHER_GROUP),
            tuple(dict.fromkeys(reads.groups.industry_groups.get(i, OTHER_GROUP) for i in split_industries(industry))),
            reads.quality.get(symbol), metrics.cagr_5y, metrics.cagr_10y, metrics.volatility_annual,
            listing.max_target / 100 if listing is not None and listing.max_target is not None else None,
            blocked_buy, blocked_sell)
    positions = {s: _position(h) for s, h in holdings.items() if h.quantity > 0}
    return Book(reads.today, reads.base, securities, positions, reads.cash, reads.portfolio.total_value_base,
                reads.price_band, dict(weights), optimised, dict(reads.groups.country), dict(reads.groups.industry),
                regime, last_sells, rules.sell_cooldown_days, {s: t.date() for s, t in last_buys.items()},
                rules.buy_cooldown_days)


def _position(holding: Holding) -> PositionView:
    return PositionView(holding.symbol, holding.quantity, holding.average_cost or 0.0, holding.value_base,
                        holding.first_buy, holding.last_buy, holding.last_sell)


def _sell_block(symbol: str, position: PositionView, price: float, listing: Listing | None, allow_sell: bool,
                markets: Mapping[str, bool | None], rules: HoldingRules, today: date, dismissed: bool) -> str:
    if listing is None or not listing.tradable:
        return f"allow_sell: {symbol} is not a tradable security of the universe"
    if not allow_sell:
        return "allow_sell: the planner configuration allows no SELL"
    if dismissed:
        return f"dismissed: the SELL of {symbol} was dismissed for this state"
    return sell_block(symbol, position, price, listing.allow_sell, markets.get(listing.exchange), rules, today)


def group_gaps(book: Book) -> tuple[dict[str, float], dict[str, float]]:
    """(country group -> target - share, industry group -> target - share) for the groups with
    a target."""
    countries, industries = book.country_shares(), book.industry_shares()
    return ({g: t - countries.get(g, 0.0) for g, t in book.country_targets.items()},
            {g: t - industries.get(g, 0.0) for g, t in book.industry_targets.items()})


def outlooks(book: Book, metrics: Mapping[str, MetricsView],
             facts: Mapping[str, FundamentalsView]) -> dict[str, Outlook]:
    """Each security's part in an end state (scoring.end_state.outlook); missing inputs neutral."""
    return {s: outlook(metrics[s].metrics if s in metrics else Metrics(),
                       facts[s].fundamentals if s in facts else Fundamentals(), v.quality, v.country_group)
            for s, v in book.securities.items()}


def correlations(closes: Mapping[str, Closes | Sequence[tuple[str, float]]],
                 window: int = CORRELATION_WINDOW) -> dict[frozenset[str], float]:
    """{a, b} -> correlation of their daily returns over the last `window` aligned valid closes
    (the optimiser's alignment and returns, optimizer/risk.py; pandas' Pearson correlation): the
    correlation-aware filter's input. Fewer than 20 returns in common: none."""
    import pandas as pd  # noqa: PLC0415 - heavy: loaded on first use, not at start (bench/footprint.py)

    prices = aligned({s: rows for s, rows in closes.items() if len(rows)}, window + 1)
    if len(prices.symbols) < 2 or len(prices.days) <= MIN_CORRELATION_RETURNS:
        return {}
    matrix = pd.DataFrame(prices.returns()).corr().to_numpy()
    symbols = prices.symbols
    values, finite = matrix.tolist(), np.isfinite(matrix).tolist()  # Python floats: float(matrix[i, j])
    return {frozenset((a, symbols[j])): values[i][j] for i, a in enumerate(symbols)
            for j in range(i + 1, len(symbols)) if finite[i][j]}
