"""GetPriceHistories: many symbols in one call, each exactly what GetPriceHistory answers for it
(flags known by the end, no bar after "now" on its own exchange), bad input named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from trader.data.v1 import data_pb2

from services.common import clock
from services.common.errors import InvalidArgument, NotFound
from services.data.history import Bar
from tests.data_fixtures import FakeProvider, make_servicer, random_walk, security


def call(method, request, now):
    with clock.use_as_of(now):
        return method(request, None)


@pytest.fixture
def servicer(tmp_path):
    spiked = random_walk(120, seed=2)
    spiked[60] = Bar(spiked[60].date, spiked[60].close * 2.5)  # flagged: a one-day spike
    bars = {"A.US": random_walk(120, seed=1), "B.US": spiked, "C.DE": random_walk(120, seed=3)}
    securities = [security("A.US"), security("B.US"), security("C.DE", currency="EUR", exchange="XETR")]
    return make_servicer(tmp_path, FakeProvider(bars), securities)[0], bars


@pytest.mark.parametrize("interval", [data_pb2.DAILY, data_pb2.MONTHLY])
@pytest.mark.parametrize("start,end", [("", ""), ("2015-02-02", "2015-04-30"), ("2015-03-01", "")])
def test_each_history_equals_its_single_call(servicer, interval, start, end):
    service, bars = servicer
    last = bars["A.US"][-1].date
    # 16:30 UTC on the last day: New York is still open (that day's bar is hidden), Frankfurt closed.
    now = datetime(last.year, last.month, last.day, 16, 30, tzinfo=UTC)
    batch = call(service.GetPriceHistories, data_pb2.GetPriceHistoriesRequest(
        symbols=["C.DE", "A.US", "B.US", "A.US"], start=start, end=end, interval=interval), now)
    assert [h.symbol for h in batch.histories] == ["C.DE", "A.US", "B.US"]
    for history in batch.histories:
        single = call(service.GetPriceHistory, data_pb2.GetPriceHistoryRequest(
            symbol=history.symbol, start=start, end=end, interval=interval), now)
        assert history == single
    if interval == data_pb2.DAILY and not end:
        by_symbol = {h.symbol: h for h in batch.histories}
        assert by_symbol["C.DE"].bars[-1].date == last.isoformat()       # Frankfurt has closed
        assert by_symbol["A.US"].bars[-1].date < last.isoformat()        # New York has not
        assert any(b.flag.startswith("spike") for b in by_symbol["B.US"].bars)


def test_empty_request_gives_every_active_equity(servicer):
    service, _ = servicer
    now = datetime(2030, 1, 1, tzinfo=UTC)
    histories = call(service.GetPriceHistories, data_pb2.GetPriceHistoriesRequest(), now).histories
    assert [h.symbol for h in histories] == ["A.US", "B.US", "C.DE"] and all(len(h.bars) == 120 for h in histories)


def test_bad_input_is_named(servicer):
    service, _ = servicer
    now = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgument, match=r"symbols\[1\]: is empty"):
        call(service.GetPriceHistories, data_pb2.GetPriceHistoriesRequest(symbols=["A.US", " "]), now)
    with pytest.raises(NotFound, match="NOPE.US"):
        call(service.GetPriceHistories, data_pb2.GetPriceHistoriesRequest(symbols=["A.US", "NOPE.US"]), now)
    with pytest.raises(InvalidArgument, match="^start: "):
        call(service.GetPriceHistories, data_pb2.GetPriceHistoriesRequest(start="2015-13-01"), now)
    with pytest.raises(InvalidArgument, match="^start: .* is after end"):
        call(service.GetPriceHistories, data_pb2.GetPriceHistoriesRequest(start="2015-03-01", end="2015-02-01"), now)
    with pytest.raises(InvalidArgument, match="^interval: "):
        call(service.GetPriceHistories, data_pb2.GetPriceHistoriesRequest(interval=7), now)
