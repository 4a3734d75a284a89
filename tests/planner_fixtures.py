"""The planner over gRPC with its real peers in this process: the data service (scripted bars),
the portfolio service, and a scripted trading service (its settings and trades), each on a
free port with the real server plumbing."""

from __future__ import annotations

from datetime import UTC, date, datetime

import grpc
from trader.data.v1 import data_pb2_grpc
from trader.planner.v1 import planner_pb2, planner_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common.client import Clients
from services.common.config import load_common
from services.common.server import start_server
from services.common.timestamps import to_timestamp
from services.data.history import Bar
from services.data.universe import Security
from services.planner import store as planner_store
from services.planner.adapters.peers import Peers
from services.planner.config_engine import ConfigEngine, ConfigUpdate
from services.planner.engine import PlannerEngine
from services.planner.scoring_engine import ScoringEngine
from services.planner.server import PlannerServicer
from services.portfolio import store as portfolio_store
from services.portfolio.server import PortfolioServicer
from services.trading.risk import RiskSettings
from tests.data_fixtures import FakeProvider, make_servicer
from tests.helpers import free_port

PEERS = ("data", "portfolio", "trading", "planner")


class ScriptedTrading(trading_pb2_grpc.TradingServicer):
    """Trading's settings (its defaults unless changed) and its BUY fills."""

    def __init__(self):
        self.settings = RiskSettings()
        self.buys: list[tuple[str, datetime]] = []
        self.client_order_ids: dict[str, str] = {}  # symbol -> the client order id of its BUY

    def GetSettings(self, request, context):
        fields = trading_pb2.Settings.DESCRIPTOR.fields_by_name
        return trading_pb2.Settings(**{k: v for k, v in vars(self.settings).items() if k in fields})

    def ListTrades(self, request, context):
        return trading_pb2.ListTradesResponse(trades=[
            trading_pb2.Trade(symbol=symbol, side=trading_pb2.BUY, quantity=1, price=1.0, currency="USD",
                              executed_at=to_timestamp(at), client_order_id=self.client_order_ids.get(symbol, ""))
            for symbol, at in self.buys])


class PlannerHarness:
    def __init__(self, tmp_path, securities: list[Security], bars: dict[str, list[Bar]], fx: str = "USD=1.10",
                 cash: float = 100_000.0, config_toml: str | None = None, complete_batches: bool = False):
        env = {"TRADER_AUTH_DISABLED": "1", "TRADER_VAR_DIR": str(tmp_path), "TRADER_FX_RATES": fx,
               **{f"TRADER_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in PEERS}}
        configs = {name: load_common(name, env) for name in PEERS}
        self.data, data_db, _ = make_servicer(tmp_path, FakeProvider(bars), securities, **env)
        self.trading = ScriptedTrading()
        self._clients = [Clients(configs["portfolio"]), Clients(configs["planner"])]
        portfolio_db = portfolio_store.open_database(f"sqlite:///{tmp_path / 'portfolio.db'}")
        self.planner_db = planner_store.open_database(f"sqlite:///{tmp_path / 'planner.db'}")
        portfolio = PortfolioServicer(configs["portfolio"], portfolio_db, self._clients[0])
        peers = Peers(self._clients[1])
        scoring = ScoringEngine(self.planner_db, peers)
        self.configs = ConfigEngine(self.planner_db, peers.bucket_kind)
        self.configs.seed(datetime(2000, 1, 1, tzinfo=UTC))
        if config_toml is not None:
            self.configs.update(ConfigUpdate(bucket_id="core", toml=config_toml), datetime(2000, 1, 1, tzinfo=UTC))
        self.engine = PlannerEngine(self.planner_db, peers, scoring, self.configs, complete_batches=complete_batches)
        planner = PlannerServicer(self.engine, scoring, self.configs)
        self._servers = [
            start_server(configs["data"], lambda s: data_pb2_grpc.add_MarketDataServicer_to_server(self.data, s)),
            start_server(configs["portfolio"], lambda s: portfolio_pb2_grpc.add_PortfolioServicer_to_server(
                portfolio, s)),
            start_server(configs["trading"], lambda s: trading_pb2_grpc.add_TradingServicer_to_server(
                self.trading, s)),
            start_server(configs["planner"], lambda s: planner_pb2_grpc.add_PlannerServicer_to_server(planner, s)),
        ]
        self._channels = {name: grpc.insecure_channel(configs[name].listen_address) for name in PEERS}
        self.data_stub = data_pb2_grpc.MarketDataStub(self._channels["data"])
        self.portfolio_stub = portfolio_pb2_grpc.PortfolioStub(self._channels["portfolio"])
        self.planner_stub = planner_pb2_grpc.PlannerStub(self._channels["planner"])
        self._dbs = [data_db, portfolio_db, self.planner_db]
        self.portfolio_stub.ApplyBrokerState(portfolio_pb2.ApplyBrokerStateRequest(
            cash=[portfolio_pb2.BrokerCash(currency="EUR", amount=cash)]))

    def plan(self, day: date, **request) -> planner_pb2.GetRecommendationsResponse:
        return self.planner_stub.GetRecommendations(planner_pb2.GetRecommendationsRequest(**request),
                                                    metadata=[as_of(day)], timeout=60)

    def optimize(self, day: date, **request) -> planner_pb2.OptimizeResponse:
        return self.planner_stub.Optimize(planner_pb2.OptimizeRequest(**request), metadata=[as_of(day)], timeout=60)

    def dismiss(self, day: date, uuid: str) -> planner_pb2.Recommendation:
        return self.planner_stub.DismissRecommendation(planner_pb2.DismissRecommendationRequest(uuid=uuid),
                                                       metadata=[as_of(day)], timeout=60)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        for clients in self._clients:
            clients.close()
        for server in self._servers:
            server.stop(0)
        for db in self._dbs:
            db.close()


def as_of(day: date) -> tuple[str, str]:
    return ("x-trader-as-of", datetime(day.year, day.month, day.day, 22, tzinfo=UTC).isoformat())
