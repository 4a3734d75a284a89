"""Market-data configuration: the shared settings plus the provider's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.config import CommonConfig, Env, load_common

PROVIDERS = ("sample", "yfinance")


@dataclass(frozen=True)
class DataConfig:
    common: CommonConfig
    provider: str        # sample (bundled, offline) or yfinance (live)
    retention_days: int  # bars older than this are deleted at each sync; 0 keeps everything
    regime_index: str    # the index whose 200-day average decides the market regime


def load(environ: Mapping[str, str] | None = None) -> DataConfig:
    env = Env(environ)
    common = load_common("data", env=env)
    config = DataConfig(
        common=common,
        provider=env.choice("TRADER_DATA_PROVIDER", "sample", PROVIDERS),
        retention_days=int(env.number("TRADER_DATA_RETENTION_DAYS", 0, minimum=0, maximum=100_000)),
        regime_index=env.text("TRADER_REGIME_INDEX", "SP500.IDX"),
    )
    if common.mode in ("paper", "live") and config.provider == "sample":
        env.problems.append(f"TRADER_DATA_PROVIDER=sample cannot serve TRADER_MODE={common.mode} (the bundled "
                            "history ends in 2022): set TRADER_DATA_PROVIDER=yfinance")
    env.check()
    return config
