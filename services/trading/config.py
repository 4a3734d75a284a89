"""Trading configuration: the shared settings plus the paper broker's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.config import CommonConfig, Env, load_common
from services.trading.adapters.paper_broker import FAULTS


@dataclass(frozen=True)
class TradingConfig:
    common: CommonConfig
    paper_slippage: float    # fraction of the price a paper fill moves against the order
    paper_faults: list[str]  # tests only: faults the paper broker injects, one per order


def load(environ: Mapping[str, str] | None = None) -> TradingConfig:
    env = Env(environ)
    common = load_common("trading", env=env)
    faults = [f.strip() for f in env.text("TRADER_PAPER_FAULTS", "").split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        env.problems.append(f"TRADER_PAPER_FAULTS: unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    config = TradingConfig(common, env.number("TRADER_PAPER_SLIPPAGE", 0.0, minimum=0, maximum=0.05),
                           [f for f in faults if f in FAULTS])
    env.check()
    return config
