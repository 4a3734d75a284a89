"""Portfolio service (trader.portfolio.v1.Portfolio)."""
