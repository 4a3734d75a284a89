"""`python -m services.portfolio` starts the portfolio service."""

import sys

from trader.portfolio.v1 import portfolio_pb2_grpc

from services.common.client import Clients
from services.common.maintenance import Maintenance, load_settings
from services.common.server import ServiceParts, run_service
from services.portfolio import store
from services.portfolio.config import PortfolioConfig, load
from services.portfolio.server import PortfolioServicer


def build(config: PortfolioConfig):
    settings = load_settings("portfolio", config.common.var_dir, store.RETENTION_RULES)
    db = store.open_database(config.common.db_url)
    clients = Clients(config.common)
    servicer = PortfolioServicer(config.common, db, clients, config.snapshot_retention_days,
                                 Maintenance(store.SCHEMA, db, settings))

    def close():
        clients.close()
        db.close()

    return ServiceParts(lambda server: portfolio_pb2_grpc.add_PortfolioServicer_to_server(servicer, server), close,
                        database=db)


if __name__ == "__main__":
    sys.exit(run_service("portfolio", load, build))
