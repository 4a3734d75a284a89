"""Display configuration: the shared settings plus the device."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.config import CommonConfig, Env, load_common


@dataclass(frozen=True)
class DisplayConfig:
    common: CommonConfig
    serial: str  # "" = no device, "emulator", or a serial port / pyserial URL


def load(environ: Mapping[str, str] | None = None) -> DisplayConfig:
    env = Env(environ)
    common = load_common("display", env=env)
    config = DisplayConfig(common, env.text("TRADER_DISPLAY_SERIAL", ""))
    env.check()
    return config
