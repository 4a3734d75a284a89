"""`python -m services.planner` starts the planner service."""

import sys

from trader.planner.v1 import planner_pb2_grpc

from services.common.client import Clients
from services.common.clock import wall_now
from services.common.config import SIMULATED_MODES, load_common
from services.common.maintenance import Maintenance, load_settings
from services.common.server import ServiceParts, run_service
from services.planner import store
from services.planner.adapters.peers import Peers
from services.planner.config_engine import ConfigEngine
from services.planner.engine import PlannerEngine
from services.planner.scoring_engine import ScoringEngine
from services.planner.server import PlannerServicer


def build(config):
    settings = load_settings("planner", config.var_dir, store.RETENTION_RULES)
    db = store.open_database(config.db_url)
    clients = Clients(config)
    peers = Peers(clients)
    scoring = ScoringEngine(db, peers)
    configs = ConfigEngine(db, peers.bucket_kind)
    configs.seed(wall_now())
    engine = PlannerEngine(db, peers, scoring, configs, complete_batches=config.mode in SIMULATED_MODES)
    servicer = PlannerServicer(engine, scoring, configs,
                               Maintenance(store.SCHEMA, db, settings))

    def close():
        clients.close()
        db.close()

    return ServiceParts(lambda server: planner_pb2_grpc.add_PlannerServicer_to_server(servicer, server), close,
                        database=db)


if __name__ == "__main__":
    sys.exit(run_service("planner", lambda: load_common("planner"), build))
