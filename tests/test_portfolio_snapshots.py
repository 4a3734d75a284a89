"""Snapshots (issue 12 item 3): one per day, what the books knew that day, turnover with the
FX direction right, retention."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.common.config import ConfigError
from services.portfolio import snapshots, store
from services.portfolio.config import load
from services.portfolio.engine import BrokerState
from services.portfolio.positions import FillRecord
from services.portfolio.valuation import Holding
from tests.portfolio_fixtures import START, FakePeers, portfolio_engine


def test_a_snapshot_holds_the_day_the_books_saw_and_replaces_an_earlier_one_of_the_day(tmp_path):
    """10 AAPL.US bought at 110 USD (1,100 USD = 1,000 EUR at 1.10) and 20 SAP.DE at 50 EUR,
    sold 10 SAP.DE at 50: turnover (1,000 + 1,000 + 500) / 2 over the mean total."""
    peers = FakePeers(prices={"AAPL.US": 110.0, "SAP.DE": 50.0})
    engine, _, db = portfolio_engine(tmp_path, peers)
    try:
        engine.record_deposit(5000.0, "EUR", "d1", START - timedelta(days=1))
        fills = [FillRecord("T1", "AAPL.US", "BUY", 10, 110.0, "USD", 0.0, START),
                 FillRecord("T2", "SAP.DE", "BUY", 20, 50.0, "EUR", 0.0, START),
                 FillRecord("T3", "SAP.DE", "SELL", 10, 50.0, "EUR", 0.0, START + timedelta(hours=1))]
        state = BrokerState([Holding("AAPL.US", 10, 110.0, "USD"), Holding("SAP.DE", 10, 50.0, "EUR")],
                            {"EUR": 3500.0, "USD": -1100.0}, START, fills, [], None)
        engine.apply_broker_state(state, START)
        first, _ = engine.take_snapshot(START + timedelta(hours=2))
        row, view = engine.take_snapshot(START + timedelta(hours=3))  # the same day: replaces it
        assert len(engine.snapshots(None, 10)) == 1 and row.taken_at == START + timedelta(hours=3)
        assert (row.positions_value_base, row.cash_base) == pytest.approx((1000.0 + 500.0, 3500.0 - 1000.0))
        assert row.total_value_base == pytest.approx(view.total_value_base) == pytest.approx(4000.0)
        assert (row.position_count, row.net_deposits_base, row.invested_base) == (2, 5000.0, pytest.approx(1500.0))
        assert store.decode_shares(row.country_shares) == pytest.approx({"Germany": 1 / 3, "United States": 2 / 3})
        assert store.decode_shares(row.industry_shares) == pytest.approx({"Consumer Electronics": 2 / 3,
                                                                          "Software": 1 / 3})
        assert row.annual_turnover == pytest.approx((1000.0 + 1000.0 + 500.0) / 2 / 4000.0)
        assert snapshots.turnover_level(row.annual_turnover) == "normal"
    finally:
        db.close()


def test_turnover_is_unknown_without_trades():
    assert snapshots.annual_turnover(0.0, [1000.0]) is None and snapshots.annual_turnover(500.0, []) is None
    assert snapshots.turnover_level(0.6) == "warning" and snapshots.turnover_level(1.0) == "critical"


def test_retention_deletes_older_snapshots_and_their_details(tmp_path):
    peers = FakePeers(prices={"SAP.DE": 50.0})
    engine, _, db = portfolio_engine(tmp_path, peers, retention_days=2)
    try:
        for day in range(5):
            now = START + timedelta(days=day)
            engine.apply_broker_state(BrokerState([Holding("SAP.DE", 1, 50.0, "EUR")], {"EUR": 10.0}, now, [], [],
                                                  None), now)
            engine.take_snapshot(now)
        kept = [r.date for r in engine.snapshots(None, 10)]
        assert kept == [(START + timedelta(days=d)).date() for d in (4, 3, 2)]
        with db.transaction() as session:
            assert {p.date for p in store.snapshot_positions(session, None, None)} == set(kept)
            assert {b.date for b in store.snapshot_buckets(session, "core")} == set(kept)
    finally:
        db.close()


def test_growth_index_leaves_flows_out():
    assert snapshots.next_index(None, None, 100.0, 0.0) == 1.0
    assert snapshots.next_index(None, None, 0.0, 0.0) is None
    assert snapshots.next_index(1.0, 100.0, 160.0, 50.0) == pytest.approx(1.1)
    assert snapshots.next_index(1.1, 0.0, 10.0, 10.0) == 1.1


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("90", 90), ("-1", None), ("2.5", None), ("many", None)])
def test_the_retention_setting_is_checked_at_start(value, expected):
    env = {"TRADER_AUTH_DISABLED": "1", **({"TRADER_SNAPSHOT_RETENTION_DAYS": value} if value is not None else {})}
    if expected is None:
        with pytest.raises(ConfigError, match="TRADER_SNAPSHOT_RETENTION_DAYS"):
            load(env)
    else:
        assert load(env).snapshot_retention_days == expected
