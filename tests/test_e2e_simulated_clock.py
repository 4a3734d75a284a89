"""End to end: in replay mode a cycle keeps the replay's simulated clock (issue 11, the new user's
`trader cycle --as-of` at 2018-01-15, 2030-01-15 and 2018-06-01 while the replay was at
2018-06-21). Each refusal is FAILED_PRECONDITION naming its rule and changes nothing: no cycle
recorded, no order, the same books. The six services as processes, on the bundled history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from gateway.server import CycleRunner
from gateway.store import open_database
from services.common import clock
from services.common.errors import FailedPrecondition
from tests.helpers import TOKEN
from tests.suite import Suite

pytestmark = pytest.mark.e2e
AUTH = ("authorization", f"Bearer {TOKEN}")
REPLAY_AT = "2018-06-21T19:30:00Z"  # the replay's clock when the user typed the commands
USER_AS_OFS = {  # the user's three `trader cycle --as-of` values -> the rule that refuses each
    "2018-01-15T19:30:00Z": "as_of_before_last_cycle",
    "2030-01-15T19:30:00Z": "as_of_after_history",
    "2018-06-01": "as_of_before_last_cycle",  # date only: midnight UTC
}


def at(as_of: str | None) -> list[tuple[str, str]]:
    return [AUTH] + ([("x-trader-as-of", as_of)] if as_of else [])


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    suite = Suite(tmp_path_factory.mktemp("clock")).start()
    trading = trading_pb2_grpc.TradingStub(suite.channel("trading"))
    portfolio = portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio"))
    gateway = gateway_pb2_grpc.GatewayStub(suite.channel("gateway"))
    trading.FundPaperAccount(trading_pb2.FundPaperAccountRequest(amount=5_000, reference="clock-1"),
                             metadata=at(REPLAY_AT))
    portfolio.RecordDeposit(portfolio_pb2.RecordDepositRequest(amount=5_000, reference="clock-1"),
                            metadata=at(REPLAY_AT))
    first = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=at(REPLAY_AT), timeout=120)
    assert first.ok, [(s.name, s.detail) for s in first.steps if s.status != gateway_pb2.OK]
    yield suite, gateway, portfolio, trading
    suite.terminate()


def state(gateway, portfolio, trading) -> tuple:
    """What a refused cycle must not change: the cycles recorded, the books, the orders."""
    status = gateway.GetSystemStatus(gateway_pb2.GetSystemStatusRequest(), metadata=at(None), timeout=30)
    book = portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest(), metadata=at(REPLAY_AT))
    orders = trading.ListOrders(trading_pb2.ListOrdersRequest(), metadata=at(REPLAY_AT))
    return (status.cycles_run, status.last_cycle_as_of.ToJsonString(), book.portfolio_hash, book.cash_base,
            [(o.client_order_id, o.state) for o in orders.orders])


def refused(call, rule: str) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value.details()
    assert caught.value.details().startswith(f"{rule}: "), caught.value.details()
    return caught.value.details()


@pytest.mark.parametrize("as_of", sorted(USER_AS_OFS))
def test_the_users_cycles_are_refused_and_change_nothing(system, as_of):
    _, gateway, portfolio, trading = system
    before = state(gateway, portfolio, trading)
    refused(lambda: gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=at(as_of), timeout=120),
            USER_AS_OFS[as_of])
    assert state(gateway, portfolio, trading) == before


def test_a_cycle_without_an_as_of_is_refused(system):
    _, gateway, portfolio, trading = system
    before = state(gateway, portfolio, trading)
    refused(lambda: gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=at(None), timeout=120),
            "simulated_clock")
    assert state(gateway, portfolio, trading) == before


def test_jobs_acting_on_the_book_keep_the_clock_too(system):
    """A job before the cycle (jobs_before) or on its own (RunJob) at an earlier as-of is refused
    before anything runs."""
    _, gateway, portfolio, trading = system
    before = state(gateway, portfolio, trading)
    late = "2018-06-22T19:30:00Z"
    early = gateway_pb2.RunSyncCycleRequest(jobs_before=[gateway_pb2.ReplayJobRun(name="bucket_reconciliation")])
    early.jobs_before[0].as_of.FromJsonString("2018-06-20T03:30:00Z")
    refused(lambda: gateway.RunSyncCycle(early, metadata=at(late), timeout=120), "as_of_before_last_cycle")
    refused(lambda: gateway.RunJob(gateway_pb2.RunJobRequest(name="dividend_reinvestment"),
                                   metadata=at("2018-06-20T19:30:00Z"), timeout=120), "as_of_before_last_cycle")
    assert state(gateway, portfolio, trading) == before


def test_the_same_instant_again_and_a_later_one_run(system):
    """A retried day (the same as-of) and the next day still run: time may stand or move forward."""
    _, gateway, portfolio, trading = system
    for as_of in (REPLAY_AT, "2018-06-22T19:30:00Z"):
        reply = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=at(as_of), timeout=120)
        assert reply.ok, [(s.name, s.detail) for s in reply.steps if s.status != gateway_pb2.OK]
    refused(lambda: gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=at(REPLAY_AT), timeout=120),
            "as_of_before_last_cycle")


def test_a_running_replay_driver_bounds_the_clock(tmp_path):
    """With `make run`'s driver in the gateway, nothing runs past the instant it reached (nor
    before it reached one), so a manual cycle cannot leave the driver's next day in the past."""
    db = open_database(f"sqlite:///{tmp_path / 'gateway.db'}")
    runner = CycleRunner(db, None, simulated=True, follows_replay=True)
    reached = runner.follow_replay()
    day = datetime(2018, 6, 21, 19, 30, tzinfo=UTC)
    with clock.use_as_of(day):
        with pytest.raises(FailedPrecondition, match="^as_of_after_replay_clock: .*not started yet"):
            runner.check_clock(day, "the cycle")
        reached(day)
        runner.check_clock(day, "the cycle")
        with pytest.raises(FailedPrecondition, match="^as_of_after_replay_clock: .*2018-06-21T19:30:00Z"):
            runner.check_clock(day + timedelta(minutes=1), "the cycle")
    with pytest.raises(FailedPrecondition, match="^simulated_clock: "):
        runner.check_clock(day, "the cycle")
    db.close()
