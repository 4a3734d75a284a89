"""The bundled offline history: skfolio's 20 S&P 500 stocks and the S&P 500 index.

skfolio ships the data inside its package (daily adjusted closes, 1990-01-02 to 2022-12-28),
so this provider needs no network. The data has closes only: bars carry no open/high/low/volume.
The metadata below (names, listing exchange, sector) is ours, written for these 20 tickers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import subprocess
import sys
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from services.common import templates
from services.data.history import Bar
from services.data.universe import INDEX, Security

PROVIDER = "skfolio-sp500-sample"
INDEX_SYMBOL = "SP500.IDX"
FIRST_CLOSE, LAST_CLOSE = date(1990, 1, 2), date(2022, 12, 28)  # the sample's range (checked by a test)

# ticker -> (ISIN, name, exchange MIC, sector, industry)
_METADATA: dict[str, tuple[str, str, str, str, str]] = {
    "AAPL": ("US0378331005", "Apple Inc.", "XNAS", "Information Technology", "Technology Hardware"),
    "AMD": ("US0079031078", "Advanced Micro Devices, Inc.", "XNAS", "Information Technology", "Semiconductors"),
    "BAC": ("US0605051046", "Bank of America Corporation", "XNYS", "Financials", "Banks"),
    "BBY": ("US0865161014", "Best Buy Co., Inc.", "XNYS", "Consumer Discretionary", "Specialty Retail"),
    "CVX": ("US1667641005", "Chevron Corporation", "XNYS", "Energy", "Integrated Oil & Gas"),
    "GE": ("US3696043013", "General Electric Company", "XNYS", "Industrials", "Industrial Conglomerates"),
    "HD": ("US4370761029", "The Home Depot, Inc.", "XNYS", "Consumer Discretionary", "Home Improvement Retail"),
    "JNJ": ("US4781601046", "Johnson & Johnson", "XNYS", "Health Care", "Pharmaceuticals"),
    "JPM": ("US46625H1005", "JPMorgan Chase & Co.", "XNYS", "Financials", "Banks"),
    "KO": ("US1912161007", "The Coca-Cola Company", "XNYS", "Consumer Staples", "Beverages"),
    "LLY": ("US5324571083", "Eli Lilly and Company", "XNYS", "Health Care", "Pharmaceuticals"),
    "MRK": ("US58933Y1055", "Merck & Co., Inc.", "XNYS", "Health Care", "Pharmaceuticals"),
    "MSFT": ("US5949181045", "Microsoft Corporation", "XNAS", "Information Technology", "Software"),
    "PEP": ("US7134481081", "PepsiCo, Inc.", "XNAS", "Consumer Staples", "Beverages"),
    "PFE": ("US7170811035", "Pfizer Inc.", "XNYS", "Health Care", "Pharmaceuticals"),
    "PG": ("US7427181091", "The Procter & Gamble Company", "XNYS", "Consumer Staples", "Household Products"),
    "RRC": ("US75281A1097", "Range Resources Corporation", "XNYS", "Energy", "Oil & Gas Exploration & Production"),
    "UNH": ("US91324P1021", "UnitedHealth Group Incorporated", "XNYS", "Health Care", "Managed Health Care"),
    "WMT": ("US9311421039", "Walmart Inc.", "XNYS", "Consumer Staples", "Consumer Staples Merchandise Retail"),
    "XOM": ("US30231G1022", "Exxon Mobil Corporation", "XNYS", "Energy", "Integrated Oil & Gas"),
}


@dataclass(frozen=True)
class SampleHistory:
    """The bundled data as a price provider (offline): it has what it has, nothing more.

    The closes are kept as two arrays per symbol and become Bars when asked for: 175,000 Bars
    held for the life of the service would take about 30 MiB (bench/footprint.py)."""

    securities: list[Security]
    closes: dict[str, tuple[array, array]]  # symbol -> (dates as ordinals, closes), chronological
    name: str = PROVIDER
    digest: str = ""  # of the data as read (its pickle): names the data service's seeded template

    @property
    def bars(self) -> dict[str, list[Bar]]:
        """symbol -> its chronological daily bars (built on each call)."""
        return {symbol: self._bars(symbol, None, date.max) for symbol in self.closes}

    def daily_bars(self, securities: list[Security], start: date | None, end: date) -> dict[str, list[Bar]]:
        return {s.symbol: self._bars(s.symbol, start, end) for s in securities}

    def _bars(self, symbol: str, start: date | None, end: date) -> list[Bar]:
        days, closes = self.closes.get(symbol, ((), ()))
        first = bisect_left(days, start.toordinal()) if start is not None else 0
        last = bisect_right(days, end.toordinal())
        return [Bar(date=date.fromordinal(day), close=close) for day, close in zip(days[first:last], closes[first:last],
                                                                                   strict=True)]

    def info(self, security: Security) -> dict | None:
        known = next((s for s in self.securities if s.symbol == security.symbol), None)
        if known is None:
            return None
        return {"country": known.country, "fullExchangeName": known.exchange, "sector": known.sector,
                "industry": known.industry, "longName": known.name}

    def fx_history(self, currencies: list[str], base: str, start: date | None, end: date) -> dict:
        return {}  # the sample has no FX history: configured rates apply

    def dividends(self, securities: list[Security], start: date | None, end: date) -> dict:
        return {}  # the sample's closes are adjusted: its dividends are in the prices, none are paid


def broker_symbol(ticker: str) -> str:
    return f"{ticker}.US"


def load_sample_history() -> SampleHistory:
    """Read the bundled data from the installed skfolio package (no network), in a child process:
    importing skfolio (scikit-learn, SciPy, ...) for this one read would keep about 100 MiB
    resident for the life of the data service (bench/footprint.py). With templates enabled
    (services/common/templates.py) the child's output is kept in var/cache/, named by the
    bundled files' content, this module and the installed packages, and read from there next
    time. Raises RuntimeError with the child's error output when it cannot be read."""
    key = ("sample-history-" + templates.digest(Path(__file__), *_bundled_files())) if templates.directory() else None
    output = templates.load(key, ".pickle") if key else None  # None: not kept, or not as made
    if output is None:
        child = subprocess.run([sys.executable, "-m", __name__], capture_output=True, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"reading the bundled history failed (exit code {child.returncode}): "
                               f"{child.stderr.decode(errors='replace')[-2000:]}")
        output = child.stdout
        if key:
            templates.save_bytes(key, ".pickle", output)
    securities, closes = pickle.loads(output)  # our own child's output
    return SampleHistory(securities, closes, digest=hashlib.sha256(output).hexdigest())


def _bundled_files() -> list[Path]:
    """skfolio's data files this module reads, found without importing skfolio."""
    spec = importlib.util.find_spec("skfolio")
    if spec is None or not spec.submodule_search_locations:
        return [Path("skfolio-not-installed")]
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return [folder / "sp500_dataset.csv.gz", folder / "sp500_index.csv.gz"]


def read_sample_history() -> tuple[list[Security], dict[str, tuple[array, array]]]:
    """The bundled data as (securities, symbol -> (dates as ordinals, closes)), read in this process."""
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    stocks = load_sp500_dataset()
    index = load_sp500_index()
    securities: list[Security] = []
    closes: dict[str, tuple[array, array]] = {}
    for ticker in stocks.columns:
        isin, name, exchange, sector, industry = _METADATA[ticker]
        symbol = broker_symbol(ticker)
        securities.append(Security(symbol, name, "USD", exchange, "United States", sector, industry, isin=isin))
        closes[symbol] = _closes(stocks[ticker])
    securities.append(Security(INDEX_SYMBOL, "S&P 500 Index", "USD", "XNYS", "United States", "", "",
                               allow_buy=False, allow_sell=False, kind=INDEX))
    closes[INDEX_SYMBOL] = _closes(index["SP500"])
    return securities, closes


def _closes(series) -> tuple[array, array]:
    clean = series.dropna()
    return array("l", (day.date().toordinal() for day in clean.index)), array("d", clean.values.astype(float))


if __name__ == "__main__":  # the child of load_sample_history: the data as a pickle on stdout
    output, sys.stdout = sys.stdout.buffer, sys.stderr  # nothing a library prints can corrupt it
    pickle.dump(read_sample_history(), output, protocol=pickle.HIGHEST_PROTOCOL)
