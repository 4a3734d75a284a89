"""The portfolio over gRPC with its real peers in this process (the data service with scripted
bars, a display that records what it is told): every RPC with bad input answers
INVALID_ARGUMENT naming the field (NOT_FOUND, FAILED_PRECONDITION where that is the answer) and
changes nothing; the books, snapshots, the daily P&L, buckets and allocation targets work end to
end."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest
from sqlalchemy import MetaData, select
from trader.data.v1 import data_pb2_grpc
from trader.display.v1 import display_pb2, display_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2 as pb
from trader.portfolio.v1 import portfolio_pb2_grpc

from services.common.client import Clients
from services.common.config import load_common
from services.common.server import start_server
from services.common.timestamps import to_timestamp
from services.data.history import Bar
from services.portfolio import store
from services.portfolio.server import PortfolioServicer
from tests.data_fixtures import FakeProvider, business_days, make_servicer, security
from tests.helpers import free_port

DAYS = business_days(date(2024, 1, 2), 30)
SECURITIES = [security("AAPL.US", sector="Technology", industry="Consumer Electronics"),
              security("SAP.DE", currency="EUR", exchange="XETR", country="Germany", sector="Technology",
                       industry="Software"),
              security("KO.US", sector="Consumer Defensive", industry="Beverages")]
BARS = {s.symbol: [Bar(d, 100.0 + i) for i, d in enumerate(DAYS)] for s in SECURITIES}


class RecordingDisplay(display_pb2_grpc.DisplayServicer):
    def __init__(self):
        self.posted: list[display_pb2.PostMessageRequest] = []
        self.cleared: list[display_pb2.ClearMessageRequest] = []

    def PostMessage(self, request, context):
        self.posted.append(request)
        return display_pb2.DisplayState(text=request.text)

    def ClearMessage(self, request, context):
        self.cleared.append(request)
        return display_pb2.DisplayState()


@contextlib.contextmanager
def portfolio_system(tmp_path, securities, bars, wrap_data=lambda servicer: servicer):
    """The portfolio service over gRPC with a data service of scripted `bars` and a recording
    display, in this process: yields (portfolio channel, data channel, the data servicer as
    `wrap_data` made it, the display, the portfolio's database); stops all after."""
    names = ("data", "portfolio", "display")
    env = {"TRADER_AUTH_DISABLED": "1", "TRADER_VAR_DIR": str(tmp_path), "TRADER_FX_RATES": "USD=1.10",
           **{f"TRADER_{n.upper()}_ADDR": f"127.0.0.1:{free_port()}" for n in names}}
    configs = {n: load_common(n, env) for n in names}
    servicer, data_db, _ = make_servicer(tmp_path, FakeProvider(bars), securities, **env)
    data, display = wrap_data(servicer), RecordingDisplay()
    clients = Clients(configs["portfolio"])
    db = store.open_database(f"sqlite:///{tmp_path / 'portfolio.db'}")
    portfolio = PortfolioServicer(configs["portfolio"], db, clients)
    servers = [start_server(configs["data"], lambda s: data_pb2_grpc.add_MarketDataServicer_to_server(data, s)),
               start_server(configs["display"], lambda s: display_pb2_grpc.add_DisplayServicer_to_server(display, s)),
               start_server(configs["portfolio"],
                            lambda s: portfolio_pb2_grpc.add_PortfolioServicer_to_server(portfolio, s))]
    channels = [grpc.insecure_channel(configs[n].listen_address) for n in ("portfolio", "data")]
    try:
        yield channels[0], channels[1], data, display, db
    finally:
        for channel in channels:
            channel.close()
        clients.close()
        for server in servers:
            server.stop(0)
        db.close()
        data_db.close()


@pytest.fixture
def service(tmp_path):
    with portfolio_system(tmp_path, SECURITIES, BARS) as (channel, _, _, display, db):
        yield portfolio_pb2_grpc.PortfolioStub(channel), db, display


def at(day: date) -> list[tuple[str, str]]:
    return [("x-trader-as-of", datetime(day.year, day.month, day.day, 22, tzinfo=UTC).isoformat())]


def digest(db) -> str:
    """Every row of every portfolio table."""
    metadata = MetaData()
    with db.engine.connect() as connection:
        metadata.reflect(connection)
        rows = {name: sorted(map(repr, connection.execute(select(table)).all()))
                for name, table in sorted(metadata.tables.items())}
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def seeded(stub):
    """A deposit, a BUY of 10 AAPL.US with its fee, the broker's state, a snapshot."""
    stub.RecordDeposit(pb.RecordDepositRequest(amount=5000, reference="dep-1"), metadata=at(DAYS[3]))
    executed = to_timestamp(datetime(2024, 1, 5, 20, tzinfo=UTC))
    stub.ApplyBrokerState(pb.ApplyBrokerStateRequest(
        positions=[pb.BrokerPosition(symbol="AAPL.US", quantity=10, average_cost=103.0, currency="USD")],
        cash=[pb.BrokerCash(currency="EUR", amount=5000 - 1034.26 / 1.10), pb.BrokerCash(currency="USD", amount=0.0)],
        fills=[pb.BrokerFill(ledger_id=1, broker_trade_id="PAPER-1", client_order_id="c1", symbol="AAPL.US",
                             side=pb.BUY, quantity=10, price=103.0, currency="USD", commission=4.26,
                             executed_at=executed, bucket="core")],
        cash_movements=[pb.BrokerCashMovement(ledger_id=1, broker_id="PAPER-T1", kind="conversion_out",
                                              amount=-(1034.26 / 1.10), currency="EUR", at=executed,
                                              reference="fx:c1"),
                        pb.BrokerCashMovement(ledger_id=2, broker_id="PAPER-T2", kind="conversion_in",
                                              amount=1034.26, currency="USD", at=executed, reference="fx:c1")],
        ledger_cursor=pb.LedgerCursor(trade_id=1, cash_movement_id=2)), metadata=at(DAYS[3]))
    return stub.TakeSnapshot(pb.TakeSnapshotRequest(), metadata=at(DAYS[3]))


BAD = [
    ("RecordDeposit", pb.RecordDepositRequest(amount=0, reference="x"), "amount"),
    ("RecordDeposit", pb.RecordDepositRequest(amount=float("nan"), reference="x"), "amount"),
    ("RecordDeposit", pb.RecordDepositRequest(amount=10, currency="usd", reference="x"), "currency"),
    ("RecordDeposit", pb.RecordDepositRequest(amount=10, reference=" "), "reference"),
    ("ListCashFlows", pb.ListCashFlowsRequest(kinds=["deposit", "gift"]), "kinds[1]"),
    ("ListCashFlows", pb.ListCashFlowsRequest(currency="eur"), "currency"),
    ("ListCashFlows", pb.ListCashFlowsRequest(start="2024-13-01"), "start"),
    ("ListCashFlows", pb.ListCashFlowsRequest(start="2024-02-01", end="2024-01-01"), "start"),
    ("ListCashFlows", pb.ListCashFlowsRequest(limit=-1), "limit"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(positions=[
        pb.BrokerPosition(symbol="A", quantity=1, currency="USD"), pb.BrokerPosition(symbol="A", quantity=1,
                                                                                    currency="USD")]),
     "positions[1].symbol"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(positions=[pb.BrokerPosition(symbol="A", quantity=-1,
                                                                                  currency="USD")]),
     "positions[0].quantity"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(cash=[pb.BrokerCash(currency="EUR", amount=float("inf"))]),
     "cash[0].amount"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(cash=[pb.BrokerCash(currency="EUR", amount=1e300)]),
     "cash[0].amount"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(fills=[pb.BrokerFill(
        broker_trade_id="T", symbol="A", quantity=1, price=1, currency="USD",
        executed_at=to_timestamp(datetime(2024, 1, 5, tzinfo=UTC)))]), "fills[0].side"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(fills=[pb.BrokerFill(
        broker_trade_id="T", symbol="A", side=pb.BUY, quantity=0, price=1, currency="USD",
        executed_at=to_timestamp(datetime(2024, 1, 5, tzinfo=UTC)))]), "fills[0].quantity"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(fills=[pb.BrokerFill(
        broker_trade_id="T", symbol="A", side=pb.BUY, quantity=1, price=0, currency="USD",
        executed_at=to_timestamp(datetime(2024, 1, 5, tzinfo=UTC)))]), "fills[0].price"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(fills=[pb.BrokerFill(
        broker_trade_id="T", symbol="A", side=pb.BUY, quantity=1, price=1, currency="USD")]),
     "fills[0].executed_at"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(fills=[pb.BrokerFill(
        symbol="A", side=pb.BUY, quantity=1, price=1, currency="USD",
        executed_at=to_timestamp(datetime(2024, 1, 5, tzinfo=UTC)))]), "fills[0].broker_trade_id"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(cash_movements=[pb.BrokerCashMovement(
        broker_id="M", kind="deposit", amount=float("nan"), currency="EUR",
        at=to_timestamp(datetime(2024, 1, 5, tzinfo=UTC)))]), "cash_movements[0].amount"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(cash_movements=[pb.BrokerCashMovement(
        kind="deposit", amount=1, currency="EUR", at=to_timestamp(datetime(2024, 1, 5, tzinfo=UTC)))]),
     "cash_movements[0].broker_id"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(ledger_cursor=pb.LedgerCursor(trade_id=-1)), "ledger_cursor"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(after=pb.LedgerCursor(cash_movement_id=-3)), "after"),
    ("ApplyBrokerState", pb.ApplyBrokerStateRequest(synced_at={"seconds": 10**12}), "synced_at"),
    ("ListFills", pb.ListFillsRequest(end="yesterday"), "end"),
    ("ListSnapshots", pb.ListSnapshotsRequest(before="2024-1-1"), "before"),
    ("ListSnapshots", pb.ListSnapshotsRequest(limit=-5), "limit"),
    ("GetDailyPnl", pb.GetDailyPnlRequest(as_of="soon"), "as_of"),
    ("GetDailyPnl", pb.GetDailyPnlRequest(as_of="2030-01-01"), "as_of"),
    ("GetPerformance", pb.GetPerformanceRequest(start="2024-03-01", end="2024-02-01"), "start"),
    ("ListDividends", pb.ListDividendsRequest(status="spent"), "status"),
    ("GetPendingDividendBonuses", pb.GetPendingDividendBonusesRequest(symbols=[""]), "symbols[0]"),
    ("GetBucket", pb.GetBucketRequest(), "id"),
    ("CreateBucket", pb.CreateBucketRequest(id="Not Valid", name="x"), "id"),
    ("CreateBucket", pb.CreateBucketRequest(id="x", name=""), "name"),
    ("CreateBucket", pb.CreateBucketRequest(id="x", name="X", min_share=2), "min_share"),
    ("CreateBucket", pb.CreateBucketRequest(id="x", name="X", status=pb.ACTIVE), "status"),
    ("CreateBucket", pb.CreateBucketRequest(id="x", name="X", dividend_handling="spend"), "dividend_handling"),
    ("UpdateBucket", pb.UpdateBucketRequest(id="core", target_share=1.5), "target_share"),
    ("UpdateBucket", pb.UpdateBucketRequest(id="core", dividend_handling="spend"), "dividend_handling"),
    ("TransitionBucket", pb.TransitionBucketRequest(id="core"), "transition"),
    ("TransferBetweenBuckets", pb.TransferBetweenBucketsRequest(from_bucket="core", to_bucket="core", amount=1,
                                                                reference="t"), "to_bucket"),
    ("TransferBetweenBuckets", pb.TransferBetweenBucketsRequest(from_bucket="core", to_bucket="x", amount=-1,
                                                                reference="t"), "amount"),
    ("TransferBetweenBuckets", pb.TransferBetweenBucketsRequest(from_bucket="core", to_bucket="x", amount=1),
     "reference"),
    ("ListBucketTransactions", pb.ListBucketTransactionsRequest(limit=-1), "limit"),
    ("UpdateBucketSettings", pb.UpdateBucketSettingsRequest(satellite_budget=0.5), "satellite_budget"),
    ("UpdateBucketSettings", pb.UpdateBucketSettingsRequest(dampening=float("nan")), "dampening"),
    ("UpdateBucketSettings", pb.UpdateBucketSettingsRequest(satellite_min=0.2, satellite_max=0.1), "satellite_min"),
    ("SetAllocationTargets", pb.SetAllocationTargetsRequest(country_targets=[pb.GroupTarget(group="US", share=1.5)]),
     "country_targets[0].share"),
    ("SetAllocationTargets", pb.SetAllocationTargetsRequest(country_targets=[pb.GroupTarget(group="MARS", share=0.1)]),
     "country_targets[0].group"),
    ("SetAllocationTargets", pb.SetAllocationTargetsRequest(country_targets=[
        pb.GroupTarget(group="US", share=0.7), pb.GroupTarget(group="EU", share=0.4)]), "country_targets"),
    ("SetAllocationTargets", pb.SetAllocationTargetsRequest(industry_targets=[
        pb.GroupTarget(group="Technology", share=0.2), pb.GroupTarget(group="Technology", share=0.1)]),
     "industry_targets[1].group"),
    ("SetAllocationGroups", pb.SetAllocationGroupsRequest(groups=[pb.AllocationGroup(name="X")]), "kind"),
    ("SetAllocationGroups", pb.SetAllocationGroupsRequest(kind=pb.COUNTRY, groups=[
        pb.AllocationGroup(name="A", members=["Germany"]), pb.AllocationGroup(name="B", members=["Germany"])]),
     "groups[1].members[0]"),
    ("SetAllocationGroups", pb.SetAllocationGroupsRequest(kind=pb.INDUSTRY, groups=[pb.AllocationGroup(name=" ")]),
     "groups[0].name"),
    ("SetAllocationGroups", pb.SetAllocationGroupsRequest(kind=pb.INDUSTRY, groups=[
        pb.AllocationGroup(name="Tech", members=["Software"], target=0.2)]), "groups[0].target"),
]


@pytest.mark.parametrize(("method", "request_", "field"), BAD, ids=[f"{m}-{f}" for m, _, f in BAD])
def test_bad_input_is_invalid_argument_naming_the_field_and_changes_nothing(service, method, request_, field):
    stub, db, _ = service
    seeded(stub)
    before = digest(db)
    with pytest.raises(grpc.RpcError) as refused:
        getattr(stub, method)(request_, metadata=at(DAYS[4]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert refused.value.details().startswith(f"{field}:"), refused.value.details()
    assert digest(db) == before


@pytest.mark.parametrize(("method", "request_", "code", "start"), [
    ("GetBucket", pb.GetBucketRequest(id="nope"), grpc.StatusCode.NOT_FOUND, "no bucket"),
    ("GetPerformance", pb.GetPerformanceRequest(bucket="nope"), grpc.StatusCode.NOT_FOUND, "no bucket"),
    ("ListBucketTransactions", pb.ListBucketTransactionsRequest(bucket="nope"), grpc.StatusCode.NOT_FOUND,
     "no bucket"),
    ("TransitionBucket", pb.TransitionBucketRequest(id="core", transition=pb.RETIRE),
     grpc.StatusCode.FAILED_PRECONDITION, "core_is_permanent:"),
    ("TransitionBucket", pb.TransitionBucketRequest(id="core", transition=pb.RESUME),
     grpc.StatusCode.FAILED_PRECONDITION, "resume_only_from_paused:"),
    ("TransferBetweenBuckets", pb.TransferBetweenBucketsRequest(from_bucket="core", to_bucket="nope", amount=1,
                                                                reference="t"), grpc.StatusCode.NOT_FOUND, "no bucket"),
    ("RecordDeposit", pb.RecordDepositRequest(amount=10, currency="CHF", reference="chf"),
     grpc.StatusCode.FAILED_PRECONDITION, "fx_rate_missing:"),
    ("RecordDeposit", pb.RecordDepositRequest(amount=10, reference="dep-1"), grpc.StatusCode.ALREADY_EXISTS,
     "reference 'dep-1'"),
    ("SetAllocationGroups", pb.SetAllocationGroupsRequest(kind=pb.COUNTRY, groups=[
        pb.AllocationGroup(name="NORTH_AMERICA", members=["United States"])]), grpc.StatusCode.FAILED_PRECONDITION,
     "target_group_in_use:"),
])
def test_refusals_have_their_precise_status_and_change_nothing(service, method, request_, code, start):
    stub, db, _ = service
    seeded(stub)
    stub.SetAllocationTargets(pb.SetAllocationTargetsRequest(country_targets=[pb.GroupTarget(group="EU", share=0.3)]))
    before = digest(db)
    with pytest.raises(grpc.RpcError) as refused:
        getattr(stub, method)(request_, metadata=at(DAYS[4]))
    assert refused.value.code() == code and refused.value.details().startswith(start), refused.value.details()
    assert digest(db) == before


def test_positions_carry_their_history_and_the_snapshot_its_valuation(service):
    stub, _, _ = service
    snapshot = seeded(stub)
    position = snapshot.portfolio.positions[0]
    assert (position.symbol, position.quantity, position.book_quantity, position.bucket) == ("AAPL.US", 10, 10,
                                                                                             "core")
    assert position.average_cost == pytest.approx(103.426)  # (10 * 103 + 4.26) / 10: the fee is in the cost
    assert position.first_bought_at.ToDatetime(tzinfo=UTC) == datetime(2024, 1, 5, 20, tzinfo=UTC)
    assert not position.HasField("last_sold_at")
    assert position.price == 103.0 and position.unrealized_pnl == pytest.approx(-4.26)
    assert (snapshot.date, snapshot.position_count, snapshot.net_deposits_base) == ("2024-01-05", 1, 5000.0)
    assert snapshot.country_shares == {"United States": 1.0}
    assert snapshot.portfolio.total_value_base == pytest.approx(snapshot.total_value_base)
    assert not snapshot.portfolio.cash_differences and not snapshot.portfolio.position_differences
    flows = stub.ListCashFlows(pb.ListCashFlowsRequest(kinds=["trade_buy", "trading_fee"]))
    assert sorted((f.kind, round(f.amount, 2)) for f in flows.cash_flows) == [("trade_buy", -1030.0),
                                                                             ("trading_fee", -4.26)]
    totals = {(t.kind, t.currency): t.amount for t in stub.ListCashFlows(pb.ListCashFlowsRequest()).totals}
    assert totals[("deposit", "EUR")] == 5000.0 and totals[("fx_conversion", "USD")] == pytest.approx(1034.26)
    assert stub.GetLedgerCursor(pb.GetLedgerCursorRequest()) == pb.LedgerCursor(trade_id=1, cash_movement_id=2)


def test_a_kept_cursor_handed_in_as_after_applies_only_while_the_books_are_still_at_it(service):
    """`after` (portfolio.proto): the books' cursor the caller synced from, kept from the last
    reply instead of read with GetLedgerCursor; checked before anything is applied."""
    stub, db, _ = service
    seeded(stub)
    cash = [pb.BrokerCash(currency="EUR", amount=5000 - 1034.26 / 1.10 + 100),
            pb.BrokerCash(currency="USD", amount=0.0)]
    deposit = pb.BrokerCashMovement(ledger_id=3, broker_id="PAPER-D3", kind="deposit", amount=100, currency="EUR",
                                    at=to_timestamp(datetime(2024, 1, 8, 20, tzinfo=UTC)))
    position = pb.BrokerPosition(symbol="AAPL.US", quantity=10, average_cost=103.0, currency="USD")
    before = digest(db)
    for stale in (pb.LedgerCursor(trade_id=1, cash_movement_id=1), pb.LedgerCursor(trade_id=1, cash_movement_id=3),
                  pb.LedgerCursor()):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ApplyBrokerState(pb.ApplyBrokerStateRequest(
                positions=[position], cash=cash, cash_movements=[deposit], after=stale,
                ledger_cursor=pb.LedgerCursor(trade_id=1, cash_movement_id=3)), metadata=at(DAYS[4]))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.value.details().startswith("ledger_cursor_moved: "), refused.value.details()
        assert digest(db) == before  # nothing applied
    reply = stub.ApplyBrokerState(pb.ApplyBrokerStateRequest(
        positions=[position], cash=cash, cash_movements=[deposit],
        after=pb.LedgerCursor(trade_id=1, cash_movement_id=2),
        ledger_cursor=pb.LedgerCursor(trade_id=1, cash_movement_id=3)), metadata=at(DAYS[4]))
    assert reply.cash_flows_applied == 1
    assert reply.ledger_cursor == pb.LedgerCursor(trade_id=1, cash_movement_id=3)
    assert stub.GetLedgerCursor(pb.GetLedgerCursorRequest()) == reply.ledger_cursor  # what the reply hands forward
    unchecked = stub.ApplyBrokerState(pb.ApplyBrokerStateRequest(positions=[position], cash=cash),
                                      metadata=at(DAYS[4]))  # without `after`, as before: not checked
    assert unchecked.ledger_cursor == reply.ledger_cursor and unchecked.cash_flows_applied == 0


def test_the_daily_pnl_is_armed_by_a_snapshot_before_the_day_and_leaves_deposits_out(service):
    stub, _, _ = service
    assert not stub.GetDailyPnl(pb.GetDailyPnlRequest(), metadata=at(DAYS[3])).armed
    seeded(stub)
    assert not stub.GetDailyPnl(pb.GetDailyPnlRequest(), metadata=at(DAYS[3])).armed  # today's is not "before"
    stub.RecordDeposit(pb.RecordDepositRequest(amount=1000, reference="dep-2"), metadata=at(DAYS[4]))
    reply = stub.GetDailyPnl(pb.GetDailyPnlRequest(), metadata=at(DAYS[4]))
    # recorded, but not in the broker's cash yet: taken out of the value it is not in (the breaker
    # errs toward caution until the broker reports it)
    assert reply.armed and reply.baseline_date == "2024-01-05" and reply.external_flows_base == 1000.0
    cash = {c.currency: c.amount for c in stub.GetPortfolio(pb.GetPortfolioRequest(), metadata=at(DAYS[4])).cash}
    stub.ApplyBrokerState(pb.ApplyBrokerStateRequest(
        positions=[pb.BrokerPosition(symbol="AAPL.US", quantity=10, average_cost=103.0, currency="USD")],
        cash=[pb.BrokerCash(currency=c, amount=a + (1000 if c == "EUR" else 0)) for c, a in cash.items()],
        ledger_cursor=pb.LedgerCursor(trade_id=1, cash_movement_id=2)), metadata=at(DAYS[4]))
    reply = stub.GetDailyPnl(pb.GetDailyPnlRequest(), metadata=at(DAYS[4]))
    snapshot_total = stub.ListSnapshots(pb.ListSnapshotsRequest()).snapshots[0].total_value_base
    # AAPL.US moved from 103 to 104 (10 shares, USD 1.10): the deposit adds nothing to the P&L
    assert reply.daily_pnl == pytest.approx(10 * 1.0 / 1.10 / snapshot_total)


def test_allocation_targets_defaults_groups_and_hash(service):
    stub, _, _ = service
    state = stub.GetAllocationTargets(pb.GetAllocationTargetsRequest())
    assert state.allocations_hash == "00000000" and state.default_country_groups and state.default_industry_groups
    assert {(s.symbol, s.country_group, s.industry_group) for s in state.securities} == {
        ("AAPL.US", "US", "Technology"), ("SAP.DE", "EU", "Technology"), ("KO.US", "US", "Consumer Defensive")}
    assert {g.name for g in state.industry_groups} == {"Technology", "Consumer Defensive", "OTHER"}
    one = stub.SetAllocationTargets(pb.SetAllocationTargetsRequest(
        country_targets=[pb.GroupTarget(group="US", share=0.6), pb.GroupTarget(group="EU", share=0.4)],
        industry_targets=[pb.GroupTarget(group="Technology", share=0.5)]))
    reordered = stub.SetAllocationTargets(pb.SetAllocationTargetsRequest(
        industry_targets=[pb.GroupTarget(group="Technology", share=0.5)],
        country_targets=[pb.GroupTarget(group="EU", share=0.4), pb.GroupTarget(group="US", share=0.6)]))
    assert one.allocations_hash == reordered.allocations_hash != "00000000"
    changed = stub.SetAllocationTargets(pb.SetAllocationTargetsRequest(
        country_targets=[pb.GroupTarget(group="US", share=0.55), pb.GroupTarget(group="EU", share=0.4)],
        industry_targets=[pb.GroupTarget(group="Technology", share=0.5)]))
    assert changed.allocations_hash != one.allocations_hash
    custom = stub.SetAllocationGroups(pb.SetAllocationGroupsRequest(kind=pb.INDUSTRY, groups=[
        pb.AllocationGroup(name="Technology", members=["Software", "Consumer Electronics"]),
        pb.AllocationGroup(name="Staples", members=["Beverages"])]))
    assert not custom.default_industry_groups
    assert {(s.symbol, s.industry_group) for s in custom.securities} == {
        ("AAPL.US", "Technology"), ("SAP.DE", "Technology"), ("KO.US", "Staples")}
    assert [g.target for g in custom.industry_groups if g.name == "Technology"] == [0.5]


def test_bucket_rpcs_and_a_reconciliation_alert_on_the_display(service):
    stub, _, display = service
    seeded(stub)
    stub.UpdateBucketSettings(pb.UpdateBucketSettingsRequest(satellite_budget=0.1))
    created = stub.CreateBucket(pb.CreateBucketRequest(id="momentum", name="Momentum"))
    assert created.status == pb.RESEARCH and created.min_share == 0.02 and not created.trading_allowed
    assert stub.TransitionBucket(pb.TransitionBucketRequest(id="momentum", transition=pb.ACTIVATE)).status == pb.ACTIVE
    stub.UpdateBucket(pb.UpdateBucketRequest(id="momentum", target_share=0.1))
    listed = stub.ListBuckets(pb.ListBucketsRequest())
    assert [b.id for b in listed.buckets] == ["core", "momentum"] and listed.settings.satellite_budget == 0.1
    moved = stub.TransferBetweenBuckets(pb.TransferBetweenBucketsRequest(
        from_bucket="core", to_bucket="momentum", amount=300, reference="seed-momentum"), metadata=at(DAYS[4]))
    assert moved.applied and moved.to_bucket.balances[0].amount == 300
    reply = stub.ReconcileBuckets(pb.ReconcileBucketsRequest(), metadata=at(DAYS[4]))
    assert {c.currency: c.action for c in reply.currencies} == {"EUR": "ok", "USD": "ok"} and not reply.alerted
    stub.ApplyBrokerState(pb.ApplyBrokerStateRequest(  # 200 EUR vanished at the broker
        positions=[pb.BrokerPosition(symbol="AAPL.US", quantity=10, average_cost=103.0, currency="USD")],
        cash=[pb.BrokerCash(currency="EUR", amount=5000 - 1034.26 / 1.10 - 200)]), metadata=at(DAYS[4]))
    reply = stub.ReconcileBuckets(pb.ReconcileBucketsRequest(), metadata=at(DAYS[4]))
    assert reply.alerted and {c.currency: c.action for c in reply.currencies}["EUR"] == "alert"
    assert [(p.pool, p.source, p.text) for p in display.posted] == [
        (display_pb2.ERROR, "bucket_reconciliation", "BUCKETS OFF: EUR +200.00")]
    assert stub.RunBucketMaintenance(pb.RunBucketMaintenanceRequest(), metadata=at(DAYS[4])).buckets
    meta = stub.RunMetaAllocation(pb.RunMetaAllocationRequest(dry_run=True), metadata=at(DAYS[4]))
    assert [c.bucket for c in meta.changes] == ["momentum"] and not meta.applied
    transactions = stub.ListBucketTransactions(pb.ListBucketTransactionsRequest(bucket="momentum")).transactions
    assert [(t.kind, t.amount) for t in transactions] == [("transfer_in", 300.0)]


def test_performance_over_grpc_after_a_few_days(service):
    stub, _, _ = service
    seeded(stub)
    for day in DAYS[4:8]:
        stub.TakeSnapshot(pb.TakeSnapshotRequest(), metadata=at(day))
    performance = stub.GetPerformance(pb.GetPerformanceRequest(), metadata=at(DAYS[8]))
    assert (performance.start, performance.end, performance.days) == ("2024-01-05", "2024-01-11", 4)
    assert performance.HasField("time_weighted_return")
    assert performance.fees_paid_base == 0.0  # the only fee was paid before the first snapshot: in its value
    assert [a.group for a in performance.country_attribution] == ["United States"]
    assert not performance.trades.HasField("win_rate")  # no SELL: not computed, not 0
    assert date.fromisoformat(performance.end) - date.fromisoformat(performance.start) == timedelta(days=6)
