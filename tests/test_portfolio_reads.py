"""What the portfolio keeps between calls and what it asks the other services, and when: the
book's cash read incrementally, the reconciliation's alert cleared only when one may be shown,
the other services asked while the store is read (with the call's as-of time), and a failed
read of them still books and stores nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import func, select

from services.common import clock
from services.common.revisions import wrote
from services.portfolio import store
from services.portfolio.engine import BrokerState
from services.portfolio.positions import FillRecord
from services.portfolio.valuation import Holding
from tests.portfolio_fixtures import START, FakePeers, portfolio_engine


def add_flow(session, amount: float, currency: str, reference: str) -> None:
    store.add_cash_flow(session, "deposit", amount, currency, reference, START)


def test_the_book_cash_kept_between_reads_is_the_ledger_sum_and_never_a_rolled_back_row(tmp_path):
    db = store.open_database(f"sqlite:///{tmp_path / 'p.db'}")
    kept = store.BookCash()
    try:
        with db.transaction() as session:
            for n, amount in enumerate((0.1, 0.2, 0.3, -0.6, 1e9, 1e-9)):
                add_flow(session, amount, "EUR", f"e{n}")
            add_flow(session, 12.5, "USD", "u0")
        with db.transaction() as session:
            assert kept.read(session) == {"EUR": pytest.approx(1e9 + 1e-9, abs=1e-12), "USD": 12.5}
        with pytest.raises(RuntimeError), db.transaction() as session:  # seen while written, then undone
            add_flow(session, 1000.0, "GBP", "undone")
            assert kept.read(session)["GBP"] == 1000.0
            raise RuntimeError("rolled back")
        with db.transaction() as session:  # the next row takes the undone row's id
            add_flow(session, 7.0, "USD", "u1")
        with db.transaction() as session:
            assert "GBP" not in kept.read(session)
        with db.transaction() as session:
            add_flow(session, 0.7, "EUR", "e9")
        with db.transaction() as session:
            incremental = kept.read(session)
            summed = store.book_cash(session)
        assert incremental.keys() == summed.keys() == {"EUR", "USD"}
        assert incremental["USD"] == 19.5
        assert incremental["EUR"] == pytest.approx(summed["EUR"], rel=1e-15)
        with db.transaction() as session:  # a fresh reader (a restarted process) reads the same figure
            assert store.BookCash().read(session) == incremental
    finally:
        db.close()


def test_a_clean_reconciliation_asks_no_other_service_once_its_alert_is_cleared(tmp_path):
    peers = FakePeers()
    engine, _, db = portfolio_engine(tmp_path, peers)
    book = engine.buckets
    try:
        engine.apply_broker_state(BrokerState([], {"EUR": 1000.0}, START, [], [], None), START)
        book.reconcile(START)  # the opening balance is booked: valued at the rates
        assert peers.calls.count("GetFxRates") == 1 and peers.cleared == ["bucket_reconciliation"]
        peers.calls.clear()
        book.reconcile(START)
        book.reconcile(START)
        assert peers.calls == [] and peers.cleared == ["bucket_reconciliation"]
        engine.apply_broker_state(BrokerState([], {"EUR": 1100.0}, START, [], [], None), START)
        assert book.reconcile(START)[1]  # off by 100: an alert is shown
        engine.apply_broker_state(BrokerState([], {"EUR": 1000.0}, START, [], [], None), START)
        peers.failing.add("ClearMessage")
        book.reconcile(START)  # clean again, but the display cannot be told: tried again next time
        peers.failing.clear()
        book.reconcile(START)
        book.reconcile(START)
        assert peers.cleared == ["bucket_reconciliation"] * 2
    finally:
        db.close()


def test_the_other_services_are_asked_at_the_calls_as_of_time(tmp_path):
    peers = FakePeers()
    engine, _, db = portfolio_engine(tmp_path, peers)
    at = START + timedelta(hours=1)
    try:
        fill = FillRecord("T1", "SAP.DE", "BUY", 10, 50.0, "EUR", 1.0, START)
        with clock.use_as_of(at):
            engine.apply_broker_state(BrokerState([Holding("SAP.DE", 10, 50.1, "EUR")], {"EUR": 499.0}, START,
                                                  [fill], [], None), at)
            engine.portfolio()
            engine.take_snapshot(at)
        assert {"ListSecurities", "GetFxRates", "GetQuotes"} <= set(peers.calls)
        assert set(peers.as_of) == {at}
    finally:
        db.close()


def snapshot_count(db) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(store.SnapshotRow))


@pytest.mark.parametrize("down", ["ListSecurities", "GetFxRates"])
def test_a_sync_whose_universe_or_rates_cannot_be_read_books_nothing(tmp_path, down):
    peers = FakePeers()
    engine, _, db = portfolio_engine(tmp_path, peers)
    try:
        peers.failing.add(down)
        fill = FillRecord("T1", "SAP.DE", "BUY", 10, 50.0, "EUR", 1.0, START)
        with pytest.raises(ConnectionError):
            engine.apply_broker_state(BrokerState([Holding("SAP.DE", 10, 50.1, "EUR")], {"EUR": 499.0}, START,
                                                  [fill], [], (1, 0)), START)
        assert engine.ledger_cursor() == (0, 0)
        with db.transaction() as session:
            assert store.holdings(session) == [] and store.fills(session, None) == []
    finally:
        db.close()


@pytest.mark.parametrize("down", ["ListSecurities", "GetFxRates", "GetQuotes"])
def test_a_snapshot_whose_valuation_cannot_be_read_is_not_stored(tmp_path, down):
    peers = FakePeers()
    engine, _, db = portfolio_engine(tmp_path, peers)
    try:
        engine.apply_broker_state(BrokerState([Holding("SAP.DE", 10, 50.0, "EUR")], {"EUR": 100.0}, START, [], [],
                                              None), START)
        engine.take_snapshot(START)
        peers.failing.add(down)
        with pytest.raises(ConnectionError):
            engine.take_snapshot(START + timedelta(days=1))
        assert snapshot_count(db) == 1
    finally:
        db.close()


def test_the_same_broker_state_again_changes_nothing_and_a_new_one_replaces_it(tmp_path):
    engine, _, db = portfolio_engine(tmp_path)
    state = BrokerState([Holding("KO.US", 5, 60.0, "USD"), Holding("SAP.DE", 10, 50.0, "EUR")],
                        {"EUR": 100.0, "USD": 5.0}, START, [], [], None)
    try:
        assert engine.apply_broker_state(state, START).changed
        later = START + timedelta(days=1)
        again = engine.apply_broker_state(BrokerState(state.positions, dict(state.cash), later, [], [], None), later)
        assert not again.changed
        with db.transaction() as session:
            assert store.holdings(session) == state.positions and store.broker_synced_at(session) == later
        sold = engine.apply_broker_state(BrokerState([Holding("SAP.DE", 10, 50.0, "EUR")], {"EUR": 400.0}, later,
                                                     [], [], None), later)
        assert sold.changed
        with db.transaction() as session:
            assert store.holdings(session) == [Holding("SAP.DE", 10, 50.0, "EUR")]
            assert store.cash(session) == {"EUR": 400.0}
    finally:
        db.close()


def test_revisions_move_with_committed_writes_only(tmp_path):
    db = store.open_database(f"sqlite:///{tmp_path / 'p.db'}")
    revisions = db.revisions
    tables = ("cash_flows", "positions", "cash_balances")
    try:
        with db.transaction() as session:
            store.holdings(session)
            assert not wrote(session)
        assert revisions.of(tables) == (0, 0, 0, 0)
        with db.transaction() as session:
            add_flow(session, 1.0, "EUR", "r1")
            assert wrote(session)
        assert revisions.of(tables) == (0, 1, 0, 0)
        with pytest.raises(RuntimeError), db.transaction() as session:
            store.replace_broker_state(session, [Holding("SAP.DE", 1, 50.0, "EUR")], {"EUR": 1.0}, START)
            raise RuntimeError("rolled back")
        assert revisions.of(tables) == (0, 1, 0, 0)
        with db.transaction() as session:  # DML statements and flushed rows alike
            store.replace_broker_state(session, [Holding("SAP.DE", 1, 50.0, "EUR")], {"EUR": 1.0}, START)
        assert revisions.of(tables) == (0, 1, 1, 1)
    finally:
        db.close()


def test_the_valuation_kept_between_calls_follows_every_change_of_the_books(tmp_path):
    engine, peers, db = portfolio_engine(tmp_path)
    statements = []
    sqlalchemy_event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        engine.apply_broker_state(BrokerState([Holding("SAP.DE", 10, 50.0, "EUR")], {"EUR": 100.0}, START, [], [],
                                              None), START)
        first = engine.portfolio()
        statements.clear()
        assert engine.portfolio() == first and statements == []  # nothing written since: nothing read
        engine.take_snapshot(START)  # writes only the snapshot tables
        statements.clear()
        assert engine.portfolio() == first and statements == []
        engine.apply_broker_state(BrokerState([Holding("SAP.DE", 12, 50.0, "EUR")], {"EUR": 0.0}, START, [
            FillRecord("T1", "SAP.DE", "BUY", 2, 50.0, "EUR", 0.0, START)], [], None), START)
        after_fill = engine.portfolio()
        assert [(p.valued.holding.quantity, p.book_quantity) for p in after_fill.positions] == [(12, 2)]
        assert after_fill.cash_differences == [("EUR", -100.0, 0.0)]  # the book: no deposit, one BUY
        engine.record_deposit(100.0, "EUR", "dep-1", START)
        assert engine.portfolio().cash_differences == []
        later = START + timedelta(days=1)  # the same state again: only the sync time changes
        engine.apply_broker_state(BrokerState([Holding("SAP.DE", 12, 50.0, "EUR")], {"EUR": 0.0}, later, [], [],
                                              None), later)
        assert engine.portfolio().synced_at == later
    finally:
        db.close()
