"""`python -m services.data` starts the market-data service."""

import sys

from trader.data.v1 import data_pb2_grpc

from services.common.config import load_common
from services.common.server import ServiceParts, run_service
from services.data import store
from services.data.adapters.sample_history import load_sample_history
from services.data.server import MarketDataServicer, sync_sample


def build(config):
    db = store.open_database(config.db_url)
    sample = load_sample_history()
    sync_sample(db, sample)  # first start loads the bundled history; later starts add nothing
    servicer = MarketDataServicer(config, db, sample)
    return ServiceParts(lambda server: data_pb2_grpc.add_MarketDataServicer_to_server(servicer, server), db.close)


if __name__ == "__main__":
    sys.exit(run_service("data", lambda: load_common("data"), build))
