"""Planner configurations (issue 14 item 7; planner.md section 2 "Configuration", decisions.md
rule 20): the three presets hold planner.md's values, every key of every section is checked
(unknown keys, types and ranges refused naming the key), the satellite sliders map as
documented, and any change of a configuration changes its digest and so the settings hash."""

from __future__ import annotations

import tomllib
from dataclasses import fields, is_dataclass
from typing import get_type_hints

import pytest

from services.planner.config import (
    SLIDER_NAMES,
    ConfigError,
    PlannerConfig,
    apply_sliders,
    check_sliders,
    effective,
    parse,
    preset,
    preset_text,
)
from services.planner.settings import PlannerSettings, settings_hash


def leaves(cls: type = PlannerConfig, path: str = "") -> list[tuple[str, object]]:
    """(dotted key, type, dataclass field) of every scalar of a configuration."""
    found = []
    hints = get_type_hints(cls)
    for spec in fields(cls):
        key = f"{path}.{spec.name}" if path else spec.name
        kind = hints[spec.name]
        found += leaves(kind, key) if is_dataclass(kind) else [(key, kind, spec)]
    return found


def value_at(config: PlannerConfig, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


def toml_setting(key: str, value) -> str:
    """A TOML text setting one dotted key."""
    *table, name = key.split(".")
    text = "true" if value is True else "false" if value is False else repr(value) if not isinstance(value, str) \
        else f'"{value}"'
    return (f"[{'.'.join(table)}]\n" if table else "") + f"{name} = {text}\n"


LEAVES = leaves()


# --- the presets (planner.md section 2 "TOML presets") ---

@pytest.mark.parametrize("key,default,conservative,aggressive", [
    ("planner.max_depth", 5, 2, 7),
    ("planner.max_opportunities_per_category", 5, 3, 10),
    ("planner.priority_threshold", 0.3, 0.5, 0.2),
    ("planner.diversity_weight", 0.3, 0.2, 0.4),
    ("planner.beam_width", 10, 5, 20),
    ("planner.cost_penalty_factor", 0.1, 0.15, 0.05),
    ("planner.min_hold_days", 90, 120, 60),
    ("planner.sell_cooldown_days", 180, 240, 120),
    ("planner.buy_cooldown_days", 30, 60, 15),
    ("planner.max_loss_threshold", -0.20, -0.15, -0.25),
    ("planner.transaction_cost_fixed", 2.0, 2.0, 2.0),
    ("planner.transaction_cost_percent", 0.002, 0.002, 0.002),
    ("opportunity_calculators.profit_taking.windfall_threshold", 0.30, 0.40, 0.20),
    ("opportunity_calculators.opportunity_buys.min_quality_score", 0.7, 0.8, 0.6),
    ("opportunity_calculators.rebalance_sells.overweight_threshold", 0.02, 0.05, 0.01),
    ("opportunity_calculators.rebalance_buys.underweight_threshold", 0.02, 0.05, 0.01),
    ("opportunity_calculators.weight_based.min_gap", 0.01, 0.03, 0.005),
    ("opportunity_calculators.weight_based.enabled", True, False, True),
    ("filters.correlation_aware.threshold", 0.7, 0.6, 0.8),
    ("filters.diversity.max_sequences", 50, 20, 100),
    ("sequence_generators.enhanced_combinatorial.enabled", True, False, True),
    ("sequence_generators.enhanced_combinatorial.max_sells", 4, 4, 5),
    ("sequence_generators.enhanced_combinatorial.max_buys", 4, 4, 5),
    ("sequence_generators.enhanced_combinatorial.max_combinations", 50, 50, 100),
    ("sequence_generators.enhanced_combinatorial.max_candidates", 12, 12, 20),
])
def test_the_presets_hold_planner_md_values(key, default, conservative, aggressive):
    assert [value_at(preset(name), key) for name in ("default", "conservative", "aggressive")] == \
        pytest.approx([default, conservative, aggressive])


def test_default_leaves_the_extras_off_and_aggressive_turns_everything_on():
    default, aggressive = preset("default"), preset("aggressive")
    extras = ("patterns.adaptive.enabled", "patterns.market_regime.enabled",
              "sequence_generators.combinatorial.enabled", "sequence_generators.partial_execution.enabled",
              "sequence_generators.constraint_relaxation.enabled")
    assert not any(value_at(default, key) for key in extras)
    toggles = [key for key, _, _ in LEAVES if key.endswith(".enabled")]
    assert all(value_at(aggressive, key) for key in toggles)
    assert (aggressive.evaluation.mode, aggressive.evaluation.multi_timeframe, aggressive.patterns.market_regime.regime,
            aggressive.planner.mode) == ("stochastic", True, "bull", "full")


def test_the_default_preset_names_every_key_and_the_others_only_known_ones():
    table = tomllib.loads(preset_text("default"))
    for key, _, _ in LEAVES:
        node = table
        for part in key.split("."):
            assert part in node, f"default.toml lacks {key}"
            node = node[part]
    for name in ("conservative", "aggressive"):
        assert parse(preset_text(name)) == preset(name)


# --- every key checked, naming it ---

@pytest.mark.parametrize("section", sorted({key.rsplit(".", 1)[0] for key, _, _ in LEAVES}))
def test_an_unknown_key_in_any_section_is_refused_naming_it(section):
    with pytest.raises(ConfigError) as refused:
        parse(f"[{section}]\nbogus = 1\n")
    assert refused.value.key == f"{section}.bogus" and "unknown key" in str(refused.value)


def test_an_unknown_section_or_top_level_key_is_refused_naming_it():
    for text, key in (("[planer]\nmax_depth = 2\n", "planer"), ("depth = 2\n", "depth"),
                      ("[patterns.greedy]\nenabled = true\n", "patterns.greedy"),
                      ("[sequence_generators.random]\nenabled = true\n", "sequence_generators.random"),
                      ("planner = 3\n", "planner")):
        with pytest.raises(ConfigError) as refused:
            parse(text)
        assert refused.value.key == key


def _outside(kind: type, spec) -> list:
    """Values of the right type just outside a field's range, or not among its choices."""
    if "range" in spec.metadata:
        low, high = spec.metadata["range"]
        step = 1 if kind is int else 1e-6 * max(1.0, abs(high - low))
        return [low - step, high + step]
    if "choices" in spec.metadata:
        return ["something else"]
    return []


CHECKED = [(key, kind, spec) for key, kind, spec in LEAVES if _outside(kind, spec)]


@pytest.mark.parametrize("key,kind,spec", CHECKED, ids=[key for key, _, _ in CHECKED])
def test_every_range_and_choice_is_checked(key, kind, spec):
    for value in _outside(kind, spec):
        with pytest.raises(ConfigError) as refused:
            parse(toml_setting(key, value))
        assert refused.value.key == key


@pytest.mark.parametrize("key,kind,spec", LEAVES, ids=[key for key, _, _ in LEAVES])
def test_every_key_refuses_a_value_of_the_wrong_type(key, kind, spec):
    wrong = [1] if kind in (bool, str) else ["5", True]
    for value in wrong:
        with pytest.raises(ConfigError) as refused:
            parse(toml_setting(key, value))
        assert refused.value.key == key


def test_a_float_key_takes_an_integer_but_an_integer_key_no_fraction_nor_nan():
    assert parse("[planner]\ntransaction_cost_fixed = 3\n").planner.transaction_cost_fixed == 3.0
    for text, key in (("[planner]\nmax_depth = 5.0\n", "planner.max_depth"),
                      ("[planner]\npriority_threshold = nan\n", "planner.priority_threshold"),
                      ("[planner]\ntransaction_cost_fixed = inf\n", "planner.transaction_cost_fixed")):
        with pytest.raises(ConfigError) as refused:
            parse(text)
        assert refused.value.key == key


# --- satellite sliders ---

def test_each_slider_maps_as_documented():
    base = preset("default")
    low, high = apply_sliders(base, dict.fromkeys(SLIDER_NAMES, 0.0)), apply_sliders(base, dict.fromkeys(SLIDER_NAMES,
                                                                                                           1.0))
    assert (low.planner.priority_threshold, high.planner.priority_threshold) == pytest.approx((0.5, 0.2))
    assert (low.planner.min_hold_days, high.planner.min_hold_days) == (30, 180)
    assert (low.planner.max_opportunities_per_category, high.planner.max_opportunities_per_category) == (2, 10)
    assert (low.planner.diversity_weight, high.planner.diversity_weight) == pytest.approx((0.0, 0.5))
    assert (low.opportunity_calculators.profit_taking.windfall_threshold,
            high.opportunity_calculators.profit_taking.windfall_threshold) == pytest.approx((0.4, 0.15))
    half = apply_sliders(base, {"profit": 0.5})
    assert half.opportunity_calculators.profit_taking.windfall_threshold == pytest.approx(0.275)
    assert half.planner == base.planner  # only the slider given changes anything
    assert effective(preset_text("aggressive"), {"risk": 0.5}).planner.priority_threshold == pytest.approx(0.35)
    assert effective(preset_text("aggressive"), {"risk": 0.5}).planner.max_depth == 7  # the preset's own


@pytest.mark.parametrize("sliders,key", [({"courage": 0.5}, "sliders.courage"), ({"risk": 1.01}, "sliders.risk"),
                                         ({"hold": -0.1}, "sliders.hold"), ({"spread": True}, "sliders.spread"),
                                         ({"profit": float("nan")}, "sliders.profit")])
def test_a_bad_slider_is_refused_naming_it(sliders, key):
    with pytest.raises(ConfigError) as refused:
        check_sliders(sliders)
    assert refused.value.key == key


# --- a change of configuration is another state ---

def _changed(spec, value):
    if isinstance(value, bool):
        return not value
    if "choices" in spec.metadata:
        return next(c for c in spec.metadata["choices"] if c != value)
    if isinstance(value, str):
        return value + " (changed)"
    low, high = spec.metadata["range"]
    step = 1 if isinstance(value, int) else (high - low) / 1000
    return value - step if value - step >= low else value + step


@pytest.mark.parametrize("key,kind,spec", LEAVES, ids=[key for key, _, _ in LEAVES])
def test_any_change_of_a_configuration_changes_its_digest_and_the_settings_hash(key, kind, spec):
    base = preset("default")
    try:
        changed = parse(toml_setting(key, _changed(spec, value_at(base, key))))
    except ConfigError as refused:  # allow_buy and allow_sell may not both be false: not reachable from here
        pytest.fail(str(refused))
    assert changed.digest != base.digest
    assert settings_hash(PlannerSettings.from_config(changed)) != settings_hash(PlannerSettings.from_config(base))


def test_the_stored_configuration_is_parsed_once_per_text_and_an_update_is_seen_at_once(tmp_path):
    """ConfigEngine keeps the parsed configuration by the stored TOML and sliders: the same
    text gives the same (frozen) object, any update the new configuration on the next read,
    and going back the original one."""
    from datetime import UTC, datetime

    from services.planner import store
    from services.planner.config_engine import ConfigEngine, ConfigUpdate

    now = datetime(2024, 1, 2, tzinfo=UTC)
    configs = ConfigEngine(store.open_database(f"sqlite:///{tmp_path / 'planner.db'}"), lambda _: "satellite")
    configs.seed(now)
    first = configs.core().config
    assert configs.core().config is first and first == preset("default")
    assert configs.core() is configs.core()  # kept until the configurations change
    configs.update(ConfigUpdate(bucket_id="core", toml="[planner]\nmax_depth = 2\n"), now)
    assert configs.core().config.planner.max_depth == 2 and configs.core().config.digest != first.digest
    configs.update(ConfigUpdate(bucket_id="core", preset="default"), now)
    assert configs.core().config == first and configs.core().config.digest == first.digest
    satellite = configs.update(ConfigUpdate(bucket_id="growth", sliders={"risk": 1.0}), now)
    assert satellite.config.planner.priority_threshold == pytest.approx(0.2) and configs.core().config == first

