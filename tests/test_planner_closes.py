"""The planner's closes: converted once per bar from the data service's replies
(adapters/closes.py), aligned and turned into returns in numpy (optimizer/risk.py). Each must
give exactly what the plain conversion and pandas/PyPortfolioOpt give."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypfopt.expected_returns import returns_from_prices
from trader.data.v1 import data_pb2

from services.planner.adapters.closes import ClosesCache, history_records
from services.planner.eligibility import valid_closes
from services.planner.inputs import correlations
from services.planner.optimizer.risk import aligned, aligned_closes, daily_returns

START = date(2018, 1, 1)


def bar(day: int, close: float, adj: float | None = None, flag: str = "") -> data_pb2.Bar:
    message = data_pb2.Bar(date=(START + timedelta(days=day)).isoformat(), close=close, flag=flag)
    if adj is not None:
        message.adj_close = adj
    return message


def history(bars: list[data_pb2.Bar], symbol: str = "A.US") -> data_pb2.GetPriceHistoryResponse:
    return data_pb2.GetPriceHistoryResponse(symbol=symbol, currency="USD", interval=data_pb2.DAILY, bars=bars)


def plain(bars: list[data_pb2.Bar], lookback: int) -> list[tuple[str, float]]:
    rows = [(b.date, b.close, b.adj_close if b.HasField("adj_close") else None, b.flag) for b in bars]
    return valid_closes(rows)[-lookback:]


def test_a_window_moved_on_converts_only_the_new_bars():
    cache = ClosesCache()
    bars = [bar(d, 100.0 + d, 99.0 + d) for d in range(300)]
    assert cache.closes(history(bars[:250]), 200).rows() == plain(bars[:250], 200)
    assert cache.converted == 250
    for end in range(251, 300):  # each day: the oldest bar goes, a new one comes
        assert cache.closes(history(bars[end - 250:end]), 200).rows() == plain(bars[end - 250:end], 200)
    assert cache.converted == 250 + 49


def test_histories_as_received_are_each_history_s_bytes_and_give_the_same_closes():
    """history_records splits a GetPriceHistories reply as received into its histories' bytes
    (those the cache compares), and closes from them are those from serializing again; a reply
    holding anything else gives none (then the cache serializes)."""
    bars = [bar(d, 100.0 + d, 99.0 + d if d % 3 else None, flag="gap: x" if d == 7 else "") for d in range(400)]
    for end in (250, 251, 300):
        reply = data_pb2.GetPriceHistoriesResponse(histories=[
            history(bars[end - 250:end], "A.US"), history([], "B.US"), history(bars[:end - 100], "C.US")])
        received = reply.SerializeToString()
        records = history_records(received, 3)
        assert records == [h.SerializeToString() for h in reply.histories]
        parsed = data_pb2.GetPriceHistoriesResponse.FromString(received).histories
        by_bytes, serialized = ClosesCache(), ClosesCache()
        for h, record in zip(parsed, records, strict=True):
            assert by_bytes.closes(h, 200, record).rows() == serialized.closes(h, 200).rows()
    assert history_records(received + b"\x12\x00", 3) == [None] * 3  # a field the reply does not have
    assert history_records(received, 2) == [None] * 2


@pytest.mark.parametrize("moves", [[0, 0, 1], [5, 1, 0, 17], [1, 2, 3]])
def test_a_window_unmoved_or_moved_by_several_bars_converts_only_the_new_bars(moves):
    cache = ClosesCache()
    bars = [bar(d, 100.0 + d, 99.0 + d, flag="gap: x" if d % 11 == 0 else "") for d in range(400)]
    start = 0
    cache.closes(history(bars[:250]), 200)
    for move in moves:
        start += move
        assert cache.closes(history(bars[start:250 + start]), 200).rows() == plain(bars[start:250 + start], 200)
    assert cache.converted == 250 + sum(moves)


@pytest.mark.parametrize("change", ["corrected", "flagged", "readjusted", "unflagged"])
def test_a_changed_bar_already_seen_is_never_served_from_before(change):
    """A correction, a flag found later, a new adjustment (a dividend re-adjusts every close
    before it), a flag taken back: the closes are those of the new reply, converted anew."""
    cache = ClosesCache()
    bars = [bar(d, 100.0 + d, 99.0 + d, flag="spike: x" if d == 40 else "") for d in range(120)]
    cache.closes(history(bars[:100]), 365)
    changed = list(bars[1:101])
    if change == "corrected":
        changed[50] = bar(51, 1.0, 2.0)
    elif change == "flagged":
        changed[50] = bar(51, 151.0, 150.0, flag="gap: x")
    elif change == "readjusted":
        changed = [bar(d, 100.0 + d, 98.0 + d) for d in range(1, 101)]
    else:
        changed[39] = bar(40, 140.0, 139.0)
    assert cache.closes(history(changed), 365).rows() == plain(changed, 365)
    assert cache.converted == 200  # everything converted again


def test_symbols_are_kept_apart_and_a_reply_with_fewer_bars_is_converted_again():
    cache = ClosesCache()
    first = [bar(d, 10.0 + d) for d in range(30)]
    second = [bar(d, 50.0 + d) for d in range(30)]
    assert cache.closes(history(first, "A.US"), 365).rows() == plain(first, 365)
    assert cache.closes(history(second, "B.US"), 365).rows() == plain(second, 365)
    assert cache.closes(history(first[:20], "A.US"), 365).rows() == plain(first[:20], 365)  # an earlier "now"
    assert cache.closes(history([], "A.US"), 365).rows() == []
    assert cache.closes(history(first[5:], "A.US"), 365).rows() == plain(first[5:], 365)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0.5, 500), st.none() | st.floats(0.5, 500),
                          st.sampled_from(["", "", "", "spike: x"])), min_size=0, max_size=60),
       st.lists(st.tuples(st.integers(0, 8), st.integers(0, 6), st.integers(0, 59)), min_size=1, max_size=8),
       st.integers(1, 50))
def test_the_cache_gives_what_converting_every_bar_gives(rows, windows, lookback):
    """Any sequence of replies (windows moved on or back, bars changed in between) gives
    exactly eligibility.valid_closes of each reply's bars."""
    day, bars = 0, []
    for gap, close, adj, flag in rows:
        day += gap + 1
        bars.append(bar(day, close, adj, flag))
    cache = ClosesCache()
    for start, end_less, changed in windows:
        window = list(bars[start:max(start, len(bars) - end_less)])
        if window and changed % 3 == 0:
            index = changed % len(window)
            window[index] = bar((date.fromisoformat(window[index].date) - START).days, 1.5, None)
        assert cache.closes(history(window), lookback).rows() == plain(window, lookback)


def reference_aligned(closes, lookback=365):
    """optimizer/risk.py aligned_closes as it was built on pandas (the behaviour to keep)."""
    series = {symbol: rows[-lookback:] for symbol, rows in sorted(closes.items())}
    if not series:
        return pd.DataFrame()
    dates = sorted({day for rows in series.values() for day, _ in rows})
    row_of = {day: i for i, day in enumerate(dates)}
    matrix = np.full((len(dates), len(series)), np.nan)
    for column, rows in enumerate(series.values()):
        matrix[[row_of[day] for day, _ in rows], column] = [close for _, close in rows]
    frame = pd.DataFrame(matrix, index=dates, columns=list(series)).ffill().dropna()
    frame.index = pd.to_datetime(frame.index)
    return frame


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 120), st.one_of(st.floats(0.5, 500), st.just(float("nan")))),
                         max_size=60), max_size=5),
       st.integers(5, 365))
def test_numpy_alignment_and_returns_are_pandas_value_for_value(series, lookback):
    closes = {f"S{i}.US": [((START + timedelta(days=d)).isoformat(), c) for d, c in sorted(dict(rows).items())]
              for i, rows in enumerate(series)}
    expected = reference_aligned(closes, lookback)
    pd.testing.assert_frame_equal(aligned_closes(closes, lookback), expected, check_exact=True)
    if len(expected):
        returns = daily_returns(aligned(closes, lookback))
        reference = returns_from_prices(expected).to_numpy()
        assert np.array_equal(returns, reference, equal_nan=True)
        # the memory order of PyPortfolioOpt's returns of the aligned frame: what is summed from
        # them (np.cov, Ledoit-Wolf) sums in the same order
        pypfopt_s = returns_from_prices(aligned_closes(closes, lookback)).to_numpy()
        assert returns.flags.f_contiguous == pypfopt_s.flags.f_contiguous
    window = reference_aligned({s: r for s, r in closes.items() if r}, 21)
    pairs = {}
    if len(window.columns) >= 2 and len(window) > 20:
        matrix = returns_from_prices(window).corr().to_numpy()
        pairs = {frozenset((a, b)): float(matrix[i, j]) for i, a in enumerate(window.columns)
                 for j, b in enumerate(window.columns) if j > i and np.isfinite(matrix[i, j])}
    assert correlations(closes, 20) == pairs
