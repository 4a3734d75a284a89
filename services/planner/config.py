"""Planner configurations: the default, conservative and aggressive presets (TOML files in
services/planner/presets/), read and checked here (planner.md section 2 "Configuration";
decisions.md rule 20). Pure: text in, a frozen PlannerConfig out.

- `presets/default.toml` names every key of every section: it is the one set of planner
  defaults (services/planner/defaults.py reads its values from here). Any other configuration
  (the other presets, a user's TOML) names only what it changes and is read over it.
- Every section is parsed explicitly: an unknown section or key, a missing key, a value of the
  wrong type or out of its range is refused with `ConfigError` naming the key
  (`planner.max_depth: must be between 1 and 10, got 12`).
- Satellite sliders (each 0..1) map onto a configuration as the original documented and
  applied them (planner.md section 2 "Satellite sliders"): risk -> priority_threshold
  0.5 - 0.3v; hold -> min_hold_days int(30 + 150v); spread -> max_opportunities_per_category
  int(2 + 8v) and diversity_weight 0.5v; profit -> the profit-taking windfall threshold
  0.4 - 0.25v. The original's other slider outputs were never applied and are not offered.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any, get_type_hints

PRESETS_DIR = Path(__file__).with_name("presets")
PRESET_NAMES = ("default", "conservative", "aggressive")
SLIDER_NAMES = ("risk", "hold", "spread", "profit")
MAX_TOML_LENGTH = 64_000


class ConfigError(ValueError):
    """A configuration refused; `key` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _range(low: float, high: float) -> dict:
    return {"range": (low, high)}


def _choice(*values: str) -> dict:
    return {"choices": values}


# --- sections ---


@dataclass(frozen=True)
class PlannerSection:
    name: str
    description: str
    mode: str = field(metadata=_choice("incremental", "full"))
    max_depth: int = field(metadata=_range(1, 10))
    max_opportunities_per_category: int = field(metadata=_range(1, 50))
    priority_threshold: float = field(metadata=_range(0.0, 1.0))
    enable_diverse_selection: bool
    diversity_weight: float = field(metadata=_range(0.0, 1.0))
    transaction_cost_fixed: float = field(metadata=_range(0.0, 1000.0))
    transaction_cost_percent: float = field(metadata=_range(0.0, 0.01))
    allow_buy: bool
    allow_sell: bool
    min_hold_days: int = field(metadata=_range(0, 3650))
    sell_cooldown_days: int = field(metadata=_range(0, 3650))
    buy_cooldown_days: int = field(metadata=_range(0, 3650))
    max_loss_threshold: float = field(metadata=_range(-1.0, 0.0))
    min_security_score: float = field(metadata=_range(0.0, 1.0))
    beam_width: int = field(metadata=_range(1, 50))
    cost_penalty_factor: float = field(metadata=_range(0.0, 1.0))
    end_state_weights: str = field(metadata=_choice("default", "conservative", "aggressive"))


@dataclass(frozen=True)
class OptimizerSection:
    blend: float = field(metadata=_range(0.0, 1.0))
    target_return: float = field(metadata=_range(-0.10, 0.30))
    target_annual_return: float = field(metadata=_range(-0.10, 0.30))
    min_cash_reserve: float = field(metadata=_range(0.0, 1e9))


@dataclass(frozen=True)
class EvaluationSection:
    mode: str = field(metadata=_choice("deterministic", "stochastic", "monte_carlo"))
    monte_carlo_paths: int = field(metadata=_range(10, 500))
    seed: int = field(metadata=_range(0, 2**32 - 1))
    multi_timeframe: bool


@dataclass(frozen=True)
class BatchSection:
    size: int = field(metadata=_range(1, 100_000))
    cycle_time_budget_seconds: float = field(metadata=_range(0.0, 3600.0))


@dataclass(frozen=True)
class WeightBased:
    enabled: bool
    min_gap: float = field(metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class ProfitTaking:
    enabled: bool
    windfall_threshold: float = field(metadata=_range(0.0, 5.0))
    priority_weight: float = field(metadata=_range(0.0, 10.0))


@dataclass(frozen=True)
class AveragingDown:
    enabled: bool
    dip_threshold: float = field(metadata=_range(-1.0, 0.0))
    min_quality_score: float = field(metadata=_range(0.0, 1.0))
    priority_weight: float = field(metadata=_range(0.0, 10.0))


@dataclass(frozen=True)
class OpportunityBuys:
    enabled: bool
    min_quality_score: float = field(metadata=_range(0.0, 1.0))
    priority_weight: float = field(metadata=_range(0.0, 10.0))


@dataclass(frozen=True)
class RebalanceSells:
    enabled: bool
    overweight_threshold: float = field(metadata=_range(0.0, 1.0))
    max_sell_fraction: float = field(metadata=_range(0.0, 1.0))
    priority_weight: float = field(metadata=_range(0.0, 10.0))


@dataclass(frozen=True)
class RebalanceBuys:
    enabled: bool
    underweight_threshold: float = field(metadata=_range(0.0, 1.0))
    priority_weight: float = field(metadata=_range(0.0, 10.0))


@dataclass(frozen=True)
class Calculators:
    weight_based: WeightBased
    profit_taking: ProfitTaking
    averaging_down: AveragingDown
    opportunity_buys: OpportunityBuys
    rebalance_sells: RebalanceSells
    rebalance_buys: RebalanceBuys


@dataclass(frozen=True)
class Toggle:
    enabled: bool


@dataclass(frozen=True)
class MarketRegimePattern:
    enabled: bool
    regime: str = field(metadata=_choice("auto", "bull", "bear", "sideways"))


@dataclass(frozen=True)
class Patterns:
    """The 13 patterns of planner.md section 2, in its order."""

    direct_buy: Toggle
    profit_taking: Toggle
    rebalance: Toggle
    averaging_down: Toggle
    single_best: Toggle
    multi_sell: Toggle
    mixed_strategy: Toggle
    opportunity_first: Toggle
    deep_rebalance: Toggle
    cash_generation: Toggle
    cost_optimized: Toggle
    adaptive: Toggle
    market_regime: MarketRegimePattern


@dataclass(frozen=True)
class EnhancedCombinatorial:
    enabled: bool
    max_sells: int = field(metadata=_range(1, 10))
    max_buys: int = field(metadata=_range(1, 10))
    max_combinations: int = field(metadata=_range(1, 10_000))
    max_candidates: int = field(metadata=_range(1, 100))
    max_attempts: int = field(metadata=_range(1, 100_000))


@dataclass(frozen=True)
class Combinatorial:
    enabled: bool
    max_sells: int = field(metadata=_range(1, 10))
    max_buys: int = field(metadata=_range(1, 10))
    max_combinations: int = field(metadata=_range(1, 10_000))
    max_candidates: int = field(metadata=_range(1, 100))


@dataclass(frozen=True)
class Generators:
    enhanced_combinatorial: EnhancedCombinatorial
    combinatorial: Combinatorial
    partial_execution: Toggle
    constraint_relaxation: Toggle


@dataclass(frozen=True)
class CorrelationAware:
    enabled: bool
    threshold: float = field(metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class Diversity:
    enabled: bool
    max_sequences: int = field(metadata=_range(1, 100_000))


@dataclass(frozen=True)
class Filters:
    correlation_aware: CorrelationAware
    diversity: Diversity
    eligibility: Toggle
    recently_traded: Toggle


@dataclass(frozen=True)
class PlannerConfig:
    planner: PlannerSection
    optimizer: OptimizerSection
    evaluation: EvaluationSection
    batch: BatchSection
    opportunity_calculators: Calculators
    patterns: Patterns
    sequence_generators: Generators
    filters: Filters

    @cached_property  # computed once per (immutable) configuration: every plan's settings hash reads it
    def digest(self) -> str:
        """8 hex digits of the SHA-256 of every value: any change of the configuration changes it."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


# --- reading ---


def _check_scalar(key: str, kind: type, value: Any, metadata: Mapping) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be a whole number, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(key, f"must be a number, got {value!r}")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
    if "range" in metadata:
        low, high = metadata["range"]
        if not low <= value <= high:
            raise ConfigError(key, f"must be between {low:g} and {high:g}, got {value!r}")
    if "choices" in metadata and value not in metadata["choices"]:
        raise ConfigError(key, f"must be one of {', '.join(metadata['choices'])}, got {value!r}")
    return value


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(path, f"must be a table, got {data!r}")
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{path}.{key}" if path else key, f"unknown key (known: {', '.join(known)})")
    hints = get_type_hints(cls)
    values = {}
    for name, spec in known.items():
        key = f"{path}.{name}" if path else name
        if name not in data:
            raise ConfigError(key, "missing")
        kind = hints[name]
        values[name] = (_build(kind, data[name], key) if is_dataclass(kind)
                        else _check_scalar(key, kind, data[name], spec.metadata))
    return cls(**values)


def _merged(base: Mapping, override: Mapping) -> dict:
    result = dict(base)
    for key, value in override.items():
        result[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return result


def _toml(text: str) -> dict:
    if len(text) > MAX_TOML_LENGTH:
        raise ConfigError("toml", f"longer than {MAX_TOML_LENGTH} characters")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("toml", f"not valid TOML: {exc}") from exc


def _checked(config: PlannerConfig) -> PlannerConfig:
    if not (config.planner.allow_buy or config.planner.allow_sell):
        raise ConfigError("planner.allow_buy", "allow_buy and allow_sell cannot both be false")
    return config


@cache
def preset_text(name: str) -> str:
    if name not in PRESET_NAMES:
        raise ConfigError("preset", f"unknown preset {name!r} (known: {', '.join(PRESET_NAMES)})")
    return (PRESETS_DIR / f"{name}.toml").read_text()


@cache
def _default_table() -> dict:
    return _toml(preset_text("default"))


def parse(text: str) -> PlannerConfig:
    """A configuration from TOML, read over the default preset (the default preset itself must
    name every key). ConfigError names the first key refused."""
    return _checked(_build(PlannerConfig, _merged(_default_table(), _toml(text)), ""))


@cache
def preset(name: str) -> PlannerConfig:
    """One of PRESET_NAMES, parsed."""
    if name == "default":
        return _checked(_build(PlannerConfig, _default_table(), ""))
    return parse(preset_text(name))


# --- satellite sliders ---


def check_sliders(sliders: Mapping[str, float]) -> dict[str, float]:
    """The sliders in their order, each checked to be 0..1; an unknown name is refused."""
    for name, value in sliders.items():
        if name not in SLIDER_NAMES:
            raise ConfigError(f"sliders.{name}", f"unknown slider (known: {', '.join(SLIDER_NAMES)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigError(f"sliders.{name}", f"must be between 0 and 1, got {value!r}")
    return {name: float(sliders[name]) for name in SLIDER_NAMES if name in sliders}


def apply_sliders(config: PlannerConfig, sliders: Mapping[str, float]) -> PlannerConfig:
    """The configuration with the satellite sliders' documented values in place of the ones
    they steer (see the module's docstring)."""
    sliders = check_sliders(sliders)
    planner = config.planner
    calculators = config.opportunity_calculators
    if "risk" in sliders:
        planner = replace(planner, priority_threshold=0.5 - 0.3 * sliders["risk"])
    if "hold" in sliders:
        planner = replace(planner, min_hold_days=int(30 + 150 * sliders["hold"]))
    if "spread" in sliders:
        planner = replace(planner, max_opportunities_per_category=int(2 + 8 * sliders["spread"]),
                          diversity_weight=0.5 * sliders["spread"])
    if "profit" in sliders:
        calculators = replace(calculators, profit_taking=replace(
            calculators.profit_taking, windfall_threshold=0.4 - 0.25 * sliders["profit"]))
    return replace(config, planner=planner, opportunity_calculators=calculators)


def effective(text: str, sliders: Mapping[str, float] | None = None) -> PlannerConfig:
    """A stored configuration as the planner uses it: its TOML read over the default preset,
    then its sliders applied."""
    config = parse(text)
    return apply_sliders(config, sliders) if sliders else config
