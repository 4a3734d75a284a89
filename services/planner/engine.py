"""The planner's use case: a rebalancing plan for the current portfolio state, cached per
portfolio hash and day. Gathers inputs through adapters/peers.py and calls the pure modules
(eligibility, bounds, optimizer, plan)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from services.common.db import Database
from services.planner import defaults, store
from services.planner.adapters.peers import Peers, PortfolioView
from services.planner.bounds import weight_bounds
from services.planner.eligibility import (
    Exclusion,
    Listing,
    TradingRules,
    history_exclusions,
    last_buys_within,
    screen,
    strict_exchanges,
    valid_closes,
)
from services.planner.optimizer import target_weights
from services.planner.plan import Cash, Step, buy_steps, plan_id

# Calendar days that hold LOOKBACK_BARS trading days, with room for holidays.
_LOOKBACK_DAYS = int(defaults.LOOKBACK_BARS * 1.5) + 10


@dataclass(frozen=True)
class Plan:
    plan_id: str
    portfolio_hash: str
    as_of_date: str
    steps: list[Step]
    target_weights: dict[str, float]
    method: str
    excluded: list[Exclusion] = field(default_factory=list)
    unallocated_weight: float = 0.0
    notes: list[str] = field(default_factory=list)
    cached: bool = False


class PlannerEngine:
    def __init__(self, db: Database, peers: Peers):
        self._db = db
        self._peers = peers

    def recommendations(self, now: datetime) -> Plan:
        """The plan for the portfolio's hash and `now`'s day: computed once, then served from
        the cache while the hash, the day, trading's rules and the state of the markets where a
        BUY needs an open market stay the same."""
        day = now.date().isoformat()
        portfolio = self._peers.portfolio()
        rules = self._peers.trading_rules()
        listings = self._peers.listings()
        markets = {exchange: self._peers.market_open(exchange, now) for exchange in strict_exchanges(listings)}
        with self._db.transaction() as session:
            cached = store.find_plan(session, portfolio.portfolio_hash, day)
        if cached is not None and cached[1].get("rules") == asdict(rules) and cached[1].get("markets") == markets:
            return _plan_from_payload(cached[0], portfolio.portfolio_hash, day, cached[1], cached=True)
        payload = self._compute(portfolio, rules, listings, markets, now)
        identifier = plan_id(portfolio.portfolio_hash, day, [Step(**s) for s in payload["steps"]])
        with self._db.transaction() as session:
            store.save_plan(session, portfolio.portfolio_hash, day, identifier, payload, now)
        return _plan_from_payload(identifier, portfolio.portfolio_hash, day, payload, cached=False)

    def _compute(self, portfolio: PortfolioView, rules: TradingRules, listings: list[Listing],
                 markets: dict[str, bool | None], now: datetime) -> dict:
        base, rates = self._peers.fx_rates()
        quotes = self._peers.quotes([s.symbol for s in listings if s.buyable])
        recent = last_buys_within(self._peers.buys(), now, rules.buy_cooldown_days)
        cash = Cash(base, portfolio.cash_base, auto_convert=rules.auto_convert_currency)
        candidates, excluded = screen(listings, quotes, base, rates, rules, recent, cash, now, markets)
        start = now.date() - timedelta(days=_LOOKBACK_DAYS)
        closes = {s: valid_closes(self._peers.daily_bars(s, start))[-defaults.LOOKBACK_BARS:] for s in candidates}
        short = history_exclusions(closes)
        for exclusion in short:
            del candidates[exclusion.symbol], closes[exclusion.symbol]
        excluded = sorted(excluded + short, key=lambda e: e.symbol)
        notes = _unmet_minimums(listings, excluded)
        payload = {"steps": [], "target_weights": {}, "method": "", "unallocated_weight": 1.0,
                   "excluded": [asdict(e) for e in excluded], "rules": asdict(rules), "markets": markets}
        if not candidates:
            payload["notes"] = notes + ["no security can be bought now (see excluded): the plan is empty"]
            return payload
        by_symbol = {s.symbol: s for s in listings}
        bounds = weight_bounds({s: (by_symbol[s].min_target, by_symbol[s].max_target) for s in candidates})
        allocation = target_weights(_frame(closes), bounds)
        steps = buy_steps(allocation.weights, portfolio.held_value_base, portfolio.total_value_base, cash,
                          candidates, rules.price_band)
        if cash.pooled < defaults.MIN_TRADE_BASE:
            notes.append(f"spendable cash {base} {max(cash.pooled, 0):,.2f} (after the {base} "
                         f"{cash.reserve_base:,.0f} reserve) is below the minimum trade {defaults.MIN_TRADE_BASE:,.0f}")
        payload.update(steps=[asdict(s) for s in steps], target_weights=allocation.weights, method=allocation.method,
                       unallocated_weight=allocation.unallocated, notes=allocation.notes + notes)
        return payload


def _frame(closes: dict[str, list[tuple[str, float]]]) -> pd.DataFrame:
    return pd.DataFrame({symbol: pd.Series([c for _, c in series], index=pd.to_datetime([d for d, _ in series]))
                         for symbol, series in closes.items()}).sort_index()


def _unmet_minimums(listings: list[Listing], excluded: list[Exclusion]) -> list[str]:
    minimums = {s.symbol: s.min_target for s in listings if s.min_target}
    return [f"{e.symbol}: minimum target {minimums[e.symbol]:g}% not planned ({e.reason})"
            for e in excluded if e.symbol in minimums]


def _plan_from_payload(identifier: str, portfolio_hash: str, day: str, payload: dict, cached: bool) -> Plan:
    return Plan(identifier, portfolio_hash, day, [Step(**s) for s in payload["steps"]], payload["target_weights"],
                payload["method"], [Exclusion(**e) for e in payload.get("excluded", [])],
                payload.get("unallocated_weight", 0.0), payload.get("notes", []), cached)
