"""Trading service (trader.trading.v1.Trading)."""
