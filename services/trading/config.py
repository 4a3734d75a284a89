"""Trading configuration: the shared settings plus the paper broker's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.config import CommonConfig, Env, load_common
from services.trading.adapters.paper_broker import FAULTS, FILL_MODES

LIVE_CONFIRMATION = "I-ACCEPT-REAL-MONEY-RISK"


@dataclass(frozen=True)
class TradernetConfig:
    url: str
    public_key: str
    secret: str


@dataclass(frozen=True)
class TradingConfig:
    common: CommonConfig
    paper_slippage: float    # fraction of the price a paper fill moves against the order
    paper_faults: list[str]  # tests only: faults the paper broker injects, one per order
    paper_fills: str         # close (market-on-close) or quote (at once, at the checked quote)
    tradernet: TradernetConfig | None  # set in live mode only


def load(environ: Mapping[str, str] | None = None) -> TradingConfig:
    env = Env(environ)
    common = load_common("trading", env=env)
    faults = [f.strip() for f in env.text("TRADER_PAPER_FAULTS", "").split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        env.problems.append(f"TRADER_PAPER_FAULTS: unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    tradernet = None
    if common.mode == "live":
        tradernet = TradernetConfig(env.text("TRADER_TRADERNET_URL", "https://freedom24.com"),
                                    env.raw("TRADER_TRADERNET_API_KEY") or "",
                                    env.raw("TRADER_TRADERNET_API_SECRET") or "")
        if not tradernet.public_key or not tradernet.secret:
            env.problems.append("TRADER_MODE=live needs TRADER_TRADERNET_API_KEY and TRADER_TRADERNET_API_SECRET")
        if env.raw("TRADER_LIVE_CONFIRM") != LIVE_CONFIRMATION:
            env.problems.append(f"TRADER_MODE=live trades real money: set TRADER_LIVE_CONFIRM={LIVE_CONFIRMATION} "
                                "to confirm")
        if faults:
            env.problems.append("TRADER_PAPER_FAULTS is for tests with the paper broker, never with TRADER_MODE=live")
    fills = env.text("TRADER_PAPER_FILLS", "close").strip().lower()
    if fills not in FILL_MODES:
        env.problems.append(f"TRADER_PAPER_FILLS={fills!r}: expected one of {', '.join(FILL_MODES)}")
    config = TradingConfig(common, env.number("TRADER_PAPER_SLIPPAGE", 0.0, minimum=0, maximum=0.05),
                           [f for f in faults if f in FAULTS], fills if fills in FILL_MODES else "close", tradernet)
    env.check()
    return config
