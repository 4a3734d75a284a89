"""The bundled offline history: skfolio's 20 S&P 500 stocks and the S&P 500 index.

skfolio ships the data inside its package (daily adjusted closes, 1990-01-02 to 2022-12-28),
so this provider needs no network. The data has closes only: bars carry no open/high/low/volume.
The metadata below (names, listing exchange, sector) is ours, written for these 20 tickers.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.data.history import Bar
from services.data.universe import INDEX, Security

PROVIDER = "skfolio-sp500-sample"
INDEX_SYMBOL = "SP500.IDX"

# ticker -> (name, exchange MIC, sector, industry)
_METADATA: dict[str, tuple[str, str, str, str]] = {
    "AAPL": ("Apple Inc.", "XNAS", "Information Technology", "Technology Hardware"),
    "AMD": ("Advanced Micro Devices, Inc.", "XNAS", "Information Technology", "Semiconductors"),
    "BAC": ("Bank of America Corporation", "XNYS", "Financials", "Banks"),
    "BBY": ("Best Buy Co., Inc.", "XNYS", "Consumer Discretionary", "Specialty Retail"),
    "CVX": ("Chevron Corporation", "XNYS", "Energy", "Integrated Oil & Gas"),
    "GE": ("General Electric Company", "XNYS", "Industrials", "Industrial Conglomerates"),
    "HD": ("The Home Depot, Inc.", "XNYS", "Consumer Discretionary", "Home Improvement Retail"),
    "JNJ": ("Johnson & Johnson", "XNYS", "Health Care", "Pharmaceuticals"),
    "JPM": ("JPMorgan Chase & Co.", "XNYS", "Financials", "Banks"),
    "KO": ("The Coca-Cola Company", "XNYS", "Consumer Staples", "Beverages"),
    "LLY": ("Eli Lilly and Company", "XNYS", "Health Care", "Pharmaceuticals"),
    "MRK": ("Merck & Co., Inc.", "XNYS", "Health Care", "Pharmaceuticals"),
    "MSFT": ("Microsoft Corporation", "XNAS", "Information Technology", "Software"),
    "PEP": ("PepsiCo, Inc.", "XNAS", "Consumer Staples", "Beverages"),
    "PFE": ("Pfizer Inc.", "XNYS", "Health Care", "Pharmaceuticals"),
    "PG": ("The Procter & Gamble Company", "XNYS", "Consumer Staples", "Household Products"),
    "RRC": ("Range Resources Corporation", "XNYS", "Energy", "Oil & Gas Exploration & Production"),
    "UNH": ("UnitedHealth Group Incorporated", "XNYS", "Health Care", "Managed Health Care"),
    "WMT": ("Walmart Inc.", "XNYS", "Consumer Staples", "Consumer Staples Merchandise Retail"),
    "XOM": ("Exxon Mobil Corporation", "XNYS", "Energy", "Integrated Oil & Gas"),
}


@dataclass(frozen=True)
class SampleHistory:
    securities: list[Security]
    bars: dict[str, list[Bar]]  # symbol -> chronological daily bars


def broker_symbol(ticker: str) -> str:
    return f"{ticker}.US"


def load_sample_history() -> SampleHistory:
    """Read the bundled data from the installed skfolio package (no network)."""
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    stocks = load_sp500_dataset()
    index = load_sp500_index()
    securities: list[Security] = []
    bars: dict[str, list[Bar]] = {}
    for ticker in stocks.columns:
        name, exchange, sector, industry = _METADATA[ticker]
        symbol = broker_symbol(ticker)
        securities.append(Security(symbol, name, "USD", exchange, "US", sector, industry))
        bars[symbol] = _bars(stocks[ticker])
    securities.append(Security(INDEX_SYMBOL, "S&P 500 Index", "USD", "XNYS", "US", "", "",
                               allow_buy=False, allow_sell=False, kind=INDEX))
    bars[INDEX_SYMBOL] = _bars(index["SP500"])
    return SampleHistory(securities, bars)


def _bars(series) -> list[Bar]:
    clean = series.dropna()
    return [Bar(date=day.date(), close=float(close)) for day, close in zip(clean.index, clean.values, strict=True)]
