"""Which securities the planner may plan for: only those whose BUY the trading service would not
refuse for a reason that lasts (issue 8 items 2 and 3). Pure: plain data in, plain data out.

Only the first step of a plan is executed each cycle, so a step that trading refuses every cycle
blocks all investing. A security is therefore left out of the optimisation, with the reason
reported in the plan, when trading would refuse its BUY by one of its own rules (the rule names
are trading's where trading has one):

- `allow_buy`: the owner does not allow buying it (an index is never traded);
- `market_closed`: its exchange is one where trading needs an open market for a BUY
  (trading's STRICT_EXCHANGES) and that market is closed, or its state unknown, now;
- `price_unavailable`: no valid quote at or before now (flagged bars are never quoted);
- `price_stale`: the quote is older than trading's `max_price_age_days`;
- `fx_rate_missing`: no rate for its currency (only that security is dropped, not the plan);
- `buy_cooldown`: bought within trading's `buy_cooldown_days`;
- `cash`: one lot, at trading's limit price with commission, costs more than the spendable cash;
- `insufficient_history`: fewer valid daily closes than the optimiser needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from services.common.errors import FailedPrecondition
from services.common.money import to_base
from services.planner import defaults
from services.planner.plan import Candidate, Cash, required_cash_base
from services.trading.risk import STRICT_EXCHANGES, RiskSettings  # trading's rules, read where defined


@dataclass(frozen=True)
class TradingRules:
    """The trading service's settings (trading GetSettings) that decide whether a trade passes."""

    max_price_age_days: int
    buy_cooldown_days: int
    price_band: float             # BUYs reserve cash at quote * (1 + band)
    auto_convert_currency: bool   # False: a foreign BUY needs cash in its own currency
    min_hold_days: int = RiskSettings.min_hold_days          # no SELL within this of the last BUY
    sell_cooldown_days: int = RiskSettings.sell_cooldown_days  # nor within this of the last SELL
    max_sell_loss: float = RiskSettings.max_sell_loss        # nor at a loss worse than this


@dataclass(frozen=True)
class Listing:
    """A security as the planner sees it (data ListSecurities), targets in percent."""

    symbol: str
    currency: str
    lot_size: int
    allow_buy: bool
    tradable: bool                # an equity; an index is never traded
    min_target: float | None = None
    max_target: float | None = None
    exchange: str = ""            # MIC
    allow_sell: bool = True
    country: str = ""
    industry: str = ""

    @property
    def buyable(self) -> bool:
        return self.allow_buy and self.tradable


@dataclass(frozen=True)
class Quote:
    """The price trading checks an order against (data GetQuotes): the latest valid close."""

    price: float
    day: date


@dataclass(frozen=True)
class Exclusion:
    symbol: str
    reason: str  # the rule, e.g. price_stale
    detail: str


class PriceBar(NamedTuple):
    """One daily bar of data GetPriceHistory: `flag` is the data service's reason when it
    flagged the bar (any non-empty flag makes the bar invalid)."""

    date: str
    close: float
    adj_close: float | None = None
    flag: str = ""


# A PriceBar's fields as a plain tuple, in its order (valid_closes takes either).
BarRow = tuple[str, float, float | None, str]


def valid_closes(bars: Sequence[PriceBar | BarRow]) -> list[tuple[str, float]]:
    """(date, close) of the bars the data service has not flagged, using the adjusted close
    where the provider has one (returns then include dividends and splits)."""
    return [(day, close if adj_close is None else adj_close) for day, close, adj_close, flag in bars if not flag]


def last_buys_within(buys: Sequence[tuple[str, datetime]], now: datetime, days: int) -> dict[str, datetime]:
    """symbol -> its latest BUY fewer than `days` before `now` (trading's buy cooldown rule)."""
    recent: dict[str, datetime] = {}
    for symbol, executed_at in buys:
        if timedelta(0) <= now - executed_at < timedelta(days=days):
            recent[symbol] = max(executed_at, recent.get(symbol, executed_at))
    return recent


def strict_exchanges(listings: Sequence[Listing], held: Iterable[str] = ()) -> list[str]:
    """The exchanges whose state decides a plan: those of buyable securities where trading
    needs an open market for a BUY, and those of the `held` securities (a SELL always needs
    its market open)."""
    held = set(held)
    return sorted({s.exchange for s in listings if s.buyable and s.exchange in STRICT_EXCHANGES}
                  | {s.exchange for s in listings if s.symbol in held and s.tradable})


def screen(listings: Sequence[Listing], quotes: Mapping[str, Quote], base: str, rates: Mapping[str, float],
           rules: TradingRules, recent_buys: Mapping[str, datetime], cash: Cash, now: datetime,
           market_open: Mapping[str, bool | None] | None = None) -> tuple[dict[str, Candidate], list[Exclusion]]:
    """The securities the plan may buy (as Candidates priced at their quote) and the ones left
    out with the first rule that refuses them, in trading's order of checks. `market_open`
    holds the state now of the strict_exchanges() (None or absent: unknown, counted closed)."""
    candidates: dict[str, Candidate] = {}
    excluded: list[Exclusion] = []
    for listing in sorted(listings, key=lambda s: s.symbol):
        open_now = True if listing.exchange not in STRICT_EXCHANGES else (market_open or {}).get(listing.exchange)
        outcome = _screen_one(listing, quotes.get(listing.symbol), base, rates, rules,
                              recent_buys.get(listing.symbol), cash, now, open_now)
        if isinstance(outcome, Exclusion):
            excluded.append(outcome)
        else:
            candidates[listing.symbol] = outcome
    return candidates, excluded


def _screen_one(listing: Listing, quote: Quote | None, base: str, rates: Mapping[str, float],
                rules: TradingRules, last_buy: datetime | None, cash: Cash, now: datetime,
                open_now: bool | None) -> Candidate | Exclusion:
    symbol = listing.symbol
    if not listing.buyable:
        return Exclusion(symbol, "allow_buy", f"{symbol} may not be bought" if listing.tradable
                         else f"{symbol} is an index, never traded")
    if open_now is not True:
        state = "closed" if open_now is False else "in an unknown state"
        return Exclusion(symbol, "market_closed", f"{listing.exchange} is {state} (a BUY there needs it open)")
    if quote is None or not quote.price > 0:
        return Exclusion(symbol, "price_unavailable", f"no valid price for {symbol} as of now")
    age = (now.date() - quote.day).days
    if age > rules.max_price_age_days:
        return Exclusion(symbol, "price_stale", f"the latest valid price of {symbol} is from {quote.day} "
                                                f"({age} days old, limit {rules.max_price_age_days})")
    try:
        price_base = to_base(quote.price, listing.currency, base, rates)
    except FailedPrecondition as missing:
        return Exclusion(symbol, missing.rule, missing.message)
    if last_buy is not None:
        return Exclusion(symbol, "buy_cooldown", f"{symbol} was bought on {last_buy.date()} "
                                                 f"(cooldown {rules.buy_cooldown_days} days)")
    lot_size = max(1, listing.lot_size)
    spendable = cash.spendable(listing.currency)
    lot_cost = required_cash_base(price_base * lot_size, rules.price_band)
    if cash.pooled >= defaults.MIN_TRADE_BASE and lot_cost > spendable:
        return Exclusion(symbol, "cash", f"one lot of {lot_size} costs {base} {lot_cost:,.2f} at the limit price "
                                         f"with commission; {base} {spendable:,.2f} is spendable in {listing.currency}")
    return Candidate(symbol, quote.price, listing.currency, price_base, lot_size)


def history_exclusions(closes: Mapping[str, Sequence], minimum: int = defaults.MIN_HISTORY_BARS) -> list[Exclusion]:
    """Securities with fewer than `minimum` valid closes: the optimiser cannot estimate them."""
    return [Exclusion(symbol, "insufficient_history", f"{len(series)} valid daily closes, {minimum} needed")
            for symbol, series in sorted(closes.items()) if len(series) < minimum]
