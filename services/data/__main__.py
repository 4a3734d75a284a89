"""`python -m services.data` starts the market-data service.

With the bundled provider (the default) the sample history is loaded on the first start;
TRADER_DATA_PROVIDER=yfinance fetches live data on SyncPrices instead. Every start then
re-validates bars stored under older validation rules and loads the ECB reference rates of the
currencies the service prices that are not stored yet (both no-ops once done).
"""

import sys
from pathlib import Path

from trader.data.v1 import data_pb2_grpc

from services.common import templates
from services.common.maintenance import Maintenance, load_settings
from services.common.server import ServiceParts, run_service
from services.data import engine, store
from services.data.adapters.sample_history import load_sample_history
from services.data.adapters.yfinance_provider import YFinanceProvider
from services.data.config import DataConfig, load
from services.data.server import MarketDataServicer

SERVICE_DIR = Path(__file__).parent
COMMON_DIR = Path(templates.__file__).parent


def build(config: DataConfig) -> ServiceParts:
    settings = load_settings("data", config.common.var_dir, store.RETENTION_RULES)
    if config.provider == "sample":
        provider = load_sample_history()
        # A fresh database seeded with this data by this code and schema is kept as a template
        # (services/common/templates.py): the bundled history is stored and validated once.
        seeded = "data-seeded-" + templates.digest(provider.digest, templates.schema_key(store.SCHEMA),
                                                   SERVICE_DIR, COMMON_DIR)
        db = store.open_database(config.common.db_url, seeded=seeded)
        if db.restored != seeded:
            engine.sync_bars(db, provider.securities, provider.bars)  # first start loads it; later starts add nothing
            engine.revalidate_stale(db)
            db.keep_as_template(seeded)
    else:
        provider = YFinanceProvider(cache_dir=config.common.var_dir / "yfinance-cache")
        db = store.open_database(config.common.db_url)
    engine.revalidate_stale(db)
    common = config.common
    engine.load_reference_rates(db, engine.needed_currencies(db, common.base_currency, sorted(common.fx_rates)))
    servicer = MarketDataServicer(config, db, provider, Maintenance(store.SCHEMA, db, settings))
    return ServiceParts(lambda server: data_pb2_grpc.add_MarketDataServicer_to_server(servicer, server), db.close,
                        database=db)


if __name__ == "__main__":
    sys.exit(run_service("data", load, build))
