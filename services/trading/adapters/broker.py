"""The broker interface every adapter implements (the paper broker and Tradernet).

An adapter raises BrokerRejected when the broker refused something (nothing happened), and
Unavailable (or a connection error) when the answer could not be had (anything may have)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol


class BrokerRejected(Exception):
    """The broker refused the order; nothing was executed."""


@dataclass(frozen=True)
class Execution:
    broker_trade_id: str
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    price: float
    currency: str
    commission: float
    executed_at: datetime


@dataclass(frozen=True)
class CashMovement:
    """Money in or out of the account other than trades: deposits, withdrawals, conversions,
    dividends."""

    broker_id: str
    kind: str          # deposit, withdrawal, dividend, conversion_out, conversion_in, ...
    amount: float      # signed: + in, - out
    currency: str
    at: datetime
    description: str = ""
    symbol: str = ""     # the security of a dividend, coupon or tax
    reference: str = ""  # the caller's reference of a deposit or conversion


@dataclass(frozen=True)
class DividendPerShare:
    """A security's dividend from the market-data history (paid by the paper broker)."""

    symbol: str
    ex_date: date
    amount: float  # per share, in the security's currency


@dataclass(frozen=True)
class BrokerPosition:
    symbol: str
    quantity: int
    average_cost: float
    currency: str


@dataclass(frozen=True)
class Account:
    positions: list[BrokerPosition]
    cash: dict[str, float]


@dataclass(frozen=True)
class MarketOrder:
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    currency: str
    reference_price: float  # the quote the checks used
    limit_price: float      # the worst acceptable price (reference +- the price band)
    # The exchange's session the order is placed in (the next one while the market is closed):
    # its date and close, from the market data; None when unknown.
    session_date: date | None = None
    session_close: datetime | None = None


class Broker(Protocol):
    name: str
    converts_currency: bool  # `convert` works: a foreign BUY may convert its missing amount first
    takes_deposits: bool     # `deposit` works (the paper account); a live account is funded by bank
    pays_dividends: bool     # `pay_dividends` pays the market data's dividends (the paper account)

    def account(self) -> Account: ...

    def place_market_order(self, order: MarketOrder, now: datetime) -> Execution | None:
        """The execution, or None when the broker accepted the order to fill it later."""
        ...

    def settle(self, now: datetime) -> int:
        """Let the broker work its open orders up to `now` (the paper broker executes its
        market-on-close orders whose session has closed); returns how many executed. A live
        broker works its orders itself: nothing to do."""
        ...

    def find_execution(self, client_order_id: str) -> Execution | None: ...

    def closed_reason(self, client_order_id: str) -> str:
        """Why the broker closed an order without filling it all (expired, cancelled), when it
        says; "" otherwise."""
        ...

    def executions(self, since: datetime | None = None) -> list[Execution]:
        """The account's fills, those executed at or after `since` at least (a broker may
        return more: the caller records each once by its broker trade id)."""
        ...

    def cash_movements(self, since: datetime | None = None) -> list[CashMovement]:
        """Money in and out other than trades, those at or after `since` at least (as executions)."""
        ...

    def open_order_ids(self) -> set[str]:
        """Ids (client order ids or their broker references) of orders the broker still has open."""
        ...

    def cancel(self, client_order_id: str) -> bool:
        """Cancel an open order; False when the broker has no such open order. BrokerRejected
        when the broker refuses to cancel it."""
        ...

    def deposit(self, amount: float, currency: str, reference: str, now: datetime) -> bool: ...

    def convert(self, from_currency: str, from_amount: float, to_currency: str, to_amount: float,
                reference: str, now: datetime) -> None:
        """Exchange currency once per reference; BrokerRejected when the broker refuses."""
        ...
