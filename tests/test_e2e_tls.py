"""End to end over mutual TLS: the six services as processes, each serving with the certificate
from deploy/make-certs.sh and calling its peers with it; a deposit and a cycle that trades, one
trace across all six, and what a client without the right certificate gets."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime

import grpc
import pytest
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common.client import raw_channel
from services.common.config import SERVICES, load_client_tls
from tests.helpers import TOKEN
from tests.suite import Suite
from tests.test_common_reflection import grpcurl_path
from tests.tls import make_pki

pytestmark = pytest.mark.e2e
AUTH = ("authorization", f"Bearer {TOKEN}")
AS_OF = ("x-trader-as-of", datetime(2018, 1, 2, 20, 30, tzinfo=UTC).isoformat())  # 30 minutes before the close
AFTER_THE_CLOSE = ("x-trader-as-of", datetime(2018, 1, 2, 22, tzinfo=UTC).isoformat())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def suite(pki, tmp_path_factory):
    suite = Suite(tmp_path_factory.mktemp("e2e-tls"), pki.server_env(mutual=True)).start()
    yield suite
    suite.terminate()


@pytest.fixture(scope="module")
def cycle(suite):
    metadata = [AUTH, AS_OF]
    trading_pb2_grpc.TradingStub(suite.channel("trading")).FundPaperAccount(
        trading_pb2.FundPaperAccountRequest(amount=10_000, reference="tls-1"), metadata=metadata)
    portfolio_pb2_grpc.PortfolioStub(suite.channel("portfolio")).RecordDeposit(
        portfolio_pb2.RecordDepositRequest(amount=10_000, reference="tls-1"), metadata=metadata)
    gateway = gateway_pb2_grpc.GatewayStub(suite.channel("gateway"))
    traded = gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(), metadata=metadata, timeout=120)
    # the paper broker fills market-on-close: a settling cycle after the close books the fill
    gateway.RunSyncCycle(gateway_pb2.RunSyncCycleRequest(settle_only=True), metadata=[AUTH, AFTER_THE_CLOSE],
                         timeout=120)
    return traded


def test_every_service_serves_over_mutual_tls(suite):
    for name in SERVICES:
        assert '"tls": "mutual"' in suite.log(name), name


def test_a_cycle_across_the_six_services_trades(cycle, suite):
    assert cycle.ok, [(s.name, s.detail) for s in cycle.steps if s.status != gateway_pb2.OK]
    assert cycle.last_trade
    trades = trading_pb2_grpc.TradingStub(suite.channel("trading")).ListTrades(
        trading_pb2.ListTradesRequest(), metadata=[AUTH]).trades
    assert len(trades) == 1 and trades[0].symbol in cycle.last_trade
    expected = {f"trader-{name}" for name in SERVICES}
    deadline = time.monotonic() + 20
    while suite.collector.services_in_trace(cycle.trace_id) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert suite.collector.services_in_trace(cycle.trace_id) == expected


def test_the_gateway_sees_every_service_over_tls(cycle, suite):
    status = gateway_pb2_grpc.GatewayStub(suite.channel("gateway")).GetSystemStatus(
        gateway_pb2.GetSystemStatusRequest(), metadata=[AUTH])
    assert {s.service: s.health for s in status.services} == {n: "SERVING" for n, _ in SERVICES.values()}


@pytest.mark.parametrize("client", ["plain text", "no client certificate", "another CA's certificate"])
def test_clients_without_the_right_certificate_are_refused(suite, pki, tmp_path, client):
    if client == "plain text":
        channel = grpc.insecure_channel(suite.addresses["gateway"])
    elif client == "no client certificate":
        channel = raw_channel(suite.addresses["gateway"], load_client_tls(pki.tool_env(client_certificate=False)))
    else:
        other = make_pki(tmp_path / "other")
        channel = raw_channel(suite.addresses["gateway"], load_client_tls(
            {**pki.tool_env(), "TRADER_TLS_CLIENT_CERT": other.path("client.crt"),
             "TRADER_TLS_CLIENT_KEY": other.path("client.key")}))
    with channel, pytest.raises(grpc.RpcError) as caught:
        gateway_pb2_grpc.GatewayStub(channel).GetSystemStatus(gateway_pb2.GetSystemStatusRequest(), metadata=[AUTH],
                                                               timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpcurl_with_the_readme_flags(cycle, suite, pki):
    flags = ["-cacert", pki.path("ca.crt"), "-cert", pki.path("client.crt"), "-key", pki.path("client.key")]
    done = subprocess.run([grpcurl_path(), *flags, "-H", f"{AUTH[0]}: {AUTH[1]}", suite.addresses["trading"],
                           "trader.trading.v1.Trading/ListTrades"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["trades"]) == 1
