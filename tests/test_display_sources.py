"""Display messages keyed by source within a pool (issue 8 item 8): a component clears only its
own message, so one component's clean state never wipes another's error."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from trader.display.v1 import display_pb2, display_pb2_grpc
from trader.gateway.v1 import gateway_pb2, gateway_pb2_grpc

from gateway.cycle import DISPLAY_SOURCE
from services.common.errors import InvalidArgument
from services.display import pools, store
from services.display.controller import DisplayController
from tests.helpers import TOKEN

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def post(pool, text, source, at=NOW, ttl=0):
    return pools.new_message(pool, text, ttl, at, source=source)


def without(messages, pool, source):
    return [m for m in messages if (m.pool, m.source) != (pool, source)]


# --- pure: which message is shown ---

def test_a_clean_cycle_clears_only_its_own_error():
    messages = [post(pools.NEXT_ACTIONS, "EUR 1", "next_actions"),
                post(pools.ERROR, "BACKUP FAILED", "backup", NOW - timedelta(minutes=5), ttl=86400),
                post(pools.ERROR, "SYNC_PRICES FAILED", DISPLAY_SOURCE)]
    assert pools.shown(messages, NOW).text == "SYNC_PRICES FAILED"  # the newest error
    after_clean_cycle = without(messages, pools.ERROR, DISPLAY_SOURCE)
    shown = pools.shown(after_clean_cycle, NOW)
    assert (shown.pool, shown.text, shown.source) == (pools.ERROR, "BACKUP FAILED", "backup")


def test_priority_beats_recency_and_newest_wins_within_a_pool():
    messages = [post(pools.ERROR, "OLD ERROR", "a", NOW - timedelta(hours=1)),
                post(pools.PROCESSING, "SYNCING...", DISPLAY_SOURCE, NOW)]
    assert pools.shown(messages, NOW).text == "OLD ERROR"
    messages.append(post(pools.ERROR, "NEW ERROR", "b", NOW - timedelta(minutes=1)))
    assert pools.shown(messages, NOW).text == "NEW ERROR"
    # The newest one expires: the other error of the pool shows again.
    messages[-1] = post(pools.ERROR, "NEW ERROR", "b", NOW - timedelta(minutes=1), ttl=30)
    assert pools.shown(messages, NOW).text == "OLD ERROR"


def test_equal_post_times_are_ordered_by_source():
    messages = [post(pools.ERROR, "Z", "zeta"), post(pools.ERROR, "A", "alpha")]
    assert pools.shown(messages, NOW).source == "alpha"
    assert pools.shown(list(reversed(messages)), NOW).source == "alpha"


@given(st.lists(st.tuples(st.sampled_from(pools.PRIORITY), st.sampled_from(["", "a", "b", "sync_cycle"]),
                          st.integers(0, 1000), st.integers(0, 2000)), max_size=12))
def test_shown_is_a_live_message_of_the_highest_live_pool(rows):
    messages = [post(pool, f"T{i}", source, NOW + timedelta(seconds=at), ttl)
                for i, (pool, source, at, ttl) in enumerate(rows)]
    at = NOW + timedelta(seconds=1000)
    live = [m for m in messages if m.expires_at is None or m.expires_at > at]
    shown = pools.shown(messages, at)
    if not live:
        assert shown is None
        return
    best_pool = min(pools.PRIORITY.index(m.pool) for m in live)
    assert shown in live and pools.PRIORITY.index(shown.pool) == best_pool
    assert shown.posted_at == max(m.posted_at for m in live if m.pool == shown.pool)


@pytest.mark.parametrize("source", ["x" * 65, "has space", "new\nline", "é"])
def test_bad_source_names_the_field(source):
    with pytest.raises(InvalidArgument) as caught:
        pools.new_message(pools.ERROR, "X", 0, NOW, source=source)
    assert caught.value.field == "source"


# --- store: keyed by (pool, source), survives a restart, migrated from v2 ---

def test_store_keeps_one_message_per_source_and_clears_only_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'display.db'}"
    db = store.open_database(url)
    with db.transaction() as session:
        store.put(session, post(pools.ERROR, "BACKUP FAILED", "backup", NOW - timedelta(minutes=1)))
        store.put(session, post(pools.ERROR, "FIRST", DISPLAY_SOURCE))
        store.put(session, post(pools.ERROR, "SECOND", DISPLAY_SOURCE))  # replaces its own only
    with db.transaction() as session:
        assert sorted((m.source, m.text) for m in store.messages(session)) == \
            [("backup", "BACKUP FAILED"), (DISPLAY_SOURCE, "SECOND")]
        store.clear(session, pools.ERROR, DISPLAY_SOURCE)
        store.clear(session, pools.ERROR, "")  # nothing under the default source: nothing happens
    db.close()
    again = DisplayController(store.open_database(url), None).refresh()  # a restart
    assert (again.text, again.pool, again.source) == ("BACKUP FAILED", "ERROR", "backup")


def test_version_2_database_keeps_its_messages_under_the_default_source(tmp_path):
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE schema_info (name VARCHAR(64) PRIMARY KEY, version INTEGER NOT NULL)")
        old.execute("INSERT INTO schema_info VALUES ('display', 2)")
        old.execute("CREATE TABLE messages (pool VARCHAR(16) PRIMARY KEY, text VARCHAR(256), expires_at DATETIME, "
                    "mode VARCHAR(16) NOT NULL DEFAULT 'normal')")
        old.execute("INSERT INTO messages VALUES ('ERROR', 'BACKUP FAILED', '2999-01-01 00:00:00.000000', 'error')")
        old.execute("INSERT INTO messages VALUES ('NEXT_ACTIONS', 'EUR 9', NULL, 'normal')")
    db = store.open_database(f"sqlite:///{path}")
    with db.transaction() as session:
        kept = {(m.pool, m.source, m.text, m.mode, m.expires_at) for m in store.messages(session)}
        assert kept == {("ERROR", "", "BACKUP FAILED", "error", datetime(2999, 1, 1, tzinfo=UTC)),
                        ("NEXT_ACTIONS", "", "EUR 9", "normal", None)}
        store.put(session, post(pools.ERROR, "NEWER", "backup"))
    shown = DisplayController(db, None).refresh()
    assert (shown.text, shown.source) == ("NEWER", "backup")  # migrated posts count as older


# --- over gRPC: a clean cycle leaves another component's error alone ---

AUTH = [("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", "2018-01-04T22:00:00+00:00")]


@pytest.mark.e2e
def test_clean_cycle_keeps_an_error_posted_by_another_component(running_suite):
    display = display_pb2_grpc.DisplayStub(running_suite.channel("display"))
    display.PostMessage(display_pb2.PostMessageRequest(pool=display_pb2.ERROR, text="BACKUP FAILED",
                                                       ttl_seconds=600, source="backup"), metadata=AUTH)
    cycle = gateway_pb2_grpc.GatewayStub(running_suite.channel("gateway")).RunSyncCycle(
        gateway_pb2.RunSyncCycleRequest(), metadata=AUTH, timeout=60)
    assert cycle.ok, [(s.name, s.detail) for s in cycle.steps if s.status != gateway_pb2.OK]
    state = display.GetDisplayState(display_pb2.GetDisplayStateRequest(), metadata=AUTH)
    assert (state.pool, state.text, state.source) == (display_pb2.ERROR, "BACKUP FAILED", "backup")
    assert cycle.display_text == "BACKUP FAILED"
    # Clearing the default source or another source leaves it; only its own source clears it.
    for source in ("", DISPLAY_SOURCE):
        state = display.ClearMessage(display_pb2.ClearMessageRequest(pool=display_pb2.ERROR, source=source),
                                     metadata=AUTH)
        assert state.text == "BACKUP FAILED"
    with pytest.raises(grpc.RpcError) as caught:
        display.ClearMessage(display_pb2.ClearMessageRequest(pool=display_pb2.ERROR, source="no spaces"),
                             metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and caught.value.details().startswith("source")
    state = display.ClearMessage(display_pb2.ClearMessageRequest(pool=display_pb2.ERROR, source="backup"),
                                 metadata=AUTH)
    assert state.pool != display_pb2.ERROR
