"""ApplyChanges (several changes in one call, all or nothing) and the display's kept state: what
is shown follows every change, a change writes what it changes, and a restart reads it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from trader.display.v1 import display_pb2, display_pb2_grpc

from services.display import pools, store
from services.display.controller import Clear, DisplayController, Post, Settings
from services.display.server import MAX_CHANGES, DisplayServicer
from tests.helpers import TOKEN, make_config, serving

AUTH = [("authorization", f"Bearer {TOKEN}")]


def now() -> datetime:
    return datetime.now(UTC)


def statements(db) -> list[str]:
    """Records the SQL statements run on `db` from now on."""
    from sqlalchemy import event

    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: seen.append(sql.split()[0]))
    return seen


@pytest.fixture
def controller(tmp_path):
    url = f"sqlite:///{tmp_path / 'display.db'}"
    db = store.open_database(url)
    controller = DisplayController(db, None)
    controller.url = url
    yield controller
    db.close()


def restarted(controller) -> DisplayController:
    return DisplayController(store.open_database(controller.url), None)


# --- the kept state follows every change and is what a restart reads ---

def test_what_is_shown_follows_posts_clears_and_settings(controller):
    assert controller.refresh().text == ""
    shown = controller.refresh([Post(pools.new_message(pools.NEXT_ACTIONS, "EUR 1", 0, now(), source="next"))])
    assert shown.text == "EUR 1"
    shown = controller.refresh([Post(pools.new_message(pools.ERROR, "OOPS", 60, now(), source="cycle"))])
    assert (shown.text, shown.pool) == ("OOPS", pools.ERROR)
    shown = controller.refresh([Post(pools.new_message(pools.ERROR, "OOPS 2", 60, now(), source="cycle"))])
    assert shown.text == "OOPS 2"  # replaced its own
    assert controller.refresh([Clear(pools.ERROR, "cycle")]).text == "EUR 1"
    shown = controller.refresh([Settings(brightness=7), Settings(speed_ms=300)])
    assert (shown.brightness, shown.speed_ms) == (7, 300)
    again = restarted(controller).refresh()
    assert (again.text, again.brightness, again.speed_ms) == ("EUR 1", 7, 300)


def test_changes_apply_in_order_in_one_transaction(controller):
    message = pools.new_message(pools.PROCESSING, "SYNCING...", 60, now(), source="cycle")
    shown = controller.refresh([Post(message), Clear(pools.PROCESSING, "cycle")])
    assert shown.text == ""
    assert restarted(controller).refresh().text == ""


def test_a_failed_write_changes_nothing(controller, monkeypatch):
    controller.refresh([Post(pools.new_message(pools.ERROR, "KEPT", 60, now(), source="a"))])
    original = store.put

    def failing_on_the_second(session, message, exists=None):
        if message.text == "SECOND":
            raise RuntimeError("disk full")
        original(session, message, exists)

    monkeypatch.setattr(store, "put", failing_on_the_second)
    with pytest.raises(RuntimeError):
        controller.refresh([Post(pools.new_message(pools.ERROR, "FIRST", 60, now(), source="c")),
                            Post(pools.new_message(pools.ERROR, "SECOND", 60, now(), source="d"))])
    assert controller.refresh().text == "KEPT"  # the kept state did not take the first change either
    assert restarted(controller).refresh().text == "KEPT"  # nor did the database


def test_a_change_writes_only_what_differs_and_a_tick_reads_nothing(controller):
    controller.refresh()
    seen = statements(controller._db)
    controller.refresh()  # a tick, a GetDisplayState
    controller.refresh([Clear(pools.ERROR, "nobody")])  # nothing to clear
    assert seen == []
    controller.refresh([Post(pools.new_message(pools.ERROR, "A", 60, now(), source="s"))])
    assert seen == ["INSERT"]
    controller.refresh([Post(pools.new_message(pools.ERROR, "B", 60, now(), source="s"))])
    assert seen == ["INSERT", "UPDATE"]
    controller.refresh([Clear(pools.ERROR, "s")])
    assert seen == ["INSERT", "UPDATE", "DELETE"]


def test_a_post_after_retention_removed_its_row_is_stored_again(controller):
    controller.refresh([Post(pools.new_message(pools.ERROR, "OLD", 1, now() - timedelta(days=30), source="s"))])
    with controller._db.transaction() as session:
        assert store.delete_messages_expired_before(session, now() - timedelta(days=7)) == 1
    controller.refresh([Post(pools.new_message(pools.ERROR, "NEW", 60, now(), source="s"))])
    assert restarted(controller).refresh().text == "NEW"


def test_expiry_needs_no_change(controller):
    controller.refresh([Post(pools.new_message(pools.ERROR, "BRIEF", 1, now() - timedelta(seconds=2), source="s")),
                        Post(pools.new_message(pools.NEXT_ACTIONS, "EUR 1", 0, now(), source="n"))])
    assert controller.refresh().text == "EUR 1"


# --- ApplyChanges over gRPC ---

@pytest.fixture
def display(controller):
    servicer = DisplayServicer(controller._db, controller)
    with serving(make_config("display"), lambda server: display_pb2_grpc.add_DisplayServicer_to_server(
            servicer, server)) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield display_pb2_grpc.DisplayStub(channel)


def change(**kind) -> display_pb2.DisplayChange:
    return display_pb2.DisplayChange(**kind)


def test_apply_changes_is_one_call_for_a_cycle_s_end(display):
    display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.PROCESSING, text="SYNCING...",
                                                       ttl_seconds=120, source="sync_cycle"), metadata=AUTH)
    state = display.ApplyChanges(display_pb2.ApplyChangesRequest(changes=[
        change(next_actions=display_pb2.RefreshNextActionsRequest(
            base_currency="EUR", total_value_base=12_345.4, cash_base=675,
            next_step=display_pb2.NextStep(side="BUY", symbol="AAPL.US", value_base=855.2))),
        change(clear=display_pb2.ClearMessageRequest(pool=display_pb2.ERROR, source="sync_cycle")),
        change(clear=display_pb2.ClearMessageRequest(pool=display_pb2.PROCESSING, source="sync_cycle"))]),
        metadata=AUTH)
    assert (state.pool, state.text, state.source) == (
        display_pb2.NEXT_ACTIONS, "EUR 12,345 | CASH EUR 675 | BUY AAPL EUR 855", "next_actions")
    state = display.ApplyChanges(display_pb2.ApplyChangesRequest(changes=[
        change(post=display_pb2.PostMessageRequest(pool=display_pb2.ERROR, text="PLAN FAILED", ttl_seconds=3600,
                                                   source="sync_cycle"))]), metadata=AUTH)
    assert (state.pool, state.text, state.mode) == (display_pb2.ERROR, "PLAN FAILED", display_pb2.MODE_ERROR)
    assert display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH).text == "PLAN FAILED"


GOOD = change(post=display_pb2.PostMessageRequest(pool=display_pb2.ERROR, text="SHOULD NOT SHOW", source="x"))


@pytest.mark.parametrize(("changes", "field"), [
    ([], "changes"),
    ([GOOD] * (MAX_CHANGES + 1), "changes"),
    ([GOOD, display_pb2.DisplayChange()], "changes[1]"),
    ([GOOD, change(post=display_pb2.PostMessageRequest(pool=display_pb2.ERROR, text=" "))], "changes[1].post.text"),
    ([GOOD, change(post=display_pb2.PostMessageRequest(pool=9, text="X"))], "changes[1].post.pool"),
    ([GOOD, change(post=display_pb2.PostMessageRequest(pool=display_pb2.ERROR, text="X", mode=42))],
     "changes[1].post.mode"),
    ([GOOD, change(clear=display_pb2.ClearMessageRequest(pool=display_pb2.ERROR, source="bad source"))],
     "changes[1].clear.source"),
    ([change(next_actions=display_pb2.RefreshNextActionsRequest(base_currency="EUR", cash_base=float("inf"))),
      GOOD], "changes[0].next_actions.cash_base"),
    ([change(next_actions=display_pb2.RefreshNextActionsRequest(
        base_currency="EUR", next_step=display_pb2.NextStep(side="HOLD", symbol="KO.US")))],
     "changes[0].next_actions.next_step.side"),
])
def test_apply_changes_refuses_bad_input_naming_it_and_changes_nothing(display, changes, field):
    before = display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH)
    with pytest.raises(grpc.RpcError) as caught:
        display.ApplyChanges(display_pb2.ApplyChangesRequest(changes=changes), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: ")
    after = display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH)
    assert (after.text, after.pool) == (before.text, before.pool)
