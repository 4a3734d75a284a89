"""`python -m services.data.import_fundamentals FILE`: import fundamentals (CSV or JSON) into
the running market-data service (through ImportFundamentals, so the same checks apply).

CSV: a header `symbol,date,<field>,...`, one row per security and day, an empty cell not
observed. JSON: a list of objects with `symbol`, `date` and fields. Fields and units: README,
"Fundamentals". The token comes from TRADER_API_TOKEN and the address from TRADER_DATA_ADDR
(default 127.0.0.1:50051). A refused file stores nothing; the reason names the place and field.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from trader.data.v1 import data_pb2, data_pb2_grpc

from services.common.client import open_channel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.data.import_fundamentals",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a .csv or .json file")
    parser.add_argument("--format", choices=("csv", "json"), help="default: from the file's extension")
    parser.add_argument("--address", default=os.environ.get("TRADER_DATA_ADDR", "127.0.0.1:50051"))
    args = parser.parse_args(argv)
    try:
        text = args.file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 2
    file_format = args.format or {".csv": "csv", ".json": "json"}.get(args.file.suffix.lower(), "")
    with open_channel(args.address, os.environ.get("TRADER_API_TOKEN"), 60) as channel:
        try:
            reply = data_pb2_grpc.MarketDataStub(channel).ImportFundamentals(
                data_pb2.ImportFundamentalsRequest(content=text, format=file_format))
        except grpc.RpcError as exc:
            print(f"refused: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(f"{', '.join(reply.symbols)}: {reply.observations_added} added, {reply.observations_updated} updated, "
          f"{reply.observations_unchanged} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
