"""Crash test (issue 9): SIGKILL random services, again and again, during a fast replay under
`make run`'s launcher. Afterwards: the replay finished with an ok cycle for every trading day,
nothing executed twice, every order is final after one sync, and the books equal the broker.
`pytest -m long` runs 50 kills per replay of a year, three times.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections import Counter
from datetime import UTC

import pytest
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common.config import SERVICES
from tests.helpers import TOKEN
from tests.launcher import Launcher, cycle_day, cycle_ok, launcher_env
from tests.suite import Suite

pytestmark = pytest.mark.e2e
FINAL = {trading_pb2.FILLED, trading_pb2.CANCELLED, trading_pb2.REJECTED}
# Five sessions: with every order crashing trading once, the launcher's restart back-off doubles
# each time (0.5 s ... 8 s), so a longer window mostly measures waiting; `-m long` runs a year.
START, END = "2019-01-02", "2019-01-08"
VICTIMS = sorted(SERVICES) + ["trading"]  # trading twice as often: its crashes can touch orders


def crash_replay(tmp_path, kills: int, end: str, seed: int, **env: str) -> tuple[list[str], list[str]]:
    """Run the replay from START to `end`, SIGKILLing a random child every 0.3-2 s until `kills`
    were killed or the replay ended. Returns (victims, output lines)."""
    rng = random.Random(seed)
    launcher = Launcher(launcher_env(tmp_path, TRADER_REPLAY_START=START, TRADER_REPLAY_END=end,
                                     TRADER_REPLAY_CYCLES_PER_SECOND="0", TRADER_REPLAY_DAY_TRIES="20", **env))
    victims: list[str] = []
    try:
        launcher.until(lambda line: cycle_day(line) is not None)
        while len(victims) < kills and not launcher.saw("replay reached the end of the history"):
            time.sleep(rng.uniform(0.3, 2.0))
            victim = rng.choice(VICTIMS)
            pid = launcher.children().get(victim)
            if pid is not None:  # None: it is being restarted
                os.kill(pid, signal.SIGKILL)
                victims.append(victim)
        launcher.until(lambda line: line == "replay reached the end of the history", timeout_s=600)
        assert launcher.process.wait(timeout=60) == 0
        launcher.until(lambda line: line == "all services stopped", timeout_s=5)
    finally:
        launcher.close()
    return victims, launcher.seen


def check_after_crashes(tmp_path, victims: list[str], output: list[str], end: str) -> None:
    assert len(victims) >= 3, f"the replay ended before enough crashes: {victims}"
    assert not [line for line in output if line.startswith(("replay gave up", "replay stopped by an error"))]
    suite = Suite(tmp_path, {"OTEL_SDK_DISABLED": "true"})  # the same databases, restarted once more
    for name in ("data", "portfolio", "trading"):
        suite.start_one(name)
    auth = [("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", f"{end}T23:00:00+00:00")]
    try:
        # Every trading day of the range had an ok cycle, in order: no day was lost or skipped.
        data = data_pb2_grpc.MarketDataStub(suite.channel("data"))
        sessions = [b.date for b in data.GetPriceHistory(data_pb2.GetPriceHistoryRequest(
            symbol="SP500.IDX", start=START, end=end), metadata=auth).bars]
        ok_days = [cycle_day(line) for line in output if cycle_day(line) and cycle_ok(line)]
        assert sorted(set(ok_days)) == sessions

        trading = trading_pb2_grpc.TradingStub(suite.channel("trading"))
        broker = trading.SyncBroker(trading_pb2.SyncBrokerRequest(), metadata=auth)
        # No duplicate execution: the broker executed each order once, and at most one a day
        # (one cycle a session, its order filled at that session's close).
        with sqlite3.connect(tmp_path / "trading.db") as db:
            executions = db.execute("SELECT client_order_id, executed_at FROM paper_executions").fetchall()
        assert len(executions) == len({cid for cid, _ in executions})
        per_day = Counter(str(at)[:10] for _, at in executions)
        assert max(per_day.values(), default=0) <= 1, per_day
        trades = trading.ListTrades(trading_pb2.ListTradesRequest(limit=1000), metadata=auth).trades
        assert Counter(t.client_order_id for t in trades) == Counter(cid for cid, _ in executions)

        # Every order final after one sync.
        orders = trading.ListOrders(trading_pb2.ListOrdersRequest(limit=1000), metadata=auth).orders
        open_orders = [(o.client_order_id, trading_pb2.OrderState.Name(o.state), o.reason) for o in orders
                       if o.state not in FINAL]
        assert not open_orders, open_orders
        assert trading.GetTradingStatus(trading_pb2.GetTradingStatusRequest(), metadata=auth).reconciled

        # The books equal the broker, to the cent.
        books = portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio")).GetPortfolio(
            portfolio_pb2.GetPortfolioRequest(), metadata=auth)
        assert sorted((p.symbol, p.quantity) for p in books.positions) == \
            sorted((p.symbol, p.quantity) for p in broker.positions)
        assert {c.currency: round(c.amount, 2) for c in books.cash} == \
            {c.currency: round(c.amount, 2) for c in broker.cash}
        # The last sync is the replay's close-out, at the open of the session after the last.
        after = data.ListSessions(data_pb2.ListSessionsRequest(exchange="XNYS", start=sessions[-1],
                                                               end=f"{int(end[:4]) + 1}-01-31"), metadata=auth)
        assert books.broker_synced_at.ToDatetime(tzinfo=UTC) == after.sessions[1].open.ToDatetime(tzinfo=UTC)
    finally:
        suite.terminate()


def test_random_crashes_during_a_replay_change_nothing(tmp_path):
    """Random SIGKILLs, and on top the trading service dies right after the broker executed each
    order (crash_after_accept: every order of the replay crashes it once)."""
    victims, output = crash_replay(tmp_path, kills=3, end=END, seed=4, TRADER_PAPER_FAULTS="crash_after_accept")
    assert any(line.startswith("trading exit code 17") for line in output)
    check_after_crashes(tmp_path, victims + ["trading"], output, END)


@pytest.mark.long
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_random_crashes_during_a_longer_replay(tmp_path, seed):
    victims, output = crash_replay(tmp_path, kills=50, end="2019-12-31", seed=seed)
    check_after_crashes(tmp_path, victims, output, "2019-12-31")
