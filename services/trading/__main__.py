"""`python -m services.trading` starts the trading service (paper broker)."""

import sys

from trader.trading.v1 import trading_pb2_grpc

from services.common.client import Clients
from services.common.config import load_common
from services.common.server import ServiceParts, run_service
from services.trading import orders, store
from services.trading.adapters.paper_broker import PaperBroker
from services.trading.server import TradingServicer


def build(config):
    db = store.open_database(config.db_url)
    clients = Clients(config)
    # The simulated broker charges the real broker's fee, converted at the configured rates.
    broker = PaperBroker(db, lambda value, currency: orders.commission(
        value, currency, config.base_currency, config.fx_rates))
    servicer = TradingServicer(config, db, broker, clients)

    def close():
        clients.close()
        db.close()

    return ServiceParts(lambda server: trading_pb2_grpc.add_TradingServicer_to_server(servicer, server), close)


if __name__ == "__main__":
    sys.exit(run_service("trading", lambda: load_common("trading"), build))
