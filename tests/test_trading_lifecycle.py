"""The order life cycle (orders.TRANSITIONS): every edge walked, legal ones succeed and illegal
ones raise without changing the order; every state but the final ones is resolved by a sync."""

from __future__ import annotations

import itertools

import pytest

from services.trading import orders, store
from services.trading.adapters.broker import Execution
from services.trading.engine import OrderEngine
from tests.test_trading_engine import START, intent, make_engine

LEGAL = {(a, b) for a, targets in orders.TRANSITIONS.items() for b in targets}
_ids = itertools.count()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    database = store.open_database(f"sqlite:///{tmp_path_factory.mktemp('lifecycle') / 'trading.db'}")
    yield database
    database.close()


def order_in(db, state: str) -> int:
    """A stored order put straight into `state` (the walk tests each edge on its own)."""
    with db.transaction() as session:
        row = store.add_order(session, intent(f"walk-{next(_ids)}"), "USD", START)
        row.state = state
        return row.id


@pytest.mark.parametrize(("current", "new"), list(itertools.product(orders.STATES, repeat=2)))
def test_every_edge_of_the_life_cycle(db, current, new):
    order_id = order_in(db, current)
    if (current, new) in LEGAL:
        assert orders.transition(current, new) == new
        with db.transaction() as session:
            store.set_state(session, order_id, new, "walked", START)
        with db.transaction() as session:
            assert session.get(store.OrderRow, order_id).state == new
            assert [(e.state, e.reason) for e in store.order_events(session, order_id)][-1] == (new, "walked")
    else:
        with pytest.raises(orders.IllegalTransition, match=f"from {current} to {new}"):
            orders.transition(current, new)
        with pytest.raises(orders.IllegalTransition), db.transaction() as session:
            store.set_state(session, order_id, new, "walked", START)
        with db.transaction() as session:  # nothing changed, no event recorded
            assert session.get(store.OrderRow, order_id).state == current
            assert [e.state for e in store.order_events(session, order_id)] == ["NEW"]


def test_final_states_have_no_way_out_and_every_other_state_reaches_one():
    assert all(not orders.TRANSITIONS[s] for s in orders.FINAL_STATES)
    for state in orders.OPEN_STATES:
        reached, frontier = set(), {state}
        while frontier:
            reached |= frontier
            frontier = {b for a in frontier for b in orders.TRANSITIONS[a]} - reached
        assert reached & orders.FINAL_STATES, state


@pytest.mark.parametrize(("state", "filled", "open_at_broker"),
                         list(itertools.product(orders.STATES, (0, 4), (False, True))))
def test_every_resolution_is_a_legal_move_and_a_closed_order_ends_final(state, filled, open_at_broker):
    if filled and state in (orders.NEW, orders.SUBMITTED, orders.UNKNOWN_OUTCOME):
        return  # fills move an order to PARTIALLY_FILLED first (store.record_execution)
    move = orders.resolution(state, filled, 10, open_at_broker)
    if state in orders.FINAL_STATES:
        assert move is None
        return
    if move is not None:
        orders.transition(state, move[0])
    if not open_at_broker:  # the broker is done with it: so is the order
        assert move is not None and move[0] in orders.FINAL_STATES and move[1]


def put_in(engine, broker, db, state: str) -> str:
    """An order in `state` by the engine's own paths (PARTIALLY_FILLED: a fill of 4 of 10 that
    the broker then no longer has open)."""
    cid = f"resolve-{state}"
    with db.transaction() as session:
        row = store.add_order(session, intent(cid), "USD", START)
        row.limit_price = 105.0
        path = {orders.NEW: [], orders.SUBMITTED: [orders.SUBMITTED],
                orders.UNKNOWN_OUTCOME: [orders.SUBMITTED, orders.UNKNOWN_OUTCOME],
                orders.PARTIALLY_FILLED: [orders.SUBMITTED]}[state]
        for step in path:
            store.set_state(session, row.id, step, "", START)
        if state == orders.PARTIALLY_FILLED:
            store.record_execution(session, Execution("T-1", cid, "AAPL.US", "BUY", 4, 100.0, "USD", 2.0, START),
                                   START)
            assert row.state == orders.PARTIALLY_FILLED and row.filled_quantity == 4
    return cid


@pytest.mark.parametrize("state", orders.OPEN_STATES)
def test_every_open_state_is_resolved_by_a_sync(tmp_path, state):
    engine, broker, reads, db = make_engine(tmp_path)
    cid = put_in(engine, broker, db, state)
    OrderEngine("replay", db, broker, reads).sync(START + orders.ACTIVE_LIST_GRACE)  # as at start-up
    with db.transaction() as session:
        order = store.find_order(session, cid)
        assert order.state in orders.FINAL_STATES and order.reason, (order.state, order.reason)
        if state == orders.PARTIALLY_FILLED:
            assert (order.state, order.filled_quantity) == (orders.CANCELLED, 4)
        assert store.open_orders(session) == []
