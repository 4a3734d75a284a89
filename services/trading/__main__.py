"""`python -m services.trading` starts the trading service: the paper broker, or Tradernet in
live mode (credentials and TRADER_LIVE_CONFIRM required, or it refuses to start).

At start it reconciles with the broker (imports fills, resolves every order left open, e.g. by
a crash between storing it and the broker's answer, by lookup, compares positions); while the
books disagree, health is NOT_SERVING and every order is refused. TRADER_PAPER_FAULTS (tests
only) injects broker faults, one per order or conversion.
"""

import logging
import sys

from trader.trading.v1 import trading_pb2_grpc

from services.common import clock
from services.common.client import Clients
from services.common.config import SIMULATED_MODES
from services.common.errors import Unavailable
from services.common.logs import event
from services.common.maintenance import Maintenance, load_settings
from services.common.server import ServiceParts, run_service
from services.trading import orders, store
from services.trading.adapters.paper_broker import PaperBroker
from services.trading.adapters.services import ServiceReads
from services.trading.adapters.tradernet import TradernetBroker, TradernetClient
from services.trading.config import TradingConfig, load
from services.trading.engine import OrderEngine
from services.trading.server import TradingServicer

log = logging.getLogger("trader.trading")


def build(config: TradingConfig) -> ServiceParts:
    common = config.common
    settings = load_settings("trading", common.var_dir, store.RETENTION_RULES)
    db = store.open_database(common.db_url)
    clients = Clients(common)
    reads = ServiceReads(clients)
    if config.tradernet is not None:
        broker = TradernetBroker(TradernetClient(config.tradernet.url, config.tradernet.public_key,
                                                 config.tradernet.secret))
    else:
        # The simulated broker charges the real broker's fee, converted at the configured rates.
        broker = PaperBroker(db, lambda value, currency: orders.commission(value, currency, common.base_currency,
                                                                           common.fx_rates),
                             slippage=config.paper_slippage, faults=config.paper_faults, fills=config.paper_fills,
                             closes=reads.closes)
    engine = OrderEngine(common.mode, db, broker, reads)
    servicer = TradingServicer(common, db, engine, Maintenance(store.SCHEMA, db, settings))

    def reconcile_on_start(running, _request_stop):
        engine._set_serving = running.set_serving
        running.set_serving(False)  # until the books are known to agree with the broker
        try:
            # Also resolves every order a crash left open (NEW, ...). In simulated time (replay,
            # backtest) the wall clock is not "now": orders wait for the next cycle's sync to fill.
            engine.sync(clock.wall_now(), settle=common.mode not in SIMULATED_MODES)
        except Unavailable:
            pass  # stays NOT_SERVING and refuses orders; the next SyncBroker tries again
        except Exception:  # noqa: BLE001 - a bug must not leave it serving: fail closed, say why
            event(log, "start-up reconciliation failed", logging.ERROR, exc_info=True)

    def close():
        clients.close()
        db.close()

    return ServiceParts(lambda server: trading_pb2_grpc.add_TradingServicer_to_server(servicer, server), close,
                        reconcile_on_start, database=db)


if __name__ == "__main__":
    sys.exit(run_service("trading", load, build))
