"""`python -m services.display` starts the display service.

TRADER_DISPLAY_SERIAL selects the device: unset = none (state is kept, nothing is sent);
`emulator` = the built-in matrix emulator (frames in <TRADER_VAR_DIR>/display/); anything else
is a serial port or pyserial URL, e.g. /dev/ttyACM0 or rfc2217://host:port.
"""

import sys

from trader.display.v1 import display_pb2_grpc

from services.common.maintenance import Maintenance, load_settings
from services.common.server import ServiceParts, run_service
from services.display import store
from services.display.adapters.emulated_device import EmulatedDevice
from services.display.adapters.serial_link import SerialLink
from services.display.config import DisplayConfig, load
from services.display.controller import DisplayController
from services.display.server import DisplayServicer


def build(config: DisplayConfig) -> ServiceParts:
    settings = load_settings("display", config.common.var_dir, store.RETENTION_RULES)
    db = store.open_database(config.common.db_url)
    emulator = None
    link = None
    if config.serial == "emulator":
        emulator = EmulatedDevice(config.common.var_dir / "display")
        emulator.start()
        link = SerialLink(emulator.path)
    elif config.serial:
        link = SerialLink(config.serial)
    if link is not None:
        link.start()
    controller = DisplayController(db, link)
    controller.start()
    servicer = DisplayServicer(db, controller, Maintenance(store.SCHEMA, db, settings))

    def close():
        controller.stop()
        if link is not None:
            link.stop()
        if emulator is not None:
            emulator.stop()
        db.close()

    return ServiceParts(lambda server: display_pb2_grpc.add_DisplayServicer_to_server(servicer, server), close,
                        database=db)


if __name__ == "__main__":
    sys.exit(run_service("display", load, build))
