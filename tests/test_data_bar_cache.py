"""The data service's in-memory bars (services/data/bar_cache.py) never outlive a committed write:
a write's securities are dropped when it commits, a read racing a write is not kept, a
transaction's own uncommitted bars are not kept, a retention delete drops everything; and the
per-instant reads of services/common/clock.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.common import clock
from services.data import bar_cache, store
from services.data.bar_cache import BarCache
from services.data.history import Bar
from tests.data_fixtures import random_walk, security


@pytest.fixture
def db(tmp_path):
    database = store.open_database(f"sqlite:///{tmp_path / 'data.db'}")
    yield database
    database.close()


def stored(db, bars: list[Bar], symbol: str = "TEST.US") -> int:
    with db.transaction() as session:
        security_id = store.ensure_security(session, security(symbol))
        store.upsert_bars(session, security_id, bars, None)
    return security_id


def last_close(cache: BarCache, db, security_id: int) -> float:
    with db.transaction() as session:
        return float(cache.series(session, security_id).close[-1])


def test_a_series_is_read_once_and_dropped_when_its_bars_change(db):
    bars = random_walk(30)
    security_id = stored(db, bars)
    cache = BarCache(db)
    with db.transaction() as session:
        first = cache.series(session, security_id)
        assert cache.series(session, security_id) is first  # kept
    assert first.latest_valid(bars[-1].date) == (bars[-1].date, bars[-1].close)
    assert first.latest_valid(bars[0].date - timedelta(days=1)) is None
    later = Bar(bars[-1].date + timedelta(days=3), 999.0)
    stored(db, [later])
    assert last_close(cache, db, security_id) == 999.0  # the commit dropped the old series


def test_a_transaction_sees_its_own_bars_but_they_are_not_kept_if_it_rolls_back(db):
    bars = random_walk(30)
    security_id = stored(db, bars)
    cache = BarCache(db)
    with pytest.raises(RuntimeError), db.transaction() as session:
        store.upsert_bars(session, security_id, [Bar(bars[-1].date + timedelta(days=3), 555.0)], None)
        assert float(cache.series(session, security_id).close[-1]) == 555.0
        raise RuntimeError("rolled back")
    assert last_close(cache, db, security_id) == bars[-1].close


def test_a_read_that_raced_a_committed_write_is_not_kept(db, monkeypatch):
    bars = random_walk(30)
    security_id = stored(db, bars)
    cache = BarCache(db)
    real_read = bar_cache._read

    def read_then_another_commits(session, wanted):
        series = real_read(session, wanted)  # the old bars ...
        with db.transaction() as writer:  # ... while another transaction commits new ones
            bar_cache.touch(writer, wanted)
        return series

    monkeypatch.setattr(bar_cache, "_read", read_then_another_commits)
    last_close(cache, db, security_id)
    monkeypatch.setattr(bar_cache, "_read", real_read)
    reads = []
    monkeypatch.setattr(bar_cache, "_read", lambda session, wanted: reads.append(wanted) or real_read(session, wanted))
    last_close(cache, db, security_id)
    assert reads == [security_id]  # read again: the raced series was not kept


def test_a_retention_delete_drops_every_series(db):
    first = stored(db, random_walk(30), "A.US")
    second = stored(db, random_walk(30, seed=2), "B.US")
    cache = BarCache(db)
    for security_id in (first, second):
        last_close(cache, db, security_id)
    cutoff = random_walk(30)[10].date
    with db.transaction() as session:
        store.delete_bars_before(session, cutoff)
    with db.transaction() as session:
        assert all(int(cache.series(session, s).days[0]) >= cutoff.toordinal() for s in (first, second))


def test_the_cache_keeps_at_most_its_bars(db):
    ids = [stored(db, random_walk(30, seed=i), f"S{i}.US") for i in range(3)]
    cache = BarCache(db, max_bars=70)
    for security_id in ids:
        last_close(cache, db, security_id)
    assert list(cache._entries) == ids[1:]  # the least recently used went first


def test_flagged_bars_are_hidden_from_the_day_their_flag_is_known(db):
    bars = random_walk(60)
    spiked = [b if i != 40 else b._replace(close=b.close * 3) for i, b in enumerate(bars)]
    security_id = stored(db, spiked)
    cache = BarCache(db)
    with db.transaction() as session:
        series = cache.series(session, security_id)
    spike_day = bars[40].date
    assert series.latest_valid(spike_day) == (spike_day, pytest.approx(bars[40].close * 3))  # not known yet
    assert spike_day not in {date.fromordinal(int(series.days[i])) for i in series.valid(bars[41].date)}


def test_per_instant_reads_are_kept_for_one_simulated_instant_only():
    reads = []
    kept = clock.PerInstant()

    def read():
        reads.append(1)
        return len(reads)

    assert (kept.get("x", read), kept.get("x", read)) == (1, 2)  # the wall clock: every call reads
    at = datetime(2018, 1, 2, 20, 30, tzinfo=UTC)
    with clock.use_as_of(at):
        assert (kept.get("x", read), kept.get("x", read), kept.get("y", read)) == (3, 3, 4)
    with clock.use_as_of(at + timedelta(days=1)):
        assert kept.get("x", read) == 5


def test_history_rows_from_the_arrays_are_the_stored_rows(db):
    """GetPriceHistory(ies) read the rows from the arrays: the same bars, absent fields, flags and
    the days they became known as the database's, for any range."""
    bars = random_walk(60)
    bars[10] = bars[10]._replace(open=None, high=None, low=None, volume=None, adj_close=None)
    bars[30] = bars[30]._replace(close=bars[30].close * 20)  # a spike the validation flags
    security_id = stored(db, bars)
    cache = BarCache(db)
    with db.transaction() as session:
        series = cache.series(session, security_id)
        ranges = [(None, date.max), (bars[5].date, bars[40].date), (bars[30].date, bars[30].date),
                  (bars[-1].date + timedelta(days=1), date.max), (None, bars[0].date - timedelta(days=1))]
        for start, end in ranges:
            assert series.rows(start, end) == store.daily_bars_with_flags(session, security_id, start, end)
        assert any(flag for _, flag, _ in series.rows(None, date.max))


def test_metrics_of_many_securities_read_the_cache_once_and_compute_a_repeated_one_once(db):
    from services.data.analytics import indicators_as_of, indicators_of

    walk = random_walk(300)
    first, second = stored(db, walk, "ONE.US"), stored(db, walk[:200], "TWO.US")
    cache, now, through = BarCache(db), datetime(2020, 1, 1, tzinfo=UTC), walk[-1].date
    wanted = [(first, through), (second, through), (first, through), (second, walk[0].date - timedelta(days=1))]
    with db.transaction() as session:
        found = indicators_of(session, cache, wanted, now)
    assert [f.last_day for f in found] == [through, walk[199].date, through, None]
    assert found[0] == found[2] and not found[0].cached and found[3].values == {}
    with db.transaction() as session:  # each the same as alone, now from the cache
        again = indicators_of(session, cache, wanted, now + timedelta(hours=1))
        alone = indicators_as_of(session, cache, second, through, now + timedelta(hours=1))
    assert [a.values for a in again] == [f.values for f in found] and again[0].cached and again[1] == alone
    with db.transaction() as session:  # past the 24-hour TTL: computed and stored again
        later = indicators_of(session, cache, wanted[:2], now + timedelta(days=2))
    assert not any(f.cached for f in later)
