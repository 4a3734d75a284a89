"""Live prices, metadata and FX from Yahoo Finance (yfinance).

Broker symbols map to Yahoo tickers as in the original: an explicit per-security ticker wins;
otherwise `.US` is dropped (AAPL.US -> AAPL), `.GR` becomes `.AT` (Athens), other suffixes stay.
Downloads are batched, retried with exponential backoff (tenacity), and a failure, including
the empty frame yfinance returns when offline, becomes UNAVAILABLE with the reason; the caller
then keeps what it has stored. FX pairs are Yahoo's `EURUSD=X`: units of USD per 1 EUR, the
project's convention (decisions.md rule 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from services.common.errors import Unavailable
from services.data.history import Bar
from services.data.universe import Security

NAME = "yfinance"


class _EmptyResult(Exception):
    pass


def yahoo_ticker(security: Security) -> str:
    if security.yahoo_symbol:
        return security.yahoo_symbol
    base, _, suffix = security.symbol.upper().rpartition(".")
    if not base:
        return security.symbol.upper()
    if suffix == "US":
        return base
    if suffix == "GR":
        return f"{base}.AT"
    return security.symbol.upper()


def _value(row, field: str) -> float | None:
    value = row.get(field)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _frame_for(frame: pd.DataFrame, ticker: str, tickers: list[str]) -> pd.DataFrame | None:
    """The columns of one ticker in a yf.download result (flat or grouped by ticker)."""
    if isinstance(frame.columns, pd.MultiIndex):
        for level in (0, 1):
            if ticker in frame.columns.get_level_values(level):
                return frame.xs(ticker, axis=1, level=level)
        return None
    return frame if len(tickers) == 1 else None


class YFinanceProvider:
    name = NAME

    def __init__(self, download: Callable | None = None, ticker_info: Callable[[str], dict] | None = None,
                 attempts: int = 3, first_wait_s: float = 1.0, cache_dir: Path | None = None):
        """`download` and `ticker_info` default to yfinance's; tests pass local fakes."""
        if download is None or ticker_info is None:
            import yfinance

            if cache_dir is not None:  # yfinance writes a cache even offline: keep it in var/
                cache_dir.mkdir(parents=True, exist_ok=True)
                yfinance.set_tz_cache_location(str(cache_dir))
            download = download or yfinance.download
            ticker_info = ticker_info or (lambda ticker: yfinance.Ticker(ticker).info)
        self._download = download
        self._ticker_info = ticker_info
        self._last: tuple[tuple, pd.DataFrame] | None = None  # the last download, for its dividends
        self._retrying = dict(stop=stop_after_attempt(attempts),
                              wait=wait_exponential(multiplier=first_wait_s, max=30),
                              retry=retry_if_exception_type((OSError, ConnectionError, TimeoutError, _EmptyResult)),
                              reraise=False)

    def _fetch(self, tickers: list[str], start: date | None, end: date, reuse: bool = False) -> pd.DataFrame:
        """One download with the actions (the Dividends column). `reuse` takes the previous
        download of the same request once (a sync's dividends come with its bars, not from a
        second download); otherwise it always downloads afresh."""
        key = (tuple(tickers), start, end)
        if reuse and self._last is not None and self._last[0] == key:
            frame, self._last = self._last[1], None
            return frame

        def attempt() -> pd.DataFrame:
            frame = self._download(tickers, start=(start or date(1970, 1, 1)).isoformat(),
                                   end=(end + timedelta(days=1)).isoformat(), group_by="ticker",
                                   auto_adjust=False, actions=True, progress=False, threads=False)
            if frame is None or frame.empty:
                raise _EmptyResult(f"no data returned for {', '.join(tickers)}")
            return frame

        try:
            frame = Retrying(**self._retrying)(attempt)
            self._last = (key, frame)
            return frame
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise Unavailable(f"yfinance: {type(cause).__name__}: {cause}") from cause
        except Exception as exc:  # anything else the library raises is a provider failure too
            raise Unavailable(f"yfinance: {type(exc).__name__}: {exc}") from exc

    def daily_bars(self, securities: list[Security], start: date | None, end: date) -> dict[str, list[Bar]]:
        tickers = {yahoo_ticker(s): s.symbol for s in securities}
        frame = self._fetch(list(tickers), start, end)
        result: dict[str, list[Bar]] = {}
        for ticker, symbol in tickers.items():
            part = _frame_for(frame, ticker, list(tickers))
            bars = []
            for day, row in ([] if part is None else part.iterrows()):
                close = _value(row, "Close")
                if close is None:
                    continue
                bars.append(Bar(date=pd.Timestamp(day).date(), close=close, open=_value(row, "Open"),
                                high=_value(row, "High"), low=_value(row, "Low"), volume=_value(row, "Volume"),
                                adj_close=_value(row, "Adj Close")))
            result[symbol] = sorted(bars, key=lambda b: b.date)
        return result

    def dividends(self, securities: list[Security], start: date | None, end: date) -> dict[str, list]:
        """Yahoo's `Dividends` action per ex-date (0 on other days), from the same download as
        the bars of the same request."""
        tickers = {yahoo_ticker(s): s.symbol for s in securities}
        frame = self._fetch(list(tickers), start, end, reuse=True)
        result: dict[str, list] = {}
        for ticker, symbol in tickers.items():
            part = _frame_for(frame, ticker, list(tickers))
            result[symbol] = [(pd.Timestamp(day).date(), amount) for day, row in
                              ([] if part is None else part.iterrows())
                              if (amount := _value(row, "Dividends")) is not None and amount > 0]
        return result

    def info(self, security: Security) -> dict | None:
        try:
            for attempt in Retrying(**{**self._retrying, "reraise": True}):
                with attempt:
                    return dict(self._ticker_info(yahoo_ticker(security)) or {})
        except Exception:  # noqa: BLE001 - metadata is optional: detection falls back to the suffix
            return None
        return None

    def fx_history(self, currencies: list[str], base: str, start: date | None, end: date) -> dict[str, list]:
        pairs = {f"{base}{c}=X": c for c in currencies if c != base}
        if not pairs:
            return {}
        frame = self._fetch(list(pairs), start, end)
        history = {}
        for ticker, currency in pairs.items():
            part = _frame_for(frame, ticker, list(pairs))
            history[currency] = [(pd.Timestamp(day).date(), close) for day, row in
                                 ([] if part is None else part.iterrows())
                                 if (close := _value(row, "Close")) is not None and close > 0]
        return history
