"""Small hand-built books for the holistic planner's pure modules (opportunities, patterns,
sequences, evaluation)."""

from __future__ import annotations

from datetime import date, timedelta

from services.planner.config import preset
from services.planner.opportunities.book import Action, Book, PositionView, SecurityView
from services.planner.plan import Cash

TODAY = date(2020, 6, 1)
DEFAULT = preset("default")


def days_ago(days: int | None) -> date | None:
    return None if days is None else TODAY - timedelta(days=days)


def sec(symbol: str, price_base: float, *, currency: str = "EUR", rate: float = 1.0, lot: int = 1,
        quality: float | None = None, country_group: str = "US", industry_groups: tuple[str, ...] = ("Tech",),
        cagr: float | None = None, volatility: float | None = None, max_weight: float | None = None,
        buy_block: str = "", sell_block: str = "") -> SecurityView:
    return SecurityView(symbol, currency, lot, price_base * rate, price_base, "", "", country_group, industry_groups,
                        quality, cagr, None, volatility, max_weight, buy_block, sell_block)


def pos(symbol: str, quantity: int, average_cost: float, price_base: float, *, bought: int | None = 400,
        last_bought: int | None = None, sold: int | None = None) -> PositionView:
    """A holding first bought `bought` days ago (and last bought `last_bought` days ago, else
    then too), last sold `sold` days ago."""
    return PositionView(symbol, quantity, average_cost, quantity * price_base, days_ago(bought),
                        days_ago(last_bought if last_bought is not None else bought), days_ago(sold))


def book(securities: list[SecurityView], positions: list[PositionView] = (), cash: dict[str, float] | None = None,
         *, reserve: float = 0.0, targets: dict[str, float] | None = None, optimised: set[str] | None = None,
         country_targets: dict[str, float] | None = None, band: float = 0.0, auto_convert: bool = True,
         last_sells: dict[str, int] | None = None, sell_cooldown_days: int = 180,
         last_buys: dict[str, int] | None = None, buy_cooldown_days: int = 30) -> Book:
    cash = {"EUR": 10_000.0} if cash is None else cash
    held = {p.symbol: p for p in positions}
    total = sum(p.value_base for p in positions) + sum(cash.values())
    return Book(TODAY, "EUR", {s.symbol: s for s in securities}, held, Cash("EUR", cash, reserve, auto_convert),
                total, band, targets or {}, frozenset(optimised if optimised is not None else (targets or {})),
                country_targets or {}, {}, "sideways",
                {s: days_ago(d) for s, d in (last_sells or {}).items()}, sell_cooldown_days,
                {s: days_ago(d) for s, d in (last_buys or {}).items()}, buy_cooldown_days)


def act(side: str, symbol: str, value: float, priority: float, category: str, *, price: float = 10.0,
        country: str = "US", industry: str = "Tech") -> Action:
    """An action of `value` EUR at `price` (so value / price shares)."""
    return Action(side, symbol, int(round(value / price)), price, "EUR", value, priority, category,
                  f"{category} {symbol}", (f"COUNTRY:{country}", f"INDUSTRY:{industry}"))


def steps(actions) -> list[tuple]:
    """(side, symbol, quantity) of each action, for assertions written out."""
    return [(a.side, a.symbol, a.quantity) for a in actions]
