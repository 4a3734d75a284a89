"""What SQLite forgives and PostgreSQL enforces behaves the same on both: the contract's int64
quantities fit their columns, and text longer than a column is refused as bad input before it
reaches the store (not a database error answered INTERNAL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidArgument
from services.data import store as data_store
from services.data.universe import MAX_LENGTHS, Security, validate_security
from services.portfolio import store as portfolio_store
from services.portfolio.valuation import Holding
from services.trading import store as trading_store
from services.trading.orders import OrderIntent

NOW = datetime(2018, 1, 3, 22, tzinfo=UTC)
BEYOND_32_BITS = 3_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request, tmp_path):
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name}.db"
    return request.getfixturevalue("postgres").create_database


def test_int64_quantities_are_stored_on_every_backend(new_url):
    """SubmitOrder records the intent before the risk check refuses it: a quantity past 32 bits
    must be stored (then REJECTED by a rule), as SQLite always did."""
    trading = trading_store.open_database(new_url("trading"))
    portfolio = portfolio_store.open_database(new_url("portfolio"))
    data = data_store.open_database(new_url("data"))
    try:
        with trading.transaction() as session:
            trading_store.add_order(session, OrderIntent("huge", "AAPL.US", "BUY", BEYOND_32_BITS, "test"), "USD", NOW)
        with trading.transaction() as session:
            assert trading_store.find_order(session, "huge").quantity == BEYOND_32_BITS
        with portfolio.transaction() as session:
            portfolio_store.replace_broker_state(session, [Holding("AAPL.US", BEYOND_32_BITS, 1.0, "USD")], {}, NOW)
        with portfolio.transaction() as session:
            assert portfolio_store.holdings(session)[0].quantity == BEYOND_32_BITS
        with data.transaction() as session:
            data_store.save_security(session, Security("AAPL.US", "Apple", "USD", "XNAS", "", "", "",
                                                       lot_size=BEYOND_32_BITS))
        with data.transaction() as session:
            assert data_store.find_security(session, "AAPL.US").lot_size == BEYOND_32_BITS
    finally:
        for db in (trading, portfolio, data):
            db.close()


@pytest.mark.parametrize("field", sorted(MAX_LENGTHS))
def test_security_text_longer_than_its_column_is_invalid_argument(field):
    assert data_store.SecurityRow.__table__.c[field].type.length == MAX_LENGTHS[field]
    security = Security("AAPL.US", "Apple", "USD", "XNAS", "", "", "")
    validate_security(Security(**{**security.__dict__, field: "x" * MAX_LENGTHS[field]}))
    with pytest.raises(InvalidArgument) as caught:
        validate_security(Security(**{**security.__dict__, field: "x" * (MAX_LENGTHS[field] + 1)}))
    assert caught.value.field == f"security.{field}"
