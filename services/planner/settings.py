"""The planner's settings and the state hashes that key its recommendations (planner.md
section 6; decisions.md rules 19-20). Pure.

The settings are the original's eleven keys that change a recommendation; their values come
from services/planner/defaults.py, the one place of defaults. The recommendation state is
`portfolio:settings:allocations`: the portfolio hash (portfolio service: positions, cash, each
security's allow flags and min/max targets), the settings hash (here) and the allocations hash
(portfolio service's country/industry group targets; "00000000" when there are none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from services.planner import defaults

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


SETTINGS_KEYS = tuple(sorted(PlannerSettings.__dataclass_fields__))


def _short_md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()[:8]


def settings_hash(values: PlannerSettings | Mapping[str, object]) -> str:
    """First 8 hex digits of the MD5 of `key:value` for the eleven keys in sorted order, joined
    by commas; a missing key hashes as `key:` (planner.md section 6)."""
    if isinstance(values, PlannerSettings):
        values = asdict(values)
    return _short_md5(",".join(f"{key}:{values.get(key, '')}" for key in SETTINGS_KEYS))


def state_key(portfolio_hash: str, settings: str, allocations: str) -> str:
    """The recommendation state: `portfolio:settings:allocations` (26 characters)."""
    return f"{portfolio_hash}:{settings}:{allocations}"
