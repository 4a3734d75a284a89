"""The optimiser (issue 13 item 5; planner.md section 3): expected returns, bounds from targets,
allow flags and lots, sector constraints with the original's relaxation levels, the mean-variance
fallback chain, HRP, the blend and its post-processing. Bounds and group ranges hold on every
returned weight; a 5% maximum is never exceeded; the same inputs give the same weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.planner import defaults
from services.planner.optimizer import AT_CAPS, OptimizerInput, SecurityInput, optimize, pipeline
from services.planner.optimizer.blend import fit, violations
from services.planner.optimizer.bounds import BoundInput, security_bounds
from services.planner.optimizer.expected_returns import (
    MarketOutlook,
    cost_haircut,
    expected_return,
    forward_adjustment,
    score_factor,
)
from services.planner.optimizer.reserve import regime_reserve
from services.planner.optimizer.sectors import (
    GroupTargets,
    SectorConstraint,
    fit_minimums,
    relaxation_levels,
    sector_constraints,
)
from services.planner.settings import PlannerSettings

VALUE = 100_000.0


def walk(seed: int, count: int = 300, drift: float = 0.0004, vol: float = 0.012) -> list[tuple[str, float]]:
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(drift, vol, count)))
    days = pd.bdate_range("2017-01-02", periods=count)
    return [(d.date().isoformat(), float(c)) for d, c in zip(days, closes, strict=True)]


def security(i: int, cagr: float = 0.08, country: str = "", industry: str = "", **bounds) -> SecurityInput:
    return SecurityInput(f"S{i}.US", walk(i, drift=0.0001 * (i % 5)), cagr, country=country, industry=industry,
                         bounds=BoundInput(**bounds))


def run(securities, reserve: float = 0.0, **kw):
    return optimize(OptimizerInput(securities, VALUE, reserve, **kw))


def assert_within(result, tolerance: float = 1e-5):
    """Every bound and the reported group ranges hold; the total fits what may be invested."""
    assert violations(result.weights, result.bounds, result.constraints, tolerance) == []
    assert sum(result.weights.values()) <= result.investable + 1e-9
    for symbol, weight in result.weights.items():
        assert weight <= result.bounds.upper[symbol] <= defaults.MAX_WEIGHT


# --- expected returns (planner.md section 3) ---

@pytest.mark.parametrize("cagr,dividend,score,regime,expected", [
    (0.10, None, None, "sideways", 0.7 * 0.10 + 0.3 * 0.11),
    (0.10, 0.02, None, "sideways", 0.7 * 0.12 + 0.3 * 0.11),
    (0.10, None, 0.75, "sideways", 0.7 * 0.10 + 0.3 * 0.11 * 1.5),
    (0.10, None, 0.5, "sideways", 0.7 * 0.10 + 0.3 * 0.11),           # 0.5 is neutral: the same as missing
    (0.10, None, 0.0, "sideways", 0.7 * 0.10),
    (0.10, None, -0.3, "sideways", 0.7 * 0.10),                      # at or below 0: factor 0
    (0.10, None, None, "bull", 0.8 * 0.10 + 0.2 * 0.11),
    (0.10, None, None, "bear", 0.75 * (0.7 * 0.10 + 0.3 * 0.11)),
    (0.90, None, None, "sideways", 0.30),                             # clamped
    (-0.60, None, None, "sideways", -0.10),
])
def test_expected_return(cagr, dividend, score, regime, expected):
    assert expected_return(cagr, dividend, score, regime) == pytest.approx(expected)


def test_no_cagr_no_expected_return_and_the_score_factor():
    assert expected_return(None, 0.03, 0.9, "bull") is None
    assert [score_factor(s) for s in (None, 0.5, 1.0, 0.0, -1.0)] == [1.0, 1.0, 2.0, 0.0, 0.0]


@pytest.mark.parametrize("outlook,expected", [
    (MarketOutlook(), 0.0),
    (MarketOutlook(vix=30), 0.0), (MarketOutlook(vix=40), -0.05), (MarketOutlook(vix=50), -0.1),
    (MarketOutlook(vix=70), -0.1), (MarketOutlook(vix=20), 0.0), (MarketOutlook(vix=15), 0.0),
    (MarketOutlook(vix=7.5), 0.025), (MarketOutlook(vix=0), 0.05),
    (MarketOutlook(curve_slope=-0.01), -0.075), (MarketOutlook(curve_slope=-0.02), -0.15),
    (MarketOutlook(curve_slope=-0.05), -0.15), (MarketOutlook(curve_slope=-0.005), 0.0),
    (MarketOutlook(curve_slope=0.01), 0.0), (MarketOutlook(curve_slope=0.02), 0.0225),
    (MarketOutlook(curve_slope=0.05), 0.045),
    (MarketOutlook(market_pe=26), 0.0), (MarketOutlook(market_pe=32.5), -0.05), (MarketOutlook(market_pe=50), -0.1),
    (MarketOutlook(market_pe=22), 0.0), (MarketOutlook(market_pe=18), 0.05), (MarketOutlook(market_pe=14), 0.1),
    (MarketOutlook(vix=60, curve_slope=-0.05, market_pe=50), -0.2),  # -0.35 clamped
    (MarketOutlook(vix=0, curve_slope=0.05, market_pe=10), 0.2),     # 0.245 clamped
])
def test_forward_adjustment_at_its_breakpoints(outlook, expected):
    assert forward_adjustment(outlook) == pytest.approx(expected)


def test_forward_terms_scale_the_expected_return_only_when_known():
    assert expected_return(0.1, None, None, "sideways", MarketOutlook(vix=40)) == pytest.approx(0.103 * 0.95)
    result = run([security(i) for i in range(3)])
    assert any("forward-looking terms" in note and "count 0" in note for note in result.notes)


@pytest.mark.parametrize("held,expected", [
    (0.0, (2 + 0.002 * 250) / 250),      # a new position: the minimum economical trade, 250
    (1_000.0, (2 + 0.002 * 500) / 500),  # half the position
    (300_000.0, (2 + 0.002 * 5_000) / 5_000),  # 5% of the portfolio
    (50.0, 0.02),                        # capped
])
def test_cost_haircut(held, expected):
    assert cost_haircut(held, VALUE) == pytest.approx(expected)


@pytest.mark.parametrize("value,regime,expected", [
    (100_000, "bull", 2_000), (100_000, "bear", 5_000), (100_000, "sideways", 3_000), (100_000, "unknown", 3_000),
    (10_000, "bull", 500), (16_000, "sideways", 500), (20_000, "sideways", 600),
])
def test_regime_reserve(value, regime, expected):
    assert regime_reserve(value, regime) == pytest.approx(expected)


# --- bounds: targets, allow flags, lots ---

def test_bounds_from_allow_flags_and_lots():
    bounds = security_bounds({
        "NOBUY": BoundInput(allow_buy=False, quantity=100, price_base=100, value_base=10_000),
        "NOSELL": BoundInput(allow_sell=False, quantity=80, price_base=100, value_base=8_000),
        "OVER": BoundInput(allow_sell=False, quantity=300, price_base=100, value_base=30_000),
        "ONELOT": BoundInput(quantity=10, lot_size=10, price_base=300, value_base=3_000),
        "LOTS": BoundInput(quantity=10, lot_size=1, price_base=100, value_base=1_000),
        "BIGLOT": BoundInput(quantity=200, lot_size=100, price_base=300, value_base=60_000, max_target=50),
        "CAPPED": BoundInput(min_target=8, max_target=5),
    }, VALUE)
    assert bounds.upper["NOBUY"] == pytest.approx(0.10) and bounds.lower["NOBUY"] == pytest.approx(0.001)
    assert bounds.lower["NOSELL"] == pytest.approx(0.08) and bounds.upper["NOSELL"] == 0.2
    assert bounds.lower["OVER"] == bounds.upper["OVER"] == 0.2   # never above the cap, even held at 30%
    assert bounds.lower["ONELOT"] == pytest.approx(0.03)         # one lot: all or nothing
    assert bounds.lower["LOTS"] == pytest.approx(0.001)          # at least one lot stays
    assert bounds.lower["BIGLOT"] == 0.0 and bounds.upper["BIGLOT"] == 0.2  # a lot above the cap: not forced
    assert bounds.lower["CAPPED"] == bounds.upper["CAPPED"] == 0.05
    assert sorted(note.split(":")[0] for note in bounds.notes) == ["CAPPED", "OVER"]
    scaled = security_bounds({s: BoundInput(min_target=30) for s in "ABCD"}, VALUE, investable=0.95)
    assert sum(scaled.lower.values()) == pytest.approx(0.8)  # 4 x 20%: within what may be invested
    scaled = security_bounds({s: BoundInput(min_target=20) for s in "ABCDEF"}, VALUE, investable=0.95)
    assert sum(scaled.lower.values()) == pytest.approx(0.95) and "scaled down to 95.0%" in scaled.notes[0]


# --- sector constraints ---

def groups(country=None, industry=None) -> GroupTargets:
    country, industry = country or {}, industry or {}
    return GroupTargets(country, industry, {g: g for g in country}, {g: g for g in industry})


def test_country_ranges_cap_and_normalisation():
    countries = {"A1": "US", "A2": "US", "B1": "DE", "C1": "FR", "D1": "JP"}
    constraints, notes = sector_constraints(countries, {}, groups({"US": 40, "DE": 35, "FR": 25}))  # normalised
    by_name = {c.name: c for c in constraints}
    assert set(by_name) == {"US", "DE", "FR"} and by_name["US"].symbols == ("A1", "A2")
    assert by_name["US"].target == pytest.approx(0.40) and by_name["US"].lower == pytest.approx(0.30)
    # uppers min(t + 0.10, 0.35) = 0.35, 0.35, 0.35 add up to 1.05: scaled to 1
    assert [by_name[g].upper for g in ("US", "DE", "FR")] == pytest.approx([1 / 3] * 3)
    assert notes == []
    small, _ = sector_constraints(countries, {}, groups({"US": 0.1, "DE": 0.05}))  # 2/3 and 1/3 once normalised
    assert [(c.name, c.lower, c.upper) for c in small] == [("DE", pytest.approx(1 / 3 - 0.1), 0.35),
                                                           ("US", pytest.approx(2 / 3 - 0.1), 0.35)]


@pytest.mark.parametrize("count,cap", [(1, 0.70), (2, 0.50), (3, 0.40), (4, 0.40), (5, 0.30), (7, 0.30)])
def test_industry_cap_by_number_of_groups(count, cap):
    names = [f"I{n}" for n in range(count)]
    constraints, _ = sector_constraints({}, {f"S{n}": name for n, name in enumerate(names)},
                                        groups(industry=dict.fromkeys(names, 1.0)))
    assert all(c.upper == pytest.approx(min(1 / count + 0.15, cap)) for c in constraints)


def test_minimum_scaling_rules():
    countries = {f"S{n}": g for n, g in enumerate(["A", "A", "B", "B", "C"])}
    industries = {f"S{n}": g for n, g in enumerate(["X", "Y", "X", "Y", "Z"])}
    constraints, notes = sector_constraints(countries, industries, groups({"A": 0.45, "B": 0.45, "C": 0.1},
                                                                          {"X": 0.45, "Y": 0.45, "Z": 0.1}))
    minimums = sum(c.lower for c in constraints)
    assert minimums == pytest.approx(0.60) and "scaled down to 60%" in notes[0]  # 0.35+0.35+0+0.30+0.30 -> 0.60
    lower, fitted, more = fit_minimums({"S0": 0.2, "S1": 0.2, "S2": 0.2, "S3": 0.15}, constraints)
    # securities 0.75 (> 0.70) scaled first to 0.80 - 0.60 = 0.20, then the total fits 0.80
    assert sum(lower.values()) == pytest.approx(0.20) and sum(c.lower for c in fitted) == pytest.approx(0.60)
    assert "scaled down to 80%" in more[0]
    lower, fitted, _ = fit_minimums({"S0": 0.1, "S1": 0.2}, constraints)  # securities 0.30: the sectors give way
    assert sum(lower.values()) == pytest.approx(0.30) and sum(c.lower for c in fitted) == pytest.approx(0.50)
    levels = relaxation_levels(constraints)
    assert [name for name, _ in levels] == ["full", "relaxed_sectors", "no_sectors"]
    assert [c.lower for c in levels[1][1]] == pytest.approx([c.lower / 2 for c in constraints])
    assert relaxation_levels([]) == [("full", [])]


# --- the whole optimiser ---

def test_no_group_targets_no_sector_constraints():
    result = run([security(i, country="US", industry="Tech") for i in range(8)], reserve=3_000)
    assert result.method == "blend" and result.constraints == [] and result.fallback.level == "full"
    assert sum(result.weights.values()) == pytest.approx(0.97, abs=1e-5)
    assert_within(result)


def test_sector_constraints_hold_on_the_blend():
    countries, industries = ["US", "DE", "FR"], ["Tech", "Energy"]
    securities = [security(i, cagr=0.03 * i, country=countries[i % 3], industry=industries[i % 2]) for i in range(10)]
    result = run(securities, reserve=3_000,
                 groups=groups({"US": 0.4, "DE": 0.35, "FR": 0.25}, {"Tech": 0.5, "Energy": 0.5}))
    assert result.fallback.level == "full" and len(result.constraints) == 5
    assert_within(result)
    for constraint in result.constraints:  # the shares of what is invested
        share = sum(result.weights.get(s, 0) for s in constraint.symbols) / sum(result.weights.values())
        assert constraint.lower - 1e-5 <= share <= constraint.upper + 1e-5


def test_infeasible_groups_fall_back_to_relaxed_then_none():
    # US: target 60% -> [50%, 35%]: impossible; halved minimums [25%, 35%] fit beside OTHER.
    securities = ([security(i, country="US") for i in range(4)] + [security(i, country="DE") for i in range(4, 7)]
                  + [security(i, country="BR") for i in range(7, 10)])
    relaxed = run(securities, groups=groups({"US": 0.6, "DE": 0.4}))
    assert relaxed.fallback.level == "relaxed_sectors"
    assert {c.name: c.lower for c in relaxed.constraints} == pytest.approx({"US": 0.25, "DE": 0.15})
    assert_within(relaxed)
    assert any("fell back" in note and "relaxed_sectors" in note for note in relaxed.notes)
    # Every security in a constrained group whose caps add up to 70%: no level but none fits.
    none = run(securities[:7], groups=groups({"US": 0.6, "DE": 0.4}))
    assert none.fallback.level == "no_sectors" and none.constraints == []
    assert_within(none)


def test_an_unreachable_target_return_falls_back_to_min_volatility():
    low = run([security(i, cagr=0.0) for i in range(8)])
    assert (low.fallback.level, low.fallback.objective) == ("full", "min_volatility")
    high = run([security(i, cagr=0.25) for i in range(8)], settings=PlannerSettings(optimizer_blend=0.0))
    assert (high.fallback.level, high.fallback.objective) == ("full", "efficient_return")
    assert high.expected_return >= 0.11 - 1e-4  # mean-variance alone: at least the target return


def test_when_mean_variance_finds_nothing_hrp_alone(monkeypatch):
    monkeypatch.setattr(pipeline, "mean_variance", lambda *a, **k: None)
    result = run([security(i) for i in range(8)])
    assert result.method == "hrp" and result.fallback is None
    assert any("HRP alone" in note for note in result.notes)
    assert_within(result)


def test_blend_share_picks_the_method():
    securities = [security(i, cagr=0.02 * i) for i in range(8)]
    mv = run(securities, settings=PlannerSettings(optimizer_blend=0.0))
    hrp = run(securities, settings=PlannerSettings(optimizer_blend=1.0))
    both = run(securities)
    assert (mv.method, hrp.method, both.method) == ("mean_variance", "hrp", "blend")
    assert mv.weights != hrp.weights != both.weights


def test_caps_adding_up_to_less_than_everything_stay_at_caps():
    result = run([security(i, max_target=10) for i in range(6)] + [security(9)], reserve=2_000)
    assert result.method == AT_CAPS and result.fallback is None
    assert result.weights == {**{f"S{i}.US": 0.1 for i in range(6)}, "S9.US": 0.2}
    assert any("stays cash" in note for note in result.notes)


def test_a_5_percent_maximum_is_never_exceeded_even_held_above_it():
    held = security(0, cagr=0.3, max_target=5, quantity=120, price_base=100.0, value_base=12_000)
    result = run([held] + [security(i) for i in range(1, 8)], reserve=3_000)
    assert result.weights["S0.US"] <= 0.05
    assert_within(result)


def test_a_large_move_is_taken_halfway():
    held = security(0, quantity=600, price_base=100.0, value_base=60_000)  # 60% in one security, cap 20%
    result = run([held] + [security(i) for i in range(1, 10)], reserve=1_000)
    assert result.halfway and any("halfway" in note for note in result.notes)
    assert_within(result)
    calm = run([security(0, quantity=100, price_base=100.0, value_base=10_000)]
               + [security(i) for i in range(1, 10)], reserve=1_000)
    assert not calm.halfway


def test_held_securities_left_out_keep_their_weight():
    short = SecurityInput("NEW.US", walk(99, count=30), 0.1, bounds=BoundInput(quantity=100, price_base=100.0,
                                                                                value_base=10_000))
    result = run([security(i) for i in range(8)] + [short], reserve=3_000, fixed_weight=0.05)
    assert [(e.symbol, e.reason) for e in result.excluded] == [("NEW.US", "insufficient_history")]
    assert result.investable == pytest.approx(1 - 0.03 - 0.05 - 0.10)
    assert sum(result.weights.values()) == pytest.approx(result.investable, abs=1e-5)


@pytest.mark.parametrize("value", [0.0, -10.0])
def test_a_portfolio_without_value_gets_shares_of_a_fully_invested_one(value):
    result = optimize(OptimizerInput([security(i) for i in range(8)], value, 500.0))
    assert result.method == "blend" and sum(result.weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert any("no value yet" in note for note in result.notes)
    assert_within(result)


def test_correlated_pairs_are_reported_strongest_first():
    base = walk(1)
    twin = [(d, c * (1 + 0.0005 * np.sin(n))) for n, (d, c) in enumerate(base)]
    securities = [SecurityInput("A.US", base, 0.1), SecurityInput("B.US", twin, 0.1)] + \
        [security(i) for i in range(2, 8)]
    result = run(securities)
    assert result.correlations[0].first == "A.US" and result.correlations[0].second == "B.US"
    assert result.correlations[0].rho > 0.99
    assert all(abs(c.rho) >= 0.8 for c in result.correlations) and len(result.correlations) <= 5


def test_the_same_inputs_give_the_same_weights():
    securities = [security(i, cagr=0.02 * i, country=["US", "DE", "FR"][i % 3], industry=["T", "E"][i % 2],
                           quantity=i * 10, price_base=100.0, value_base=i * 1_000.0) for i in range(12)]
    kw = dict(reserve=2_500, groups=groups({"US": 0.4, "DE": 0.35, "FR": 0.25}, {"T": 0.5, "E": 0.5}))
    first, second = run(securities, **kw), run(securities, **kw)
    assert first.weights == second.weights and first == second


def test_fit_leaves_weights_that_hold_alone_and_moves_those_that_do_not():
    bounds = security_bounds({s: BoundInput() for s in "ABCDE"}, VALUE)
    inside = {s: 0.15 for s in "ABCDE"}
    assert fit(inside, bounds, [])[0] == inside
    group = SectorConstraint("country", "G", ("A", "B"), 0.3, 0.25, 0.30)  # A + B: 40% of 75%, above 30%
    moved, held = fit(inside, bounds, [group])
    assert held and violations(moved, bounds, [group]) == [] and sum(moved.values()) == pytest.approx(0.75)
    assert moved["A"] + moved["B"] == pytest.approx(0.3 * 0.75) and moved["C"] == pytest.approx(0.175)
    impossible = SectorConstraint("country", "G", ("A", "B"), 0.9, 0.85, 0.95)  # A + B at most 40%
    kept, held = fit(inside, bounds, [impossible])
    assert not held and kept == inside  # the bounds alone already hold


targets = st.tuples(st.none() | st.floats(0, 30), st.none() | st.floats(0, 30)).map(
    lambda pair: pair if None in pair else (min(pair), max(pair)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(targets, st.booleans(), st.integers(0, 400), st.floats(-0.05, 0.3)), min_size=2,
                max_size=12),
       st.integers(0, 10_000), st.sampled_from(["bull", "bear", "sideways"]), st.floats(0, 0.2),
       st.none() | st.tuples(st.floats(0.05, 1), st.floats(0.05, 1), st.floats(0, 1)),
       st.just(0.0) | st.floats(1_000, 1e7))
def test_returned_weights_hold_every_bound_and_group_range(rows, seed, regime, reserve_share, shares, value):
    securities = []
    for i, ((minimum, maximum), allow_sell, held, growth) in enumerate(rows):
        securities.append(SecurityInput(
            f"S{i}.US", walk(seed + i, 120, drift=0.0005 * ((seed + i) % 5 - 2)), growth,
            country=["US", "DE", "FR"][(seed + i) % 3], industry=["T", "E"][i % 2],
            bounds=BoundInput(minimum, maximum, allow_sell=allow_sell, quantity=held, price_base=100.0,
                              value_base=held * 100.0)))
    group_targets = groups({"US": shares[0], "DE": shares[1], "FR": shares[2]}, {"T": 0.5, "E": 0.5}) \
        if shares else GroupTargets()
    result = optimize(OptimizerInput(securities, value, reserve_share * value, regime, groups=group_targets))
    assert_within(result)
    for i, ((_, maximum), *_rest) in enumerate(rows):
        weight = result.weights.get(f"S{i}.US", 0.0)
        assert maximum is None or weight <= maximum / 100 + 1e-12  # a maximum is never exceeded
    assert sum(result.weights.values()) <= (1 - reserve_share if value > 0 else 1) + 1e-9


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 25), st.integers(0, 2**32 - 1))
def test_hrp_weights_are_pypfopt_hrpopt_s(count, seed):
    """The positional HRP gives HRPOpt's weights (single linkage), on factor-correlated returns."""
    from pypfopt import HRPOpt

    from services.planner.optimizer.hrp import hrp_weights

    rng = np.random.default_rng(seed)
    factors = rng.normal(0, 0.01, (250, 3))
    returns = pd.DataFrame(factors @ rng.normal(0, 1, (3, count)) * 0.5 + rng.normal(0, 0.01, (250, count)),
                           columns=[f"S{i:02d}.US" for i in rng.permutation(count)])
    reference = HRPOpt(returns)
    reference.optimize()
    expected = dict(reference.clean_weights(rounding=None))
    found = hrp_weights(np.asfortranarray(returns.to_numpy()), list(returns.columns))
    assert list(found) == sorted(expected)
    assert found == pytest.approx(expected, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.1, 0.3), st.floats(0, 0.2), st.floats(0, 0.6)), min_size=1, max_size=12))
def test_highest_return_is_pypfopt_s_highest_return_lp(rows):
    """The bounds alone give the highest return PyPortfolioOpt's LP finds (or say they cannot)."""
    from pypfopt import EfficientFrontier
    from pypfopt.exceptions import OptimizationError

    from services.planner.optimizer.mean_variance import SOLVER, highest_return

    mu = np.array([m for m, _, _ in rows])
    bounds = [(low, low + width) for _, low, width in rows]
    found = highest_return(mu, bounds)
    symbols = [f"S{i}" for i in range(len(rows))]
    frontier = EfficientFrontier(pd.Series(mu, index=symbols), pd.DataFrame(np.eye(len(rows)) * 0.04, symbols,
                                                                               symbols),
                                 weight_bounds=bounds, solver=SOLVER)
    try:
        expected = frontier._max_return()
    except (OptimizationError, ValueError):
        assert found is None  # the bounds cannot hold with sum(w) = 1: the solver decides
        return
    assert found is None or found == pytest.approx(expected, abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 12), st.integers(0, 10_000), st.floats(0.0, 0.3), st.booleans())
def test_mean_variance_weights_do_not_depend_on_the_highest_return_shortcut(count, seed, target, sectors):
    """Telling efficient_return's reachability from the bounds gives the weights (and the
    objective) the highest-return LP gave."""
    from services.planner.optimizer import mean_variance as mv
    from services.planner.optimizer.bounds import Bounds

    rng = np.random.default_rng(seed)
    symbols = [f"S{i}.US" for i in range(count)]
    cov = covariance({s: walk(seed + i, 120) for i, s in enumerate(symbols)})
    mu = rng.uniform(-0.1, 0.3, count)
    upper = rng.uniform(0.1, 0.6, count)
    bounds = Bounds(dict.fromkeys(symbols, 0.0), dict(zip(symbols, upper.tolist(), strict=True)))
    levels = [("full", [SectorConstraint("country", "US", tuple(symbols[:2]), 0.2, 0.0, 0.3)] if sectors else []),
              ("no_sectors", [])]
    shortcut = mv.mean_variance(symbols, mu, cov, bounds, levels, target)
    original = mv.highest_return
    try:
        mv.highest_return = lambda *_: None
        solved = mv.mean_variance(symbols, mu, cov, bounds, levels, target)
    finally:
        mv.highest_return = original
    assert shortcut == solved


def covariance(closes) -> np.ndarray:
    from services.planner.optimizer.risk import aligned, daily_returns, ledoit_wolf

    return ledoit_wolf(daily_returns(aligned(closes)))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 15), st.integers(30, 300), st.integers(0, 2**32 - 1), st.booleans())
def test_ledoit_wolf_is_pypfopt_covariance_shrinkage_bit_for_bit(count, days, seed, flat):
    """Ledoit-Wolf from the shared numpy returns is PyPortfolioOpt's CovarianceShrinkage on the
    aligned frame, bit for bit (a security whose close never moves included)."""
    from pypfopt.risk_models import CovarianceShrinkage

    from services.planner.optimizer.risk import aligned, aligned_closes, daily_returns, ledoit_wolf

    closes = {f"S{i}.US": walk(seed % 10_000 + i, days) for i in range(count)}
    if flat:
        closes["S0.US"] = [(day, 50.0) for day, _ in closes["S0.US"]]
    expected = CovarianceShrinkage(aligned_closes(closes), frequency=252).ledoit_wolf().to_numpy()
    assert np.array_equal(ledoit_wolf(daily_returns(aligned(closes))), expected)


def frontier_weights(objective: str, symbols, mu, cov, weight_bounds, target: float):
    """PyPortfolioOpt's own weights and problem data for the objective (None when it finds none)."""
    from pypfopt import EfficientFrontier
    from pypfopt.exceptions import OptimizationError

    frontier = EfficientFrontier(pd.Series(mu, index=symbols), pd.DataFrame(cov, symbols, symbols),
                                 weight_bounds=weight_bounds, solver="CLARABEL")
    try:
        frontier.efficient_return(target) if objective == "efficient_return" else frontier.min_volatility()
    except (OptimizationError, ValueError):
        return None, None
    return dict(frontier.clean_weights(rounding=None)), frontier._opt.get_problem_data(solver="CLARABEL")[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(2, 9), st.integers(0, 2**32 - 1), st.floats(0.0, 0.2),
                          st.sampled_from(["efficient_return", "min_volatility"]), st.booleans()),
                min_size=1, max_size=6))
def test_compiled_programs_give_pypfopt_s_weights_bit_for_bit(solves):
    """A compiled program, solved again and again with other data (and other sizes between),
    hands the solver PyPortfolioOpt's matrices and gives its weights bit for bit; data cvxpy
    would treat otherwise (exact zeros) goes through PyPortfolioOpt and gives them too."""
    import scipy.sparse as sp
    from pypfopt.exceptions import OptimizationError

    from services.planner.optimizer import mean_variance as mv

    for count, seed, target, objective, zeros in solves:
        rng = np.random.default_rng(seed)
        symbols = [f"S{i}.US" for i in range(count)]
        cov = covariance({s: walk(seed % 10_000 + i, 120) for i, s in enumerate(symbols)})
        mu = rng.uniform(-0.1, 0.3, count)
        if zeros:
            mu[0] = 0.0
        lower = rng.uniform(0.0, 0.5 / count, count) * (rng.uniform(size=count) < 0.5)
        weight_bounds = list(zip(lower.tolist(), rng.uniform(0.15, 0.6, count).tolist(), strict=True))
        expected, data = frontier_weights(objective, symbols, mu, cov, weight_bounds, target)
        if zeros:
            assert not mv._compilable(mu, cov)
        if not mv._compilable(mu, cov):
            continue  # exact zeros (also a Ledoit-Wolf shrunk fully to its target): PyPortfolioOpt's path
        try:
            found = mv._solve_compiled(objective, symbols, mu, cov, weight_bounds, target, mv.SOLVER)
        except (OptimizationError, ValueError):
            found = None
        assert found == expected
        if data is not None:
            compiled = mv._programs[(objective, count)].problem.get_problem_data(solver="CLARABEL")[0]
            for key in ("P", "A"):
                assert (data[key] != compiled[key]).nnz == 0 and data[key].nnz == compiled[key].nnz
                assert np.array_equal(sp.csc_array(data[key]).indices, sp.csc_array(compiled[key]).indices)
            for key in ("c", "b"):
                assert np.array_equal(data[key], compiled[key])


def test_mean_variance_takes_pypfopt_s_path_for_exact_zeros_and_gives_its_weights():
    """An exact zero in the returns or the covariance (cvxpy drops it from a constant problem's
    matrices) is solved through PyPortfolioOpt: the weights are PyPortfolioOpt's."""
    from services.planner.optimizer import mean_variance as mv
    from services.planner.optimizer.bounds import Bounds

    symbols = [f"S{i}.US" for i in range(5)]
    cov = covariance({s: walk(i, 200) for i, s in enumerate(symbols)})
    cov[1, 2] = cov[2, 1] = 0.0
    mu = np.array([0.1, 0.0, 0.05, 0.2, 0.08])
    bounds = Bounds(dict.fromkeys(symbols, 0.0), dict.fromkeys(symbols, 0.5))
    assert not mv._compilable(mu, cov)
    found = mv.mean_variance(symbols, mu, cov, bounds, [("no_sectors", [])], 0.09)
    expected, _ = frontier_weights("efficient_return", symbols, mu, cov, [(0.0, 0.5)] * 5, 0.09)
    assert found == mv.MeanVarianceResult(expected, "no_sectors", "efficient_return")


def test_a_covariance_cvxpy_does_not_take_as_positive_semidefinite_goes_through_pypfopt():
    """cvxpy tests a constant and a parameter for semidefiniteness differently: such a
    covariance is PyPortfolioOpt's to solve (or refuse), and the weights are its."""
    from services.planner.optimizer import mean_variance as mv
    from services.planner.optimizer.bounds import Bounds

    symbols = ["A.US", "B.US", "C.US"]
    cov = np.array([[0.04, 0.05, 0.01], [0.05, 0.04, 0.01], [0.01, 0.01, 0.04]])  # an eigenvalue below 0
    mu = np.array([0.05, 0.08, 0.1])
    assert not mv._compilable(mu, cov)
    bounds = Bounds(dict.fromkeys(symbols, 0.0), dict.fromkeys(symbols, 0.6))
    found = mv.mean_variance(symbols, mu, cov, bounds, [("no_sectors", [])], 0.07)
    expected, _ = frontier_weights("efficient_return", symbols, mu, cov, [(0.0, 0.6)] * 3, 0.07)
    assert found == mv.MeanVarianceResult(expected, "no_sectors", "efficient_return")


def test_compiled_programs_kept_are_bounded_least_recently_used_first():
    from services.planner.optimizer import mean_variance as mv

    mv._programs.clear()
    for count in range(2, mv.PROGRAMS_KEPT + 4):
        mv._program("min_volatility", count)
    assert len(mv._programs) == mv.PROGRAMS_KEPT
    assert ("min_volatility", 2) not in mv._programs and ("min_volatility", mv.PROGRAMS_KEPT + 3) in mv._programs


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 12), st.integers(30, 260), st.integers(0, 2**32 - 1))
def test_a_covariance_clearly_psd_passes_both_of_cvxpy_s_tests(count, days, seed):
    """What lets the compiled program skip cvxpy's semidefiniteness tests implies both pass:
    the constant's (is_psd) and the parameter's (assigning a PSD parameter's value)."""
    import cvxpy as cp

    from services.planner.optimizer import mean_variance as mv

    cov = covariance({f"S{i}.US": walk(seed % 10_000 + i, days) for i in range(count)})
    if mv._clearly_psd(cov):
        assert cp.Constant(cov).is_psd()
        cp.Parameter(cov.shape, PSD=True).value = cov  # raises ValueError when not PSD


def test_a_covariance_near_singular_is_left_to_cvxpy_s_own_tests():
    """A covariance with an eigenvalue below CLEARLY_PSD (here one just below 0, one just above)
    is decided by cvxpy as before: the one within its tolerance is compiled, the other is not."""
    from services.planner.optimizer import mean_variance as mv

    basis, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))
    for smallest, compilable in ((1e-11, True), (-1e-6, False)):
        cov = basis @ np.diag([0.09, 0.04, 0.02, smallest]) @ basis.T
        cov = (cov + cov.T) / 2
        assert not mv._clearly_psd(cov)
        assert mv._compilable(np.full(4, 0.05), cov) is compilable


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 25), st.integers(0, 2**32 - 1), st.sampled_from(["single", "average", "ward"]))
def test_hrp_leaf_order_is_scipy_s_pre_order(count, seed, method):
    import scipy.cluster.hierarchy as sch

    from services.planner.optimizer.hrp import _leaves

    points = np.random.default_rng(seed).normal(size=(count, 3))
    points[count // 2] = points[0]  # a tie
    link = sch.linkage(points, method)
    assert _leaves(link) == sch.to_tree(link, rd=False).pre_order()


@pytest.mark.parametrize("value", [np.array([0.1, -np.inf, np.inf]), np.array([0.1, np.nan, 0.2]), 0.05, float("nan"),
                                   np.array([1, 2, 3]), np.array([0.1, 0.2])])
def test_a_value_taken_as_plain_is_one_cvxpy_s_check_keeps_as_it_is(value):
    """_plain (the compiled program's values set without cvxpy's check) holds only for values
    that check passes and stores unchanged."""
    import cvxpy as cp

    from services.planner.optimizer import mean_variance as mv

    parameter = cp.Parameter(np.shape(value) if np.ndim(value) == 0 else (3,))
    if mv._plain(value, parameter.shape):
        parameter.value = value
        assert parameter.value is value or parameter.value == value
