"""What the portfolio keeps between a cycle's calls (services/portfolio/kept.py: the book handed
forward by the sync, the stored snapshot days, the buckets, the open dividends, the allocation
mappings, the last valuation) never serves a stale answer: every answer equals what a freshly
started process reads from the same database, and it changes when a fill, a cash flow, a
price, an FX rate, the as-of time or the universe changes."""

from __future__ import annotations

from datetime import timedelta

from services.common import clock
from services.portfolio import store
from services.portfolio.adapters.peers import DividendPerShare as PerShare
from services.portfolio.allocation_book import AllocationBook
from services.portfolio.engine import BrokerState, PortfolioEngine
from services.portfolio.kept import KeptState, written_tables
from services.portfolio.positions import FillRecord
from services.portfolio.valuation import Holding
from services.trading.adapters.broker import DividendPerShare
from tests.portfolio_fixtures import START, Account, portfolio_engine

SNAPSHOT_FIGURES = ("positions_value_base", "cash_base", "total_value_base", "invested_base", "net_deposits_base",
                    "unrealized_pnl_base", "position_count", "country_shares", "industry_shares", "annual_turnover")


def fresh_engine(account: Account) -> PortfolioEngine:
    """A second process on the same database: it keeps nothing yet."""
    return PortfolioEngine(account.portfolio_db, account.peers, "EUR", 0, START)


def cycle(account: Account, now):
    """One day as the cycle runs it: sync, snapshot, the planner's and trading's reads, the jobs."""
    engine = account.portfolio
    account.trading.sync(now)
    with clock.use_as_of(now):
        account.sync(now)
        row, _ = engine.take_snapshot(now)
        view = engine.portfolio()
        pnl = engine.daily_pnl(now.date(), now)
        checks, _ = engine.buckets.reconcile(now)
        plan = engine.plan_reinvestment(now)
    return row, view, pnl, checks, plan


def test_every_kept_answer_of_a_cycle_is_what_a_fresh_process_reads(tmp_path):
    account = Account(tmp_path)
    account.peers.per_share = [PerShare("KO.US", START.date(), 4.0)]  # a yield above 3%: a BUY of KO
    planned = []
    try:
        for currency in ("EUR", "USD", "GBP"):
            account.trading.fund_paper_account(50_000.0, currency, f"seed-{currency}", START)
        for day in range(14):
            now = START + timedelta(days=day)
            if day % 3 == 1:
                account.fill(("KO.US", "SAP.DE", "ULVR.L")[day // 3 % 3], "BUY", 10 + day, 50.0, now)
            if day == 8:
                account.fill("KO.US", "SELL", 5, 70.0, now)
            if day in (5, 11):
                account.broker.pay_dividends([DividendPerShare("KO.US", now.date(), 0.4 if day == 5 else 40.0)], now)
            if day == 6:
                account.trading.fund_paper_account(2_000.0, "EUR", "deposit-6", now)
                with clock.use_as_of(now):
                    account.portfolio.record_deposit(500.0, "EUR", "by-hand-6", now)
            account.peers.prices["KO.US"] = 60.0 + day
            account.peers.rates_["USD"] = 1.10 + day / 100
            row, view, pnl, checks, plan = cycle(account, now)
            planned += plan.buys
            fresh = fresh_engine(account)
            with clock.use_as_of(now):
                assert fresh.portfolio() == view
                assert fresh.ledger_cursor() == account.portfolio.ledger_cursor()
                assert fresh.daily_pnl(now.date(), now) == pnl
                assert fresh.buckets.reconcile(now)[0] == checks
                assert fresh.plan_reinvestment(now) == plan
                again, _ = fresh.take_snapshot(now)  # the same day's snapshot, computed from the store alone
            assert [getattr(again, f) for f in SNAPSHOT_FIGURES] == [getattr(row, f) for f in SNAPSHOT_FIGURES]
            with account.portfolio_db.transaction() as session:
                assert store.last_snapshot_buckets_before(session, now.date() + timedelta(days=1))
        assert {b.symbol for b in planned} == {"KO.US"}  # the large dividend: the market was asked about it
    finally:
        account.close()


def test_the_valuation_changes_with_a_fill_a_cash_flow_a_price_a_rate_and_the_as_of(tmp_path):
    account = Account(tmp_path)
    engine, peers = account.portfolio, account.peers
    try:
        account.trading.fund_paper_account(10_000.0, "USD", "seed", START)
        account.trading.sync(START)
        account.sync(START)
        first = engine.portfolio()
        assert engine.portfolio() is first  # nothing changed: not valued again

        account.fill("KO.US", "BUY", 10, 60.0, START)
        account.trading.sync(START)
        account.sync(START)
        filled = engine.portfolio()
        assert [p.valued.holding.symbol for p in filled.positions] == ["KO.US"] and not first.positions

        peers.prices["KO.US"] = 66.0
        priced = engine.portfolio()
        assert priced.positions_value_base == filled.positions_value_base * 1.1

        peers.rates_["USD"] = 1.25
        rated = engine.portfolio()
        assert rated.positions_value_base == 660.0 / 1.25 and rated.total_value_base != priced.total_value_base

        engine.record_deposit(300.0, "EUR", "by-hand", START)
        account.trading.fund_paper_account(300.0, "EUR", "by-hand", START)
        account.trading.sync(START)
        account.sync(START)
        deposited = engine.portfolio()
        assert deposited.cash_base == rated.cash_base + 300.0

        peers.quote_day = "2024-03-05"  # the next day's quote, as the as-of moves on
        later = engine.portfolio()
        assert [p.valued.price_date for p in later.positions] == ["2024-03-05"]
    finally:
        account.close()


def test_a_snapshot_after_a_write_of_another_day_keeps_its_own_days(tmp_path):
    """The stored days, handed forward by each snapshot: the turnover's year and the daily P&L's
    baseline follow days written and replaced, as read from the store."""
    engine, peers, db = portfolio_engine(tmp_path)
    try:
        state = BrokerState([Holding("SAP.DE", 10, 50.0, "EUR")], {"EUR": 100.0}, START, [], [], None)
        engine.apply_broker_state(state, START)
        for day in range(3):
            engine.take_snapshot(START + timedelta(days=day))
        peers.prices["SAP.DE"] = 60.0
        engine.take_snapshot(START + timedelta(days=2, hours=1))  # the same day again: replaced
        pnl = engine.daily_pnl((START + timedelta(days=3)).date(), START + timedelta(days=3))
        assert pnl.baseline_total == 700.0 and pnl.baseline_date == (START + timedelta(days=2)).date()
        fresh = PortfolioEngine(db, peers, "EUR", 0, START)
        assert fresh.daily_pnl((START + timedelta(days=3)).date(), START + timedelta(days=3)) == pnl
    finally:
        db.close()


def test_a_plan_of_bonuses_only_asks_the_market_nothing_and_one_of_a_trade_does(tmp_path):
    account = Account(tmp_path)
    peers = account.peers
    try:
        account.trading.fund_paper_account(10_000.0, "USD", "seed", START)
        account.fill("KO.US", "BUY", 100, 60.0, START)
        account.trading.sync(START)
        account.sync(START)
        account.portfolio.take_snapshot(START)
        for day, per_share in ((1, 0.5), (2, 5.0)):  # 50 USD: a bonus; then 500 more: a trade's worth
            now = START + timedelta(days=day)
            account.broker.pay_dividends([DividendPerShare("KO.US", now.date(), per_share)], now)
            account.trading.sync(now)
            account.sync(now)
            peers.calls.clear()
            plan = account.portfolio.plan_reinvestment(now)
            if day == 1:
                assert [b.symbol for b in plan.bonuses] == ["KO.US"] and plan.bonuses[0].bonus is not None
                assert not {"ListSecurities", "GetQuotes", "GetDividends"} & set(peers.calls)
                assert account.portfolio.plan_reinvestment(now) == plan  # again: the same, nothing written
        assert {"ListSecurities", "GetQuotes", "GetDividends"} <= set(peers.calls)
        assert not plan.bonuses and (plan.buys or plan.pooled_ids)
    finally:
        account.close()


def test_the_allocation_state_follows_the_universe_and_the_targets(tmp_path):
    engine, peers, db = portfolio_engine(tmp_path)
    book = AllocationBook(db, peers)
    try:
        first = book.state()
        assert book.state() == first
        del peers.prices["ULVR.L"]  # the universe changed
        smaller = book.state()
        assert [s.symbol for s in smaller.securities] == ["AAPL.US", "KO.US", "SAP.DE"]
        groups = [g.name for g in smaller.country_groups]
        targeted = book.set_targets([(groups[0], 1.0)], [])
        assert book.state() == targeted and targeted.allocations_hash != smaller.allocations_hash
    finally:
        db.close()


def test_a_state_is_handed_forward_only_when_no_other_transaction_wrote_its_tables_meanwhile(tmp_path):
    db = store.open_database(f"sqlite:///{tmp_path / 'p.db'}")
    kept: KeptState[str] = KeptState(db.revisions, (store.CashRow.__tablename__,))
    try:
        before = kept.revisions()
        with db.transaction() as session:
            store.replace_broker_state(session, [], {"EUR": 1.0}, START)
            written = written_tables(session)
        kept.handed_forward(before, written, "one euro")
        assert kept.current() == "one euro"

        before = kept.revisions()
        with db.transaction() as session:
            store.replace_broker_state(session, [], {"EUR": 2.0}, START)
            written = written_tables(session)
        with db.transaction() as session:  # another writer commits before the hand-over
            store.replace_broker_state(session, [], {"EUR": 3.0}, START)
        kept.handed_forward(before, written, "two euros")
        assert kept.current() is None
        with db.transaction() as session:
            assert kept.read(session, store.cash) == {"EUR": 3.0}
            assert kept.current() == {"EUR": 3.0}
            store.replace_broker_state(session, [], {"EUR": 4.0}, START)
            assert kept.read(session, store.cash) == {"EUR": 4.0}  # its own write: read, not kept
        assert kept.current() is None
    finally:
        db.close()



def test_the_net_deposits_follow_each_deposit_and_leave_out_one_later_than_the_snapshot(tmp_path):
    """A snapshot's net deposits, kept until the cash flows change: a deposit recorded since
    counts, one that occurred after the snapshot's instant does not (the sum up to that instant)."""
    engine, peers, db = portfolio_engine(tmp_path)
    try:
        engine.apply_broker_state(BrokerState([], {"EUR": 1_500.0}, START, [], [], None), START)
        engine.record_deposit(1_000.0, "EUR", "first", START)
        assert engine.take_snapshot(START + timedelta(days=1))[0].net_deposits_base == 1_000.0
        assert engine.take_snapshot(START + timedelta(days=2))[0].net_deposits_base == 1_000.0  # kept
        engine.record_deposit(500.0, "EUR", "later", START + timedelta(days=5))
        assert engine.take_snapshot(START + timedelta(days=3))[0].net_deposits_base == 1_000.0  # not yet
        assert engine.take_snapshot(START + timedelta(days=4))[0].net_deposits_base == 1_000.0
        assert engine.take_snapshot(START + timedelta(days=5))[0].net_deposits_base == 1_500.0
        fresh = PortfolioEngine(db, peers, "EUR", 0, START)
        assert fresh.take_snapshot(START + timedelta(days=4))[0].net_deposits_base == 1_000.0
    finally:
        db.close()


def test_a_day_appended_to_the_snapshot_days_is_what_sorting_them_again_gives():
    from datetime import date, datetime

    from services.portfolio.snapshots import SnapshotDays, StoredDay

    def day(n: int, total: float = 1.0) -> StoredDay:
        return StoredDay(date(2024, 1, 1) + timedelta(days=n), total, datetime(2024, 1, 1) + timedelta(days=n))

    def listed(days: SnapshotDays) -> list[StoredDay]:
        return days.between(date.min, date.max)

    days = SnapshotDays([day(3), day(1), day(2)])
    for stored, cutoff in ((day(4), None), (day(9), day(1).day), (day(2, 7.0), None), (day(0), None),
                           (day(5), day(2).day), (day(1, 3.0), day(0).day)):
        expected = sorted([d for d in listed(days) if d.day != stored.day and (cutoff is None or d.day >= cutoff)]
                          + [stored], key=lambda d: d.day)
        assert listed(days.with_day(stored, cutoff)) == expected
        assert listed(SnapshotDays(listed(days)).with_day(stored, cutoff)) == expected
    assert listed(SnapshotDays(()).with_day(day(1), None)) == [day(1)]
    appended = days.with_day(day(4), None)
    assert day(4).day in appended and appended.last_before(day(4).day) == day(3) and listed(days) == [
        day(1), day(2), day(3)]  # the first one is unchanged


def test_an_unchanged_universe_is_the_same_list_and_a_changed_one_is_read_anew():
    from trader.data.v1 import data_pb2

    from services.portfolio.adapters.peers import Peers

    class Data:
        def __init__(self):
            self.securities = [data_pb2.Security(symbol="SAP.DE", currency="EUR", country="Germany", lot_size=1,
                                                 allow_buy=True, allow_sell=True)]

        def ListSecurities(self, request):
            return data_pb2.ListSecuritiesResponse(securities=self.securities)

    class Clients:
        def __init__(self):
            self.data = Data()

        def stub(self, service, stub_class):
            return self.data if service == "data" else None

    clients = Clients()
    peers = Peers(clients)
    first = peers.securities()
    assert peers.securities() is first and first[0].allow_buy
    clients.data.securities[0].allow_buy = False  # the owner changed a flag
    changed = peers.securities()
    assert changed is not first and not changed[0].allow_buy and first[0].allow_buy
    assert [s.symbol for s in changed] == ["SAP.DE"]


def test_a_clean_reconciliation_from_kept_values_sees_the_next_change_of_the_broker_cash(tmp_path):
    engine, peers, db = portfolio_engine(tmp_path)
    try:
        engine.apply_broker_state(BrokerState([], {"EUR": 1_000.0}, START, [], [], None), START)
        assert [c.action for c in engine.buckets.reconcile(START)[0]] == ["opening_balance"]
        assert [c.action for c in engine.buckets.reconcile(START)[0]] == ["ok"]  # kept: no transaction
        later = START + timedelta(days=1)
        engine.apply_broker_state(BrokerState([], {"EUR": 1_003.0}, later, [], [], None), later)
        assert [c.action for c in engine.buckets.reconcile(later)[0]] == ["corrected"]
        assert [c.action for c in engine.buckets.reconcile(later)[0]] == ["ok"]
        engine.apply_broker_state(BrokerState([], {"EUR": 1_500.0}, later, [], [], None), later)
        assert [c.action for c in engine.buckets.reconcile(later)[0]] == ["alert"]
        fresh = PortfolioEngine(db, peers, "EUR", 0, START)
        assert fresh.buckets.reconcile(later)[0] == engine.buckets.reconcile(later)[0]
    finally:
        db.close()


def test_the_buckets_external_flows_follow_each_deposit_and_leave_out_one_later_than_the_snapshot(tmp_path):
    """A snapshot's bucket flows are those since the previous snapshot: none (without a query)
    while no external transaction is later than it; a deposit recorded since counts once its
    instant is reached, and a fresh process stores the same figures."""
    engine, peers, db = portfolio_engine(tmp_path)

    def flows(day: int) -> float:
        with db.transaction() as session:
            return {r.date: r.flows_base for r in store.snapshot_buckets(session, "core")}[
                (START + timedelta(days=day)).date()]

    try:
        engine.apply_broker_state(BrokerState([], {"EUR": 1_500.0}, START, [], [], None), START)
        engine.record_deposit(1_000.0, "EUR", "first", START)
        for day in (1, 2):
            engine.take_snapshot(START + timedelta(days=day))
        engine.record_deposit(500.0, "EUR", "later", START + timedelta(days=5))
        for day in (3, 4, 5, 6):
            engine.take_snapshot(START + timedelta(days=day))
        assert [flows(day) for day in (1, 2, 3, 4, 5, 6)] == [1_000.0, 0.0, 0.0, 0.0, 500.0, 0.0]
        fresh = PortfolioEngine(db, peers, "EUR", 0, START)
        fresh.take_snapshot(START + timedelta(days=5, hours=1))  # the same day again, from the store alone
        assert flows(5) == 500.0
    finally:
        db.close()


def test_the_snapshot_records_have_the_columns_of_their_tables_in_order():
    """take_snapshot writes plain records by their field names: each has its table's columns."""
    for record, row in ((store.SnapshotRecord, store.SnapshotRow), (store.SnapshotBucketRecord,
                                                                    store.SnapshotBucketRow)):
        assert record._fields == tuple(c.key for c in row.__table__.columns)


def test_the_traded_value_follows_each_fill_into_and_out_of_the_turnover_window(tmp_path):
    """A snapshot's annual turnover sums the fills of the last year: the same figure while no fill
    is booked and none enters or leaves the window, a new one when one does (booked, or a year
    old), as a fresh process computes it."""
    engine, peers, db = portfolio_engine(tmp_path)

    def book(trade_id: str, quantity: int, at) -> None:
        fill = FillRecord(trade_id, "SAP.DE", "BUY", quantity, 50.0, "EUR", 0.0, at)
        engine.apply_broker_state(BrokerState([Holding("SAP.DE", quantity, 50.0, "EUR")], {"EUR": 1_000.0}, at,
                                              [fill], [], None), at)

    def turnover(day: int) -> tuple[float | None, float | None]:
        """(this process's figure, a fresh process's for the same instant: its first, queried)."""
        now = START + timedelta(days=day)
        kept = engine.take_snapshot(now)[0].annual_turnover
        return kept, PortfolioEngine(db, peers, "EUR", 0, START).take_snapshot(now)[0].annual_turnover

    try:
        book("T1", 10, START)
        figures = [turnover(day) for day in (1, 2)]
        book("T2", 20, START + timedelta(days=3))
        figures += [turnover(day) for day in (3, 4, 365, 366, 367, 368, 369)]
        assert all(kept == fresh for kept, fresh in figures)
        assert figures[6][0] is not None and figures[7][0] is None  # T1 left the window (day 365), then T2
    finally:
        db.close()
