"""The portfolio's engine with scripted peers, and an account that joins it to the real trading
ledger and paper broker through the same hand-off the cycle uses (trading's SyncBroker reply ->
gateway/book.py -> the portfolio servicer's request parsing -> ApplyBrokerState)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from trader.portfolio.v1 import portfolio_pb2

from gateway import book
from services.common import clock
from services.portfolio import store as portfolio_store
from services.portfolio.adapters.peers import DividendPerShare, Rates, Security
from services.portfolio.engine import PortfolioEngine
from services.portfolio.server import broker_state_from_proto
from services.portfolio.valuation import Quote
from services.trading import orders
from services.trading import store as trading_store
from services.trading.adapters.broker import DividendPerShare as BrokerDividend
from services.trading.adapters.broker import MarketOrder
from services.trading.adapters.paper_broker import PaperBroker
from services.trading.engine import OrderEngine
from services.trading.server import TradingServicer
from tests.helpers import make_config

START = datetime(2024, 3, 4, 22, 0, tzinfo=UTC)
RATES = {"USD": 1.10, "GBP": 0.85}
CURRENCIES = {"AAPL.US": "USD", "KO.US": "USD", "SAP.DE": "EUR", "ULVR.L": "GBP"}
COUNTRIES = {"AAPL.US": "United States", "KO.US": "United States", "SAP.DE": "Germany", "ULVR.L": "United Kingdom"}
INDUSTRIES = {"AAPL.US": "Consumer Electronics", "KO.US": "Beverages", "SAP.DE": "Software",
              "ULVR.L": "Household Products"}


@dataclass
class FakePeers:
    """The data service and the display, scripted."""

    prices: dict[str, float] = field(default_factory=lambda: {"AAPL.US": 100.0, "KO.US": 60.0, "SAP.DE": 50.0,
                                                              "ULVR.L": 40.0})
    rates_: dict[str, float] = field(default_factory=lambda: dict(RATES))
    buckets: dict[str, str] = field(default_factory=dict)
    per_share: list[DividendPerShare] = field(default_factory=list)
    quote_day: str = "2024-03-04"
    alerts: list[tuple[str, str]] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)  # calls that raise, as when the service is down
    as_of: list = field(default_factory=list)       # the as-of time each call ran at

    def _call(self, name: str) -> None:
        self.calls.append(name)
        self.as_of.append(clock.as_of())
        if name in self.failing:
            raise ConnectionError(f"{name}: the service is down")

    def securities(self) -> list[Security]:
        self._call("ListSecurities")
        return [Security(s, CURRENCIES[s], COUNTRIES[s], "Sector " + INDUSTRIES[s][:3], INDUSTRIES[s],
                         self.buckets.get(s, "core"), 1, True, True, None, None) for s in sorted(self.prices)]

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        if symbols:
            self._call("GetQuotes")
        return {s: Quote(self.prices[s], CURRENCIES[s], self.quote_day) for s in symbols if s in self.prices}

    def rates(self) -> Rates:
        self._call("GetFxRates")
        return Rates("EUR", dict(self.rates_))

    def dividends(self, symbols, start, end) -> list[DividendPerShare]:
        self._call("GetDividends")
        return [d for d in self.per_share if d.symbol in symbols and start <= d.day <= end]

    def post_alert(self, source: str, text: str) -> bool:
        self.alerts.append((source, text))
        return True

    def clear_alert(self, source: str) -> bool:
        if "ClearMessage" in self.failing:
            return False
        self.cleared.append(source)
        return True


def portfolio_engine(tmp_path, peers: FakePeers | None = None, name: str = "portfolio.db",
                     retention_days: int = 0) -> tuple[PortfolioEngine, FakePeers, object]:
    db = portfolio_store.open_database(f"sqlite:///{tmp_path / name}")
    peers = peers or FakePeers()
    return PortfolioEngine(db, peers, "EUR", retention_days, START), peers, db


@dataclass
class _Reads:
    """Trading's reads of the other services, as the fake peers answer them."""

    peers: FakePeers

    def rates(self):
        return "EUR", dict(self.peers.rates_)

    def daily_pnl(self, today: date):
        return False, None

    def dividends(self, symbols, start, end):
        return [BrokerDividend(d.symbol, d.day, d.amount) for d in self.peers.per_share
                if d.symbol in symbols and start <= d.day <= end]


class Account:
    """A paper account: the trading ledger and broker, and the portfolio that books them."""

    def __init__(self, directory, peers: FakePeers | None = None):
        self.trading_db = trading_store.open_database(f"sqlite:///{directory / 'trading.db'}")
        self.broker = PaperBroker(self.trading_db, lambda value, currency: orders.commission(value, currency, "EUR",
                                                                                             RATES))
        self.portfolio, self.peers, self.portfolio_db = portfolio_engine(directory, peers)
        self.trading = OrderEngine("replay", self.trading_db, self.broker, _Reads(self.peers))
        self.trading.reconcile()
        self.trading_servicer = TradingServicer(make_config("trading", token=None), self.trading_db, self.trading)
        self._orders = 0

    def close(self) -> None:
        self.trading_db.close()
        self.portfolio_db.close()

    def fill(self, symbol: str, side: str, quantity: int, price: float, now: datetime, bucket: str = "core"):
        """An order as trading stores it, filled by the paper broker (its fee charged)."""
        self._orders += 1
        cid = f"order-{self._orders}"
        currency = CURRENCIES[symbol]
        with self.trading_db.transaction() as session:
            trading_store.add_order(session, orders.validate_intent(cid, symbol, side, quantity, "test"), currency,
                                    now, bucket)
        limit = price * (1.05 if side == "BUY" else 0.95)
        return self.broker.place_market_order(MarketOrder(cid, symbol, side, quantity, currency, price, limit), now)

    def sync(self, now: datetime, cursor: portfolio_pb2.LedgerCursor | None = None):
        """One cycle's sync step: the portfolio's cursor -> SyncBroker -> ApplyBrokerState."""
        if cursor is None:
            trade_id, movement_id = self.portfolio.ledger_cursor()
            cursor = portfolio_pb2.LedgerCursor(trade_id=trade_id, cash_movement_id=movement_id)
        with clock.use_as_of(now):
            reply = self.trading_servicer.SyncBroker(book.sync_request(cursor), None)
            return self.portfolio.apply_broker_state(broker_state_from_proto(book.apply_request(reply)), now)
