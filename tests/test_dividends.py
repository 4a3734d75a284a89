"""Dividends end to end (issue 12 item 4): the data service's history (Yahoo's dividend CSV,
yfinance's actions, the provider at sync; no lookahead), the paper broker paying the shares held
before the ex-date, the portfolio's record per dividend and the reinvestment rule, marked
reinvested only when the BUY fills."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from trader.data.v1 import data_pb2

from services.common import clock
from services.common.errors import InvalidArgument, NotFound
from services.data.adapters.dividend_csv import parse_dividend_csv
from services.data.adapters.sample_history import load_sample_history
from services.portfolio import dividends, store
from services.portfolio.adapters.peers import DividendPerShare
from services.trading import orders
from services.trading import store as trading_store
from services.trading.adapters.broker import DividendPerShare as BrokerDividend
from services.trading.adapters.broker import MarketOrder
from tests.data_fixtures import FakeProvider, make_servicer, random_walk, security
from tests.portfolio_fixtures import START, Account, FakePeers
from tests.test_data_yfinance import FakeDownload, frame, provider

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def call(method, request, now=NOW):
    with clock.use_as_of(now):
        return method(request, None)


# --- the data service ---

def test_imported_dividends_are_read_back_batched_and_never_ahead_of_now(tmp_path):
    servicer, _, _ = make_servicer(tmp_path, FakeProvider(), [security("KO.US"), security("PEP.US")])
    csv = "Date,Dividends\n2024-03-14,0.485\n2024-06-13,0.485\n2024-09-13,0.485\n"
    reply = call(servicer.ImportDividends, data_pb2.ImportDividendsRequest(symbol="KO.US", csv=csv))
    assert (reply.added, reply.updated, reply.unchanged) == (3, 0, 0)
    again = call(servicer.ImportDividends, data_pb2.ImportDividendsRequest(symbol="KO.US", csv=csv))
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    call(servicer.ImportDividends, data_pb2.ImportDividendsRequest(symbol="PEP.US",
                                                                   csv="Date,Dividends\n2024-03-01,1.265\n"))
    both = call(servicer.GetDividends, data_pb2.GetDividendsRequest(symbols=["PEP.US", "KO.US"]))
    assert [(d.symbol, d.date, d.amount, d.currency, d.source) for d in both.dividends] == [
        ("KO.US", "2024-03-14", 0.485, "USD", "import"), ("KO.US", "2024-06-13", 0.485, "USD", "import"),
        ("KO.US", "2024-09-13", 0.485, "USD", "import"), ("PEP.US", "2024-03-01", 1.265, "USD", "import")]
    as_of = call(servicer.GetDividends, data_pb2.GetDividendsRequest(symbols=["KO.US"]),
                 now=datetime(2024, 6, 12, 22, tzinfo=UTC))
    assert [d.date for d in as_of.dividends] == ["2024-03-14"]  # June's ex-date is not known yet
    window = call(servicer.GetDividends, data_pb2.GetDividendsRequest(start="2024-04-01", end="2024-08-01"))
    assert [(d.symbol, d.date) for d in window.dividends] == [("KO.US", "2024-06-13")]


@pytest.mark.parametrize(("request_", "error", "field"), [
    (data_pb2.GetDividendsRequest(symbols=["NOPE.US"]), NotFound, None),
    (data_pb2.GetDividendsRequest(symbols=[""]), InvalidArgument, "symbols[0]"),
    (data_pb2.GetDividendsRequest(start="2024-05-01", end="2024-04-01"), InvalidArgument, "start"),
    (data_pb2.GetDividendsRequest(start="May"), InvalidArgument, "start"),
])
def test_bad_dividend_reads_are_refused(tmp_path, request_, error, field):
    servicer, _, _ = make_servicer(tmp_path, FakeProvider(), [security("KO.US")])
    with pytest.raises(error) as refused:
        call(servicer.GetDividends, request_)
    assert field is None or refused.value.field == field


@pytest.mark.parametrize("text", ["Date,Close\n2024-01-02,1\n", "Date,Dividends\n2024-01-02,-1\n",
                                  "Date,Dividends\n2024-01-02,nan\n", "Date,Dividends\n2024-01-02,1\n2024-01-02,2\n",
                                  "Date,Dividends\n02/01/2024,1\n", "Date,Dividends\n", "Date,Dividends\n2024-01-02\n"])
def test_a_bad_dividend_file_is_refused_naming_the_csv(text):
    with pytest.raises(InvalidArgument) as refused:
        parse_dividend_csv(text)
    assert refused.value.field == "csv"


def test_a_sync_stores_the_provider_dividends(tmp_path):
    bars = random_walk(30, start=date(2024, 1, 2))
    fake = FakeProvider(bars={"KO.US": bars[:20]}, dividends_={"KO.US": [(bars[25].date, 0.5)]})
    servicer, _, _ = make_servicer(tmp_path, fake, [security("KO.US")])
    fake.bars["KO.US"] = bars
    call(servicer.SyncPrices, data_pb2.SyncPricesRequest(), now=datetime(2024, 3, 1, tzinfo=UTC))
    reply = call(servicer.GetDividends, data_pb2.GetDividendsRequest(symbols=["KO.US"]))
    assert [(d.date, d.amount, d.source) for d in reply.dividends] == [(bars[25].date.isoformat(), 0.5, "fake")]


def test_yfinance_dividends_come_from_the_same_download_as_the_bars():
    prices = frame({"KO": [60.0, 61.0, 62.0], "PEP": [170.0, 171.0, 172.0]})
    prices[("KO", "Dividends")] = [0.0, 0.485, 0.0]
    prices[("PEP", "Dividends")] = [0.0, 0.0, 0.0]
    fake = FakeDownload(prices)
    yf = provider(fake)
    securities = [security("KO.US"), security("PEP.US")]
    bars = yf.daily_bars(securities, date(2024, 1, 1), date(2024, 1, 4))
    paid = yf.dividends(securities, date(2024, 1, 1), date(2024, 1, 4))
    assert len(fake.calls) == 1 and fake.calls[0][1]["actions"] is True
    assert len(bars["KO.US"]) == 3 and paid == {"KO.US": [(date(2024, 1, 3), 0.485)], "PEP.US": []}
    yf.dividends(securities, date(2024, 1, 1), date(2024, 1, 4))
    assert len(fake.calls) == 2  # the download is reused once, never kept as a stale answer


def test_the_bundled_sample_pays_no_dividends():
    sample = load_sample_history()
    assert sample.dividends(sample.securities, None, date(2022, 12, 31)) == {}


# --- the paper broker, through trading's sync ---

def test_the_paper_broker_pays_the_shares_held_before_the_ex_date_once(tmp_path):
    peers = FakePeers()
    account = Account(tmp_path, peers)
    try:
        account.trading.fund_paper_account(10_000.0, "USD", "seed", START)
        account.fill("KO.US", "BUY", 100, 60.0, START)
        account.fill("KO.US", "BUY", 50, 60.0, START + timedelta(days=2))  # on the ex-date: not entitled
        ex_date = (START + timedelta(days=2)).date()
        peers.per_share = [DividendPerShare("KO.US", ex_date, 0.485),
                           DividendPerShare("KO.US", ex_date + timedelta(days=90), 0.485)]  # in the future
        before = account.broker.account().cash["USD"]
        for day in (2, 3):
            account.trading.sync(START + timedelta(days=day))
        assert account.broker.account().cash["USD"] == pytest.approx(before + 48.5)
        result = account.sync(START + timedelta(days=3))
        assert not result.cash_differences
        with account.portfolio_db.transaction() as session:
            rows = store.dividends(session, 10)
        assert [(d.symbol, d.amount, d.currency, d.pay_date, d.status) for d in rows] == [
            ("KO.US", 48.5, "USD", ex_date, "received")]
    finally:
        account.close()


# --- the reinvestment rule ---

FACTS = {
    "KO.US": dividends.SecurityFacts(60.0, "USD", 1, 0.031, 6000.0, 1.10),   # yield >= 3%: same security
    "AAPL.US": dividends.SecurityFacts(180.0, "USD", 1, 0.005, 9000.0, 1.10),  # below 3%: pooled
    "SAP.DE": dividends.SecurityFacts(120.0, "EUR", 1, None, 3000.0, 1.0),      # unknown yield: pooled
    "ULVR.L": dividends.SecurityFacts(40.0, "GBP", 10, 0.04, 2000.0, 0.85),
}


def test_the_rule_per_symbol():
    """KO 300 EUR at 3.1%: BUY int(300 * 1.10 / 60) = 5; AAPL 260 at 0.5% and SAP 400 unknown:
    pooled (660); ULVR 100: below 250, a bonus of 100 / 2000 = 0.05; ULVR's lot of 10 would
    round a 260 sum (260 * 0.85 / 40 = 5.5 shares) up to one lot."""
    open_ = [dividends.OpenDividend(1, "KO.US", 120.0), dividends.OpenDividend(2, "KO.US", 180.0),
             dividends.OpenDividend(3, "AAPL.US", 260.0), dividends.OpenDividend(4, "SAP.DE", 400.0),
             dividends.OpenDividend(5, "ULVR.L", 100.0)]
    plan = dividends.plan(open_, FACTS)
    assert [(b.symbol, b.quantity, b.dividend_ids, b.amount_base) for b in plan.buys] == [
        ("KO.US", 5, (1, 2), 300.0)]
    assert plan.buys[0].client_order_id == dividends.reinvest_client_order_id("KO.US", [2, 1])
    assert sorted(plan.pooled_ids) == [3, 4] and plan.pooled_base == 660.0
    assert [(b.symbol, b.amount_base, b.bonus) for b in plan.bonuses] == [("ULVR.L", 100.0, 0.05)]
    lot = dividends.plan([dividends.OpenDividend(6, "ULVR.L", 260.0)], FACTS)
    assert lot.buys[0].quantity == 10
    assert dividends.MIN_TRADE_BASE == pytest.approx(250.0)


def test_trailing_yield_counts_the_last_365_days_and_is_unknown_without_any():
    paid = [(date(2023, 12, 1), 0.4), (date(2024, 3, 1), 0.5), (date(2024, 9, 1), 0.5)]
    assert dividends.trailing_yield(paid, 50.0, date(2024, 11, 30)) == pytest.approx(1.0 / 50)
    assert dividends.trailing_yield(paid, 50.0, date(2026, 1, 1)) is None
    assert dividends.trailing_yield(paid, None, date(2024, 11, 30)) is None


def test_a_dividend_is_reinvested_only_when_its_buy_fills(tmp_path):
    """KO.US pays 5.50 USD per share on 100 shares (550 USD = 500 EUR) with a trailing yield of
    5.5/60 = 9%: the plan is a BUY of int(550 / 60) = 9 KO.US under a drip- client order id;
    the dividend is `assigned` until that BUY's fill arrives, then `reinvested`."""
    peers = FakePeers(prices={"KO.US": 60.0, "AAPL.US": 100.0, "SAP.DE": 50.0, "ULVR.L": 40.0})
    account = Account(tmp_path, peers)
    try:
        account.trading.fund_paper_account(10_000.0, "USD", "seed", START)
        account.fill("KO.US", "BUY", 100, 60.0, START)
        ex = START + timedelta(days=1)
        peers.per_share = [DividendPerShare("KO.US", ex.date(), 5.5)]
        account.trading.sync(ex)
        account.sync(ex)
        account.portfolio.take_snapshot(ex)
        plan = account.portfolio.plan_reinvestment(ex)
        assert [(b.symbol, b.quantity) for b in plan.buys] == [("KO.US", 9)] and not plan.pooled_ids
        cid = plan.buys[0].client_order_id
        assert cid.startswith("drip-") and account.portfolio.plan_reinvestment(ex).buys[0].client_order_id == cid
        with account.portfolio_db.transaction() as session:
            assert [d.status for d in store.dividends(session, 10)] == ["assigned"]
        later = ex + timedelta(days=1)
        with account.trading_db.transaction() as session:
            trading_store.add_order(session, orders.validate_intent(cid, "KO.US", "BUY", 9, "drip"), "USD", later)
        account.broker.place_market_order(MarketOrder(cid, "KO.US", "BUY", 9, "USD", 60.0, 63.0), later)
        account.trading.sync(later)
        account.sync(later)
        with account.portfolio_db.transaction() as session:
            row = store.dividends(session, 10)[0]
        assert (row.status, row.reinvested_at, row.reinvest_client_order_id) == ("reinvested", later, cid)
        assert account.portfolio.plan_reinvestment(later).buys == []
    finally:
        account.close()


def test_small_sums_wait_as_a_bonus_the_optimiser_reads(tmp_path):
    peers = FakePeers()
    account = Account(tmp_path, peers)
    try:
        account.trading.fund_paper_account(10_000.0, "USD", "seed", START)
        account.fill("KO.US", "BUY", 100, 60.0, START)
        ex = START + timedelta(days=1)
        account.broker.pay_dividends([BrokerDividend("KO.US", ex.date(), 0.485)], ex)
        account.trading.sync(ex)
        account.sync(ex)
        account.portfolio.take_snapshot(ex)
        plan = account.portfolio.plan_reinvestment(ex)
        assert plan.buys == [] and [b.symbol for b in plan.bonuses] == ["KO.US"]
        bonuses = account.portfolio.pending_bonuses([])
        assert [(b.symbol, round(b.amount_base, 2)) for b in bonuses] == [("KO.US", round(48.5 / 1.10, 2))]
        assert bonuses[0].bonus == pytest.approx((48.5 / 1.10) / (100 * 60.0 / 1.10))
        assert account.portfolio.pending_bonuses(["AAPL.US"]) == []
    finally:
        account.close()


def test_pooled_dividends_are_reinvested_by_the_next_buy(tmp_path):
    peers = FakePeers(prices={"KO.US": 60.0, "AAPL.US": 100.0, "SAP.DE": 50.0, "ULVR.L": 40.0})
    account = Account(tmp_path, peers)
    try:
        account.trading.fund_paper_account(20_000.0, "USD", "seed", START)
        account.fill("AAPL.US", "BUY", 100, 100.0, START)
        ex = START + timedelta(days=1)
        account.broker.pay_dividends([BrokerDividend("AAPL.US", ex.date(), 3.0)], ex)  # 300 USD, no history
        account.trading.sync(ex)
        account.sync(ex)
        plan = account.portfolio.plan_reinvestment(ex)
        assert plan.buys == [] and len(plan.pooled_ids) == 1 and "yield unknown" in plan.notes[0]
        later = ex + timedelta(days=1)
        account.fill("KO.US", "BUY", 5, 60.0, later)
        account.trading.sync(later)
        account.sync(later)
        with account.portfolio_db.transaction() as session:
            assert [(d.status, d.reinvested_at) for d in store.dividends(session, 10)] == [("reinvested", later)]
    finally:
        account.close()
