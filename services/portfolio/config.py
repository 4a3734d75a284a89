"""Portfolio configuration: the shared settings plus the snapshot retention."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.config import CommonConfig, Env, load_common


@dataclass(frozen=True)
class PortfolioConfig:
    common: CommonConfig
    snapshot_retention_days: int  # 0 keeps every snapshot (performance reads them all)


def load(environ: Mapping[str, str] | None = None) -> PortfolioConfig:
    env = Env(environ)
    common = load_common("portfolio", env=env)
    retention = env.number("TRADER_SNAPSHOT_RETENTION_DAYS", 0, minimum=0, maximum=100 * 366)
    if retention != int(retention):
        env.problems.append(f"TRADER_SNAPSHOT_RETENTION_DAYS={retention!r}: expected whole days")
    config = PortfolioConfig(common, int(retention))
    env.check()
    return config
