"""The yfinance adapter, offline, against local fakes of yf.download and Ticker.info."""

from datetime import date

import pandas as pd
import pytest

from services.common.errors import Unavailable
from services.data.adapters.yfinance_provider import YFinanceProvider, yahoo_ticker
from tests.data_fixtures import security


def frame(tickers: dict[str, list[float]], start="2024-01-02") -> pd.DataFrame:
    """A yf.download(group_by="ticker") result: columns (ticker, field)."""
    days = pd.bdate_range(start, periods=len(next(iter(tickers.values()))))
    parts = {}
    for ticker, closes in tickers.items():
        for field in ("Open", "High", "Low", "Close", "Adj Close", "Volume"):
            scale = {"Open": 0.99, "High": 1.01, "Low": 0.98, "Close": 1.0, "Adj Close": 0.97, "Volume": 1000}[field]
            parts[(ticker, field)] = [c * scale for c in closes]
    return pd.DataFrame(parts, index=days)


class FakeDownload:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def __call__(self, tickers, **kwargs):
        self.calls.append((list(tickers), kwargs))
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def provider(download, info=None):
    return YFinanceProvider(download=download, ticker_info=info or (lambda ticker: {}), attempts=3, first_wait_s=0)


def test_ticker_mapping():
    assert yahoo_ticker(security("AAPL.US")) == "AAPL"
    assert yahoo_ticker(security("OPAP.GR")) == "OPAP.AT"
    assert yahoo_ticker(security("SAP.DE")) == "SAP.DE"
    assert yahoo_ticker(security("0700.HK")) == "0700.HK"
    assert yahoo_ticker(security("XIAO.HK", yahoo_symbol="1810.HK")) == "1810.HK"


def test_batch_download_success():
    fake = FakeDownload(frame({"AAPL": [100.0, 101.0, 102.0], "SAP.DE": [50.0, 51.0, float("nan")]}))
    bars = provider(fake).daily_bars([security("AAPL.US"), security("SAP.DE")], date(2024, 1, 1), date(2024, 1, 4))
    assert len(fake.calls) == 1 and fake.calls[0][0] == ["AAPL", "SAP.DE"]  # one batch
    assert fake.calls[0][1]["end"] == "2024-01-05" and fake.calls[0][1]["auto_adjust"] is False
    assert [b.close for b in bars["AAPL.US"]] == [100.0, 101.0, 102.0]
    assert bars["AAPL.US"][0].adj_close == pytest.approx(97.0) and bars["AAPL.US"][0].volume == 100_000
    assert [b.date for b in bars["SAP.DE"]] == [date(2024, 1, 2), date(2024, 1, 3)]  # NaN close skipped


def test_empty_result_is_retried_then_unavailable():
    fake = FakeDownload(pd.DataFrame())
    with pytest.raises(Unavailable, match="no data returned for AAPL"):
        provider(fake).daily_bars([security("AAPL.US")], None, date(2024, 1, 4))
    assert len(fake.calls) == 3


def test_network_error_is_retried_then_unavailable_with_reason():
    fake = FakeDownload(OSError("Could not resolve host: query2.finance.yahoo.com"))
    with pytest.raises(Unavailable, match="OSError: Could not resolve host"):
        provider(fake).daily_bars([security("AAPL.US")], None, date(2024, 1, 4))
    assert len(fake.calls) == 3


def test_recovers_after_a_transient_failure():
    fake = FakeDownload(ConnectionError("reset"), frame({"AAPL": [1.0, 2.0]}))
    bars = provider(fake).daily_bars([security("AAPL.US")], None, date(2024, 1, 4))
    assert len(fake.calls) == 2 and len(bars["AAPL.US"]) == 2


def test_unexpected_library_error_is_unavailable_not_internal():
    fake = FakeDownload(KeyError("chart"))
    with pytest.raises(Unavailable, match="KeyError"):
        provider(fake).daily_bars([security("AAPL.US")], None, date(2024, 1, 4))
    assert len(fake.calls) == 1  # not a transient kind: not retried


def test_fx_pairs_follow_the_convention():
    fake = FakeDownload(frame({"EURUSD=X": [1.08, 1.09]}))
    history = provider(fake).fx_history(["USD", "EUR"], "EUR", None, date(2024, 1, 3))
    assert fake.calls[0][0] == ["EURUSD=X"]
    assert history == {"USD": [(date(2024, 1, 2), 1.08), (date(2024, 1, 3), 1.09)]}


def test_info_failure_falls_back_to_none():
    calls = []

    def failing(ticker):
        calls.append(ticker)
        raise OSError("offline")

    assert provider(FakeDownload(pd.DataFrame()), failing).info(security("AAPL.US")) is None
    assert calls == ["AAPL"] * 3
    ok = provider(FakeDownload(pd.DataFrame()), lambda t: {"country": "United States"})
    assert ok.info(security("AAPL.US")) == {"country": "United States"}
