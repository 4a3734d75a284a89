"""The securities' revision handed forward (data ListSecuritiesResponse.revision and
SyncPricesResponse.securities_revision -> portfolio TakeSnapshotRequest.universe_revision): the
revision moves with every change of a security and with a restart of the data service; a
snapshot handed the revision its last universe was read at values without a ListSecurities, any
other revision (or none) reads, so the hash follows a change; a malformed one is refused."""

from __future__ import annotations

from datetime import UTC, date, datetime

import grpc
import pytest
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2 as pb
from trader.portfolio.v1 import portfolio_pb2_grpc

from services.common import clock
from services.data.history import Bar
from services.data.server import MarketDataServicer
from tests.data_fixtures import FakeProvider, business_days, make_servicer, security
from tests.test_portfolio_service import portfolio_system

DAYS = business_days(date(2024, 1, 2), 10)
SECURITIES = [security("AAPL.US"), security("KO.US", sector="Consumer Defensive", industry="Beverages")]
BARS = {s.symbol: [Bar(d, 100.0 + i) for i, d in enumerate(DAYS)] for s in SECURITIES}
AS_OF = [("x-trader-as-of", datetime(2024, 1, 12, 22, tzinfo=UTC).isoformat())]


class CountingData:
    """The data servicer, counting its ListSecurities calls."""

    def __init__(self, servicer: MarketDataServicer):
        self.servicer = servicer
        self.listed = 0

    def ListSecurities(self, request, context):
        self.listed += 1
        return self.servicer.ListSecurities(request, context)

    def __getattr__(self, name):
        return getattr(self.servicer, name)


@pytest.fixture
def system(tmp_path):
    with portfolio_system(tmp_path, SECURITIES, BARS, CountingData) as (channel, data_channel, data, _, db):
        portfolio_stub = portfolio_pb2_grpc.PortfolioStub(channel)
        portfolio_stub.ApplyBrokerState(pb.ApplyBrokerStateRequest(
            positions=[pb.BrokerPosition(symbol="KO.US", quantity=5, average_cost=100.0, currency="USD")],
            cash=[pb.BrokerCash(currency="EUR", amount=1000.0)]), metadata=AS_OF)
        yield portfolio_stub, data_pb2_grpc.MarketDataStub(data_channel), data, db


def test_the_revision_moves_with_a_change_of_a_security_and_with_a_restart(tmp_path):
    servicer, db, _ = make_servicer(tmp_path, FakeProvider(BARS), SECURITIES)
    first = servicer.ListSecurities(data_pb2.ListSecuritiesRequest(), None).revision
    assert first and servicer.ListSecurities(data_pb2.ListSecuritiesRequest(), None).revision == first
    with clock.use_as_of(datetime(2024, 1, 12, 22, tzinfo=UTC)):
        assert servicer.SyncPrices(data_pb2.SyncPricesRequest(), None).securities_revision == first
    servicer.DeactivateSecurity(data_pb2.DeactivateSecurityRequest(symbol="KO.US"), None)
    after = servicer.ListSecurities(data_pb2.ListSecuritiesRequest(), None)
    assert after.revision != first and [s.symbol for s in after.securities] == ["AAPL.US"]
    restarted = MarketDataServicer(servicer._config, db, FakeProvider(BARS))
    assert restarted.ListSecurities(data_pb2.ListSecuritiesRequest(), None).revision not in (first, after.revision)
    db.close()


def test_a_snapshot_handed_the_revision_of_its_last_universe_asks_no_list(system):
    portfolio, data, counting, _ = system
    revision = data.ListSecurities(data_pb2.ListSecuritiesRequest()).revision
    counting.listed = 0
    read = portfolio.TakeSnapshot(pb.TakeSnapshotRequest(), metadata=AS_OF)
    assert counting.listed == 1
    handed = portfolio.TakeSnapshot(pb.TakeSnapshotRequest(universe_revision=revision), metadata=AS_OF)
    assert counting.listed == 1  # the universe read at that revision served
    assert handed.portfolio == read.portfolio  # hash included: the same valuation as when read
    portfolio.TakeSnapshot(pb.TakeSnapshotRequest(universe_revision="another:1"), metadata=AS_OF)
    assert counting.listed == 2  # a revision it did not read at: read


def test_after_a_change_the_new_revision_reads_again_and_the_hash_follows(system):
    portfolio, data, counting, _ = system
    before = portfolio.TakeSnapshot(pb.TakeSnapshotRequest(), metadata=AS_OF).portfolio.portfolio_hash
    data.DeactivateSecurity(data_pb2.DeactivateSecurityRequest(symbol="AAPL.US"))
    moved = data.ListSecurities(data_pb2.ListSecuritiesRequest()).revision
    counting.listed = 0
    after = portfolio.TakeSnapshot(pb.TakeSnapshotRequest(universe_revision=moved), metadata=AS_OF)
    assert counting.listed == 1 and after.portfolio.portfolio_hash != before
    again = portfolio.TakeSnapshot(pb.TakeSnapshotRequest(universe_revision=moved), metadata=AS_OF)
    assert counting.listed == 1 and again.portfolio.portfolio_hash == after.portfolio.portfolio_hash


@pytest.mark.parametrize("revision", ["x" * 65, "run:1\n", "ré:1"])
def test_a_malformed_revision_is_invalid_argument_and_changes_nothing(system, revision):
    portfolio, _, counting, db = system
    counting.listed = 0
    with pytest.raises(grpc.RpcError) as refused:
        portfolio.TakeSnapshot(pb.TakeSnapshotRequest(universe_revision=revision), metadata=AS_OF)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("universe_revision:"), refused.value.details()
    assert counting.listed == 0
    assert not portfolio.ListSnapshots(pb.ListSnapshotsRequest()).snapshots  # no snapshot taken
