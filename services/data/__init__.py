"""Market-data service (trader.data.v1.MarketData)."""
