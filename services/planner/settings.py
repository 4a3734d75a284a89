"""The planner's settings and the state hashes that key its recommendations (planner.md
section 6; decisions.md rules 19-20). Pure.

The settings are the original's eleven keys that change a recommendation, taken from the
planner configuration in force (config.py; the default preset by default, the one place of
defaults), plus that configuration's digest: any change of the configuration is another
state, so another plan (the original hashed the eleven keys only). The recommendation state is
`portfolio:settings:allocations`: the portfolio hash (portfolio service: positions, cash, each
security's allow flags and min/max targets), the settings hash (here) and the allocations hash
(portfolio service's country/industry group targets; "00000000" when there are none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from services.planner import defaults
from services.planner.config import PlannerConfig

NO_ALLOCATIONS_HASH = "00000000"  # the original's hash of "no allocation targets"


@dataclass(frozen=True)
class PlannerSettings:
    """The settings that change what the planner recommends (planner.md section 6)."""

    max_loss_threshold: float = defaults.MAX_LOSS_THRESHOLD
    max_plan_depth: int = defaults.MAX_STEPS
    min_cash_reserve: float = defaults.MIN_CASH_RESERVE_BASE
    min_hold_days: int = defaults.MIN_HOLD_DAYS
    min_security_score: float = defaults.MIN_SECURITY_SCORE
    optimizer_blend: float = defaults.OPTIMIZER_BLEND
    optimizer_target_return: float = defaults.OPTIMIZER_TARGET_RETURN
    sell_cooldown_days: int = defaults.SELL_COOLDOWN_DAYS
    target_annual_return: float = defaults.TARGET_ANNUAL_RETURN
    transaction_cost_fixed: float = defaults.COMMISSION_FIXED_BASE
    transaction_cost_percent: float = defaults.COMMISSION_RATE
    config_digest: str = defaults.DEFAULT_CONFIG.digest  # of the whole configuration (config.py)

    @classmethod
    def from_config(cls, config: PlannerConfig) -> PlannerSettings:
        planner, optimizer = config.planner, config.optimizer
        return cls(max_loss_threshold=planner.max_loss_threshold, max_plan_depth=planner.max_depth,
                   min_cash_reserve=optimizer.min_cash_reserve, min_hold_days=planner.min_hold_days,
                   min_security_score=planner.min_security_score, optimizer_blend=optimizer.blend,
                   optimizer_target_return=optimizer.target_return, sell_cooldown_days=planner.sell_cooldown_days,
                   target_annual_return=optimizer.target_annual_return,
                   transaction_cost_fixed=planner.transaction_cost_fixed,
                   transaction_cost_percent=planner.transaction_cost_percent, config_digest=config.digest)


SETTINGS_KEYS = tuple(sorted(name for name in PlannerSettings.__dataclass_fields__ if name != "config_digest"))


def _short_md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()[:8]


def settings_hash(values: PlannerSettings | Mapping[str, object]) -> str:
    """First 8 hex digits of the MD5 of `key:value` for the eleven keys in sorted order, joined
    by commas; a missing key hashes as `key:` (planner.md section 6). PlannerSettings add
    `,planner_config:<digest>` of their configuration."""
    digest = ""
    if isinstance(values, PlannerSettings):
        digest, values = values.config_digest, asdict(values)
    text = ",".join(f"{key}:{values.get(key, '')}" for key in SETTINGS_KEYS)
    return _short_md5(text + (f",planner_config:{digest}" if digest else ""))


def state_key(portfolio_hash: str, settings: str, allocations: str) -> str:
    """The recommendation state: `portfolio:settings:allocations` (26 characters)."""
    return f"{portfolio_hash}:{settings}:{allocations}"
