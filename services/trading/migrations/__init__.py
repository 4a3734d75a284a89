"""Migrations of the trading database (the ledger and the paper broker's account): Alembic
revisions in versions/ (the first one is the baseline, the schema as schema_info version 4 left
it), and the steps that brought databases from before Alembic to that version."""

from sqlalchemy import text

from services.trading.orders import broker_reference


def _v1_to_v2(connection) -> None:
    for statement in (
        "ALTER TABLE orders ADD COLUMN filled_quantity INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE orders ADD COLUMN limit_price FLOAT NOT NULL DEFAULT 0",
        "ALTER TABLE orders ADD COLUMN realized_pnl FLOAT NOT NULL DEFAULT 0",
        "ALTER TABLE trades ADD COLUMN realized_pnl FLOAT",
        "UPDATE orders SET filled_quantity = quantity WHERE state = 'FILLED'",
    ):
        connection.execute(text(statement))


def _v2_to_v3(connection) -> None:
    connection.execute(text("ALTER TABLE orders ADD COLUMN broker_reference VARCHAR(20) NOT NULL DEFAULT ''"))
    for order_id, client_order_id in connection.execute(text("SELECT id, client_order_id FROM orders")).all():
        connection.execute(text("UPDATE orders SET broker_reference = :ref WHERE id = :id"),
                           {"ref": broker_reference(client_order_id), "id": order_id})


# schema_info version -> the step to the next version. Version 4 only added the cash_movements
# table, which the baseline revision creates when it is missing.
LEGACY_STEPS = {1: _v1_to_v2, 2: _v2_to_v3, 3: lambda connection: None}
