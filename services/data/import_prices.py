"""`python -m services.data.import_prices SYMBOL FILE.csv`: import Yahoo-format daily bars
into the running market-data service (through ImportPrices, so the same checks apply);
`--dividends` imports Yahoo's dividend file (Date,Dividends) through ImportDividends.

The token comes from TRADER_API_TOKEN and the address from TRADER_DATA_ADDR (default
127.0.0.1:50051). A refused file stores nothing; the reason names the line and column.
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
    parser = argparse.ArgumentParser(prog="python -m services.data.import_prices", description=__doc__.splitlines()[0])
    parser.add_argument("symbol", help="broker symbol, e.g. AAPL.US (must exist: see UpsertSecurity)")
    parser.add_argument("file", type=Path, help="CSV: Date,Open,High,Low,Close[,Adj Close],Volume")
    parser.add_argument("--dividends", action="store_true", help="the file is Date,Dividends (per share)")
    parser.add_argument("--address", default=os.environ.get("TRADER_DATA_ADDR", "127.0.0.1:50051"))
    args = parser.parse_args(argv)
    try:
        text = args.file.read_text()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    with open_channel(args.address, os.environ.get("TRADER_API_TOKEN"), 60) as channel:
        stub = data_pb2_grpc.MarketDataStub(channel)
        try:
            if args.dividends:
                paid = stub.ImportDividends(data_pb2.ImportDividendsRequest(symbol=args.symbol, csv=text))
            else:
                reply = stub.ImportPrices(data_pb2.ImportPricesRequest(symbol=args.symbol, csv=text))
        except grpc.RpcError as exc:
            print(f"refused: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if args.dividends:
        print(f"{args.symbol}: {paid.added} dividends added, {paid.updated} updated, {paid.unchanged} unchanged")
        return 0
    print(f"{args.symbol}: {reply.bars_added} added, {reply.bars_updated} updated, {reply.bars_unchanged} unchanged, "
          f"{reply.bars_flagged} flagged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
