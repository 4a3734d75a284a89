"""The planner's pure rules (issue 8 items 2-4): only valid bars, only securities trading would
buy, and weight bounds that are never broken (also through the whole optimiser: see
test_planner_optimizer.py for the rest of it)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.planner import defaults
from services.planner.eligibility import (
    Listing,
    PriceBar,
    Quote,
    TradingRules,
    history_exclusions,
    last_buys_within,
    screen,
    strict_exchanges,
    valid_closes,
)
from services.planner.optimizer import AT_CAPS, OptimizerInput, OptimizerResult, SecurityInput, optimize
from services.planner.optimizer.bounds import BoundInput, Bounds, fit_to_bounds, weight_bounds
from services.planner.plan import Cash, buy_steps, required_cash_base
from services.trading import orders, risk

NOW = datetime(2018, 1, 10, 22, tzinfo=UTC)
RULES = TradingRules(max_price_age_days=4, buy_cooldown_days=30, price_band=0.05, auto_convert_currency=True)
RATES = {"USD": 1.10}


def walk(seed: int, count: int = 400, drift: float = 0.0004) -> list[tuple[str, float]]:
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(drift, 0.012, count)))
    days = pd.bdate_range("2016-06-01", periods=count)
    return [(d.date().isoformat(), float(c)) for d, c in zip(days, closes, strict=True)]


def cagr(rows: list[tuple[str, float]]) -> float:
    """Annualised growth of a series of daily closes (a stand-in for the data service's CAGR)."""
    return (rows[-1][1] / rows[0][1]) ** (252 / (len(rows) - 1)) - 1


def target_weights(series: dict[str, list[tuple[str, float]]],
                   targets: dict[str, tuple[float | None, float | None]] | None = None,
                   growth: dict[str, float] | None = None) -> OptimizerResult:
    """The optimiser on valid closes alone: nothing held, no reserve, neutral scores."""
    securities = [SecurityInput(s, rows, (growth or {}).get(s, cagr(rows)), bounds=BoundInput(*(targets or {}).get(
        s, (None, None)))) for s, rows in series.items()]
    return optimize(OptimizerInput(securities, portfolio_value_base=100_000.0, reserve_base=0.0))


def open_bounds(symbols) -> Bounds:
    return weight_bounds({s: (None, None) for s in symbols})


# --- item 2: the planner sees only valid bars ---

def test_flagged_bars_are_left_out_and_adjusted_closes_used():
    bars = [PriceBar("2018-01-02", 10.0), PriceBar("2018-01-03", 3.0, flag="spike: -70% then +230%"),
            PriceBar("2018-01-04", 10.5, adj_close=10.2), PriceBar("2018-01-05", 99.0, flag="inconsistent")]
    assert valid_closes(bars) == [("2018-01-02", 10.0), ("2018-01-04", 10.2)]
    assert valid_closes([tuple(bar) for bar in bars]) == valid_closes(bars)  # the adapter's plain rows


def test_a_flagged_crash_gives_the_same_plan_as_without_the_bar():
    series = {f"S{i}.US": walk(i, drift=0.0002 * i) for i in range(8)}
    crashed = [PriceBar(d, c) for d, c in series["S7.US"]]
    day, close = series["S7.US"][-120]
    crashed[-120] = PriceBar(day, close * 0.3, flag="spike: -70% then +233%")
    growth = {s: cagr(rows) for s, rows in series.items()}  # the CAGR comes from the data service's valid bars
    with_flag = target_weights({**series, "S7.US": valid_closes(crashed)}, growth=growth)
    without_bar = target_weights({**series, "S7.US": [r for r in series["S7.US"] if r[0] != day]}, growth=growth)
    assert with_flag == without_bar
    # The fault this guards against: read unfiltered, the crash moves the target.
    unfiltered = target_weights({**series, "S7.US": [(b.date, b.close) for b in crashed]}, growth=growth)
    assert unfiltered.weights.get("S7.US", 0) != pytest.approx(with_flag.weights.get("S7.US", 0), abs=1e-3)


# --- item 3: what trading would refuse is not planned ---

def listing(symbol, currency="USD", **kw):
    return Listing(symbol, currency, kw.pop("lot_size", 1), kw.pop("allow_buy", True), kw.pop("tradable", True), **kw)


def test_each_refusal_is_reported_with_trading_rule_names():
    listings = [listing("OK.US"), listing("NOBUY.US", allow_buy=False), listing("IDX.US", tradable=False),
                listing("NOQUOTE.US"), listing("STALE.US"), listing("JP.T", "JPY"), listing("COOL.US"),
                listing("BIGLOT.US", lot_size=10_000), listing("EDGE.US")]
    quotes = {s.symbol: Quote(50.0, date(2018, 1, 10)) for s in listings if s.symbol != "NOQUOTE.US"}
    quotes["STALE.US"] = Quote(50.0, date(2018, 1, 5))  # 5 days old, limit 4
    quotes["EDGE.US"] = Quote(50.0, date(2018, 1, 6))   # 4 days old: still fresh for trading
    recent = last_buys_within([("COOL.US", NOW - timedelta(days=29)), ("OK.US", NOW - timedelta(days=30))],
                              NOW, RULES.buy_cooldown_days)
    candidates, excluded = screen(listings, quotes, "EUR", RATES, RULES, recent, Cash("EUR", {"EUR": 10_000}), NOW)
    assert sorted(candidates) == ["EDGE.US", "OK.US"]
    reasons = {e.symbol: e.reason for e in excluded}
    assert reasons == {"NOBUY.US": "allow_buy", "IDX.US": "allow_buy", "NOQUOTE.US": "price_unavailable",
                       "STALE.US": "price_stale", "JP.T": "fx_rate_missing", "COOL.US": "buy_cooldown",
                       "BIGLOT.US": "cash"}
    stale = next(e for e in excluded if e.symbol == "STALE.US")
    assert "2018-01-05" in stale.detail and "limit 4" in stale.detail
    assert candidates["OK.US"].price == 50.0 and candidates["OK.US"].price_base == pytest.approx(50 / 1.1)


def test_a_buy_on_a_strict_exchange_needs_its_market_open():
    listings = [listing("HK.HK", exchange="XHKG"), listing("TO.CA", exchange="XTSE"), listing("NY.US", exchange="XNYS"),
                listing("AX.AU", exchange="XASX")]
    assert strict_exchanges(listings) == ["XASX", "XHKG", "XTSE"]
    quotes = {s.symbol: Quote(50.0, NOW.date()) for s in listings}
    candidates, excluded = screen(listings, quotes, "EUR", RATES, RULES, {}, Cash("EUR", {"EUR": 10_000}), NOW,
                                  {"XHKG": False, "XTSE": None, "XASX": True})
    assert sorted(candidates) == ["AX.AU", "NY.US"]  # XNYS: trading needs no open market for a BUY there
    assert {e.symbol: e.reason for e in excluded} == {"HK.HK": "market_closed", "TO.CA": "market_closed"}


def test_history_too_short_is_reported():
    short = history_exclusions({"A.US": walk(1, 59), "B.US": walk(2, 60)})
    assert [(e.symbol, e.reason) for e in short] == [("A.US", "insufficient_history")]


def test_cooldown_window_matches_trading():
    buys = [("A.US", NOW - timedelta(days=30)), ("B.US", NOW - timedelta(days=29, hours=23)),
            ("C.US", NOW + timedelta(hours=1))]  # a fill after now is not visible
    assert set(last_buys_within(buys, NOW, 30)) == {"B.US"}


def test_without_auto_conversion_a_foreign_lot_needs_its_own_currency():
    rules = TradingRules(4, 30, 0.05, auto_convert_currency=False)
    quotes = {"A.US": Quote(50.0, NOW.date()), "B.DE": Quote(50.0, NOW.date())}
    cash = Cash("EUR", {"EUR": 10_000}, auto_convert=False)
    candidates, excluded = screen([listing("A.US"), listing("B.DE", "EUR")], quotes, "EUR", RATES, rules, {}, cash,
                                  NOW)
    assert list(candidates) == ["B.DE"] and [(e.symbol, e.reason) for e in excluded] == [("A.US", "cash")]


@settings(max_examples=300, deadline=None)
@given(price=st.floats(0.5, 5000), currency=st.sampled_from(["EUR", "USD"]), lot=st.integers(1, 50),
       eur=st.floats(0, 200_000), usd=st.floats(0, 50_000), band=st.floats(0.001, 0.2),
       max_age=st.integers(0, 30), age=st.integers(0, 40), bought_days_ago=st.none() | st.floats(0, 60),
       auto_convert=st.booleans(), held=st.floats(0, 100_000))
def test_a_planned_first_step_passes_trading_checks(price, currency, lot, eur, usd, band, max_age, age,
                                                    bought_days_ago, auto_convert, held):
    """Whatever the screen admits and buy_steps plans, trading's own check (services/trading/risk.py)
    approves: the first step is never refused for price, freshness, cooldown, lots or cash."""
    rules = TradingRules(max_age, 30, band, auto_convert)
    settings_ = risk.RiskSettings(max_price_age_days=max_age, price_band=band, auto_convert_currency=auto_convert)
    quote_day = NOW.date() - timedelta(days=age)
    last_buy = None if bought_days_ago is None else NOW - timedelta(days=bought_days_ago)
    balances = {"EUR": eur, "USD": usd / RATES["USD"]}
    cash = Cash("EUR", balances, auto_convert=auto_convert)
    candidates, _ = screen([listing("X.US", currency, lot_size=lot)], {"X.US": Quote(price, quote_day)}, "EUR",
                           RATES, rules, last_buys_within([("X.US", last_buy)] if last_buy else [], NOW, 30), cash,
                           NOW)
    total = eur + usd / RATES["USD"] + held
    steps = buy_steps({"X.US": 0.2}, {"X.US": held}, total, cash, candidates, band)
    if not steps:
        return
    step = steps[0]
    available = usd if currency == "USD" else eur
    if currency != "EUR" and auto_convert:
        available += eur * RATES["USD"]
    facts = risk.OrderFacts(
        symbol="X.US", side=orders.BUY, quantity=step.quantity, now=NOW, mode="replay", currency=currency,
        exchange="XNYS", lot_size=lot, allow=True, market_open=True, quote_price=price, quote_date=quote_day,
        limit_price=None, held_quantity=0, average_cost=None, last_buy_at=last_buy, last_sell_at=None,
        ledger_known=True, trade_times=[], daily_pnl=None, daily_pnl_armed=False, cash_available=available,
        commission=orders.commission(step.quantity * price * (1 + band), currency, "EUR", RATES),
        pending_same_side=False, reconciled=True)
    risk.check(facts, settings_)  # raises FailedPrecondition naming the rule if it would refuse
    assert step.estimated_price == price


def test_required_cash_is_trading_cash_rule_in_base():
    value = 1000.0
    assert required_cash_base(value, 0.05) == pytest.approx(1050 + 2 + 0.002 * 1050)


# --- item 4: weight limits are hard bounds ---

def test_a_max_target_of_5_percent_is_a_hard_cap():
    series = {f"S{i}.US": walk(i, drift=0.002 if i == 0 else 0.0001) for i in range(8)}
    allocation = target_weights(series, {"S0.US": (None, 5.0)})
    assert allocation.weights["S0.US"] <= 0.05
    assert target_weights(series).weights["S0.US"] > 0.05  # the cap binds here


def test_three_securities_stay_at_20_percent_and_the_rest_is_cash():
    series = {f"S{i}.US": walk(i) for i in range(3)}
    allocation = target_weights(series)
    assert allocation.weights == {s: 0.2 for s in series} and allocation.method == AT_CAPS
    assert allocation.unallocated == pytest.approx(0.4)
    assert any("40.0% stays cash" in note for note in allocation.notes)


def test_renormalising_after_the_cutoff_never_lifts_a_weight_over_its_cap():
    raw = {"A": 0.2, "B": 0.2, "C": 0.2, "D": 0.2, "E": 0.196, "F": 0.004}
    weights = fit_to_bounds(raw, open_bounds(raw))
    assert max(weights.values()) <= 0.2 and "F" not in weights  # not 0.2/0.996 = 20.1%
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)


def test_infeasible_minimums_fall_back_without_breaking_a_maximum():
    bounds = weight_bounds({"A": (30.0, None), "B": (15.0, 10.0), "C": (80.0, 20.0), "D": (None, None)})
    assert bounds.upper == {"A": 0.2, "B": 0.1, "C": 0.2, "D": 0.2}
    assert bounds.lower == {"A": 0.2, "B": 0.1, "C": 0.2, "D": 0.0}  # lowered to their maximums
    assert len(bounds.notes) == 3
    scaled = weight_bounds({s: (40.0, 100.0) for s in "ABCDEF"}, max_weight=0.5)
    assert sum(scaled.lower.values()) == pytest.approx(1.0) and "240.0%" in scaled.notes[0]


def test_min_targets_are_met():
    series = {f"S{i}.US": walk(i, drift=0.0001 * i) for i in range(8)}
    assert target_weights(series, {"S0.US": (12.0, None)}).weights["S0.US"] >= 0.12


def test_optimiser_is_deterministic():
    series = {f"S{i}.US": walk(i, drift=0.0002 * i) for i in range(8)}
    assert target_weights(series) == target_weights(series)


targets_strategy = st.tuples(st.none() | st.floats(0, 100), st.none() | st.floats(0, 100)).map(
    lambda pair: pair if None in pair else (min(pair), max(pair)))  # the data service refuses min > max


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from("ABCDEFGHIJKL"), st.tuples(st.floats(0, 1), targets_strategy), min_size=1))
def test_fitted_weights_respect_every_bound(rows):
    bounds = weight_bounds({s: t for s, (_, t) in rows.items()})
    weights = fit_to_bounds({s: raw for s, (raw, _) in rows.items()}, bounds)
    assert sum(weights.values()) <= 1 + 1e-9
    for symbol, weight in weights.items():
        assert weight <= bounds.upper[symbol] <= defaults.MAX_WEIGHT
    for symbol, lower in bounds.lower.items():  # rounded() may miss a minimum by 1.5 units of 1e-6
        assert weights.get(symbol, 0.0) >= lower - 1.5e-6 - 1e-12


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(targets_strategy, min_size=1, max_size=10), st.integers(0, 1000))
def test_optimised_weights_never_exceed_a_max_or_20_percent(targets, seed):
    series = {f"S{i}.US": walk(seed + i, 120, drift=0.0005 * ((seed + i) % 5 - 2)) for i in range(len(targets))}
    bounds = weight_bounds(dict(zip(series, targets, strict=True)))
    allocation = target_weights(series, dict(zip(series, targets, strict=True)))
    assert sum(allocation.weights.values()) <= 1 + 1e-9
    assert allocation.unallocated == pytest.approx(1 - sum(allocation.weights.values()))
    for symbol, weight in allocation.weights.items():
        maximum = dict(zip(series, targets, strict=True))[symbol][1]
        assert weight <= defaults.MAX_WEIGHT
        assert maximum is None or weight <= maximum / 100 + 1e-12
    for symbol, lower in bounds.lower.items():
        assert allocation.weights.get(symbol, 0.0) >= lower - 1e-6
