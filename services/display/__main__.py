"""`python -m services.display` starts the display service."""

import sys

from trader.display.v1 import display_pb2_grpc

from services.common.config import load_common
from services.common.server import ServiceParts, run_service
from services.display import store
from services.display.server import DisplayServicer


def build(config):
    db = store.open_database(config.db_url)
    servicer = DisplayServicer(db)
    return ServiceParts(lambda server: display_pb2_grpc.add_DisplayServicer_to_server(servicer, server), db.close)


if __name__ == "__main__":
    sys.exit(run_service("display", lambda: load_common("display"), build))
