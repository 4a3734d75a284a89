"""Valid daily closes from data GetPriceHistories replies, converted once per bar.

Every cycle reads the same window of daily bars moved on by a session: the bars of the day
before but the oldest, and the new one. Converting each bar of each reply from protobuf into
Python objects was a large share of a plan's time; here a reply's bars are converted only where
they are new. What was converted before is reused only for bytes equal to those it was
converted from: the reply is serialized (canonical protobuf encoding, in C) and its bars must
continue, byte for byte, the bars of the symbol's previous reply from the first bar they share.
A bar corrected, flagged or re-adjusted since (a new dividend changes every adjusted close
before it) changes those bytes, and then the whole reply is converted again: the cache is keyed
on the data service's answer itself, so it cannot serve anything the answer no longer says.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from trader.data.v1 import data_pb2

from services.planner.optimizer.risk import Closes

CAPACITY = 4096  # symbols kept (least recently read dropped first); the universe is far smaller
_BAR_TAG = 1     # bytes of a `bars` record's tag (field 4, length-delimited: 0x22)
_HISTORY_TAG = 0x0A  # a GetPriceHistoriesResponse `histories` record's tag (field 1, length-delimited)


@dataclass(frozen=True)
class _Bars:
    """A reply's bars, converted: `raw` is their serialized records, `starts` where each record
    starts in it; `days` (datetime64[D], strictly ascending), `values` (the adjusted close where
    the provider has one, else the close) and `valid` (no flag) have a row per bar."""

    raw: bytes
    starts: np.ndarray
    days: np.ndarray
    values: np.ndarray
    valid: np.ndarray

    def closes(self, lookback: int) -> Closes:
        """The last `lookback` closes of the bars without a flag (eligibility.valid_closes)."""
        return Closes(self.days[self.valid][-lookback:], self.values[self.valid][-lookback:])


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _convert(bars, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(starts from `offset`, days, values, valid, bytes) of `bars` (repeated data_pb2.Bar)."""
    # Offsets summed in Python: a reply usually adds one bar, too few for numpy's calls to pay.
    lengths = [_BAR_TAG + _varint_size(size) + size for size in (bar.ByteSize() for bar in bars)]
    starts = np.fromiter(itertools.accumulate(lengths[:-1], initial=offset), dtype=np.int64, count=len(lengths)) \
        if lengths else np.empty(0, np.int64)
    days = np.array([bar.date for bar in bars], dtype="datetime64[D]")
    values = np.array([bar.adj_close if bar.HasField("adj_close") else bar.close for bar in bars], dtype=float)
    valid = np.array([not bar.flag for bar in bars], dtype=bool)
    return starts, days, values, valid, sum(lengths)


def history_records(reply: bytes, count: int) -> list[bytes | None]:
    """The bytes of each of the `count` histories of a serialized GetPriceHistoriesResponse
    (field 1, length-delimited records, in order); all None when the reply holds anything else."""
    records: list[bytes | None] = []
    at = 0
    while at < len(reply):
        if reply[at] != _HISTORY_TAG:
            return [None] * count
        size, at = _varint(reply, at + 1)
        records.append(reply[at:at + size])
        at += size
    return records if len(records) == count and at == len(reply) else [None] * count


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, position after it) of the base-128 varint at `at`."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _position(days: np.ndarray, day: np.datetime64) -> int:
    """The index of `day` in the strictly ascending `days`, -1 when absent. A window moved on by
    a session starts at the second day, an unmoved one at the first: those are compared first (as
    dates: a numpy search costs more)."""
    wanted = day.item()
    if wanted is None:  # not a date (NaT): never among kept days
        return -1
    for guess in (1, 0):
        if guess < len(days) and days[guess].item() == wanted:
            return guess
    index = int(np.searchsorted(days, day))
    return index if index < len(days) and days[index] == day else -1


def _ascending(days: np.ndarray) -> bool:
    return bool((days[1:] > days[:-1]).all())


class ClosesCache:
    """symbol -> the bars of its last reply, converted (thread-safe)."""

    def __init__(self, capacity: int = CAPACITY):
        self._capacity = capacity
        self._kept: OrderedDict[str, _Bars] = OrderedDict()
        self._headers: dict[tuple[str, str, int], bytes] = {}
        self._lock = threading.Lock()
        self.converted = 0  # bars converted so far (what the cache saves is what it does not count)

    def closes(self, history: data_pb2.GetPriceHistoryResponse, lookback: int, received: bytes | None = None) -> Closes:
        """The last `lookback` valid closes of a daily `history`, oldest first: exactly
        eligibility.valid_closes(its bars)[-lookback:]. `received`: the bytes `history` was
        parsed from (history_records), saving serializing it again."""
        raw = history.SerializeToString() if received is None else received
        header = self._header(history)
        raw = raw[len(header):] if raw.startswith(header) else b""
        with self._lock:
            before = self._kept.get(history.symbol)
        bars = self._extended(before, history, raw) if raw else None
        if bars is None:
            bars = self._whole(history, raw)
        with self._lock:
            if bars.raw:
                self._kept[history.symbol] = bars
                self._kept.move_to_end(history.symbol)
                while len(self._kept) > self._capacity:
                    self._kept.popitem(last=False)
            else:
                self._kept.pop(history.symbol, None)
        return bars.closes(lookback)

    def _header(self, history: data_pb2.GetPriceHistoryResponse) -> bytes:
        """The serialized fields of `history` before its bars (symbol, currency, interval)."""
        key = (history.symbol, history.currency, history.interval)
        header = self._headers.get(key)
        if header is None:
            header = data_pb2.GetPriceHistoryResponse(symbol=key[0], currency=key[1], interval=key[2]) \
                .SerializeToString()
            if len(self._headers) >= self._capacity:
                self._headers.clear()
            self._headers[key] = header
        return header

    def _whole(self, history: data_pb2.GetPriceHistoryResponse, raw: bytes) -> _Bars:
        """Every bar converted; kept (`raw` set) only when `raw` is exactly the bars' records
        (no unknown field) and their dates ascend."""
        starts, days, values, valid, size = _convert(history.bars, 0)
        self.converted += len(days)
        keep = size == len(raw) and _ascending(days)
        return _Bars(raw if keep else b"", starts, days, values, valid)

    def _extended(self, before: _Bars | None, history: data_pb2.GetPriceHistoryResponse, raw: bytes) -> _Bars | None:
        """`before` less the bars older than the reply's first, plus the reply's new bars;
        None unless the reply's bytes continue `before`'s from that first bar."""
        if before is None or not history.bars or not len(before.days):
            return None
        index = _position(before.days, np.datetime64(history.bars[0].date, "D"))
        if index < 0:
            return None
        shift = int(before.starts[index])
        kept = len(before.raw) - shift
        if len(raw) < kept or not raw.startswith(memoryview(before.raw)[shift:]):  # raw[:kept] == before's last
            return None
        tail = raw[kept:]
        new = data_pb2.GetPriceHistoryResponse.FromString(tail).bars
        starts, days, values, valid, size = _convert(new, kept)
        self.converted += len(days)
        if size != len(tail) or not _ascending(np.concatenate((before.days[-1:], days))):
            return None
        return _Bars(raw, np.concatenate((before.starts[index:] - shift, starts)),
                     np.concatenate((before.days[index:], days)), np.concatenate((before.values[index:], values)),
                     np.concatenate((before.valid[index:], valid)))
