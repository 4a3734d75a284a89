"""In-process market-data servicer with a temporary database and a scripted provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from services.common.errors import Unavailable
from services.data import store
from services.data.config import load
from services.data.engine import sync_bars
from services.data.history import Bar
from services.data.market_hours import session_days
from services.data.server import MarketDataServicer
from services.data.universe import Security


def security(symbol: str = "TEST.US", **overrides) -> Security:
    base = dict(symbol=symbol, name=f"{symbol} Inc.", currency="USD", exchange="XNYS", country="United States",
                sector="Tech", industry="Software")
    return Security(**{**base, **overrides})


def business_days(start: date, count: int, exchange: str = "XNYS") -> list[date]:
    """The first `count` trading sessions of `exchange` from `start` (exchange-calendars)."""
    sessions = session_days(exchange).days
    days, day = [], start
    while len(days) < count:
        if day in sessions:
            days.append(day)
        day += timedelta(days=1)
    return days


def random_walk(count: int, seed: int = 1, start: date = date(2015, 1, 5), price: float = 100.0) -> list[Bar]:
    rng = np.random.default_rng(seed)
    closes = price * np.exp(np.cumsum(rng.normal(0.0004, 0.012, count)))
    return [Bar(day, float(c)) for day, c in zip(business_days(start, count), closes, strict=True)]


@dataclass
class FakeProvider:
    """Returns scripted bars; `fail` makes every call raise Unavailable, as an offline provider does."""

    bars: dict[str, list[Bar]] = field(default_factory=dict)
    infos: dict[str, dict] = field(default_factory=dict)
    fx: dict[str, list] = field(default_factory=dict)
    dividends_: dict[str, list] = field(default_factory=dict)  # symbol -> [(ex-date, per share)]
    fail: bool = False
    name: str = "fake"

    def daily_bars(self, securities, start, end):
        if self.fail:
            raise Unavailable("fake provider: offline")
        return {s.symbol: [b for b in self.bars.get(s.symbol, []) if (start is None or b.date >= start)
                           and b.date <= end] for s in securities}

    def info(self, sec):
        return None if self.fail else self.infos.get(sec.symbol)

    def fx_history(self, currencies, base, start, end):
        if self.fail:
            raise Unavailable("fake provider: offline")
        return {c: [(d, r) for d, r in self.fx.get(c, []) if d <= end] for c in currencies}

    def dividends(self, securities, start, end):
        if self.fail:
            raise Unavailable("fake provider: offline")
        return {s.symbol: [(d, a) for d, a in self.dividends_.get(s.symbol, []) if (start is None or d >= start)
                           and d <= end] for s in securities}


def make_servicer(tmp_path, provider: FakeProvider | None = None, securities: list[Security] = (), **env):
    provider = provider or FakeProvider()
    config = load({"TRADER_AUTH_DISABLED": "1", "TRADER_DATA_DB_URL": f"sqlite:///{tmp_path / 'data.db'}",
                   "TRADER_VAR_DIR": str(tmp_path), **env})
    db = store.open_database(config.common.db_url)
    sync_bars(db, list(securities), provider.bars)
    return MarketDataServicer(config, db, provider), db, provider
