"""`python -m gateway` starts the gateway (and, with TRADER_REPLAY_AUTOSTART=1, the replay driver)."""

import sys

from trader.gateway.v1 import gateway_pb2_grpc

from gateway import store
from gateway.config import GatewayConfig, load
from gateway.cycle import Services
from gateway.replay import ReplayDriver
from gateway.server import CycleRunner, GatewayServicer
from services.common.client import Clients
from services.common.maintenance import Maintenance, load_settings
from services.common.server import ServiceParts, run_service


def build(config: GatewayConfig) -> ServiceParts:
    common = config.common
    settings = load_settings("gateway", common.var_dir, store.RETENTION_RULES)
    db = store.open_database(common.db_url)
    clients = Clients(common)
    services = Services(clients)
    runner = CycleRunner(db, services)
    servicer = GatewayServicer(common, db, runner, Maintenance(store.SCHEMA, db, settings))
    drivers: list[ReplayDriver] = []

    def start_replay(_running, request_stop):
        if config.replay.autostart:
            # The gateway stops (as on SIGTERM) when the replay ends.
            driver = ReplayDriver(config.replay, common.base_currency, db, services, runner, request_stop,
                                  clients)
            drivers.append(driver)
            driver.start()

    def close():
        for driver in drivers:
            driver.stop_requested.set()
            driver.join(timeout=10)
        clients.close()
        db.close()

    return ServiceParts(lambda server: gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server),
                        close, start_replay)


if __name__ == "__main__":
    sys.exit(run_service("gateway", load, build))
