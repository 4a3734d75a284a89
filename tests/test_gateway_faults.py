"""The cycle and the replay under faults (issue 9), with stand-ins for the five services.

- Money in a currency without a rate: the cycle is not ok, the error pool names the currency,
  and the steps that do not need a valuation still run.
- The replay never stops on a failed call: the failed day is reported and tried again, for the
  same simulated day, and the replay gives up only after the allowed tries, saying why.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import grpc
import pytest
from trader.data.v1 import data_pb2
from trader.display.v1 import display_pb2
from trader.planner.v1 import planner_pb2
from trader.portfolio.v1 import portfolio_pb2
from trader.trading.v1 import trading_pb2

from gateway import store
from gateway.config import ReplayConfig
from gateway.cycle import FAILED, OK, REFUSED, SKIPPED, KeptLedgerCursor, run_cycle
from gateway.replay import REPLAY_GAVE_UP_EXIT, ReplayDriver
from gateway.server import CycleRunner
from services.common import clock
from services.common.timestamps import to_timestamp


class PeerError(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class Stub:
    """Answers each method from `answers` (a value, an exception to raise, or a function of the
    request giving either); records (method, request, as-of) of every call."""

    def __init__(self, calls: list, **answers):
        self._calls = calls
        self._answers = answers

    def __getattr__(self, method):
        def call(request, **_):
            self._calls.append((method, request, clock.as_of()))
            answer = self._answers[method]
            if callable(answer) and not isinstance(answer, Exception):
                answer = answer(request)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return call


NO_CHF_RATE = PeerError(grpc.StatusCode.FAILED_PRECONDITION, "fx_rate_missing: no exchange rate for CHF (base EUR)")


def session(day: str) -> data_pb2.MarketSession:
    opens = datetime.fromisoformat(day).replace(hour=14, minute=30, tzinfo=UTC)
    return data_pb2.MarketSession(date=day, open=to_timestamp(opens), close=to_timestamp(opens.replace(hour=21)))


def services(calls, **overrides):
    portfolio = portfolio_pb2.GetPortfolioResponse(base_currency="EUR", total_value_base=1000, cash_base=1000,
                                                   portfolio_hash="h")
    plan = planner_pb2.GetRecommendationsResponse(plan_id="p", steps=[planner_pb2.Step(
        symbol="KO.US", side=planner_pb2.BUY, quantity=1, estimated_price=40, currency="USD")])
    answers = {
        "trading": dict(SyncBroker=trading_pb2.SyncBrokerResponse(broker="paper", cash=[
            trading_pb2.BrokerCash(currency="EUR", amount=1000), trading_pb2.BrokerCash(currency="CHF", amount=1)]),
            ExecutePlan=trading_pb2.ExecutePlanResponse(outcome=trading_pb2.ExecutePlanResponse.NOTHING_TO_DO),
            FundPaperAccount=trading_pb2.FundPaperAccountResponse(applied=True)),
        "portfolio": dict(GetLedgerCursor=portfolio_pb2.LedgerCursor(),
                          ApplyBrokerState=portfolio_pb2.ApplyBrokerStateResponse(portfolio_hash="h"),
                          TakeSnapshot=portfolio_pb2.Snapshot(portfolio=portfolio),
                          RecordDeposit=portfolio_pb2.CashFlow()),
        "data": dict(SyncPrices=data_pb2.SyncPricesResponse(provider="sample"),
                     ListSessions=lambda request: data_pb2.ListSessionsResponse(exchange="XNYS", sessions=[
                         session(d) for d in ("2019-03-01", "2019-03-04", "2019-03-05", "2019-03-06")
                         if request.start <= d <= request.end])),
        "planner": dict(GetRecommendations=plan),
        "display": dict(PostMessage=display_pb2.DisplayState(),
                        ApplyChanges=display_pb2.DisplayState(text="EUR 1,000", pool=display_pb2.NEXT_ACTIONS)),
    }
    for key, value in overrides.items():
        service, method = key.split("__")
        answers[service][method] = value

    class Services:
        pass

    result = Services()
    for name, methods in answers.items():
        setattr(result, name, Stub(calls, **methods))
    return result


NOW = datetime(2019, 3, 1, 22, tzinfo=UTC)


def statuses(result) -> dict[str, str]:
    return {s.name: s.status for s in result.steps}


def display_changes(calls) -> list[tuple[str, object]]:
    """(kind, request) of every change the display was asked for: a post, a clear, next actions."""
    changes = []
    for method, request, _ in calls:
        if method == "PostMessage":
            changes.append(("post", request))
        elif method == "ApplyChanges":
            changes.extend((c.WhichOneof("change"), getattr(c, c.WhichOneof("change"))) for c in request.changes)
    return changes


def error_posts(calls) -> list:
    return [r for kind, r in display_changes(calls) if kind == "post" and r.pool == display_pb2.ERROR]


def test_money_without_a_rate_makes_the_cycle_not_ok_and_the_error_names_the_currency():
    calls = []
    result = run_cycle(services(calls, portfolio__TakeSnapshot=NO_CHF_RATE), NOW)
    assert not result.ok
    assert statuses(result) == {"display_processing": OK, "sync_broker": OK, "sync_prices": OK, "valuation": FAILED,
                                "plan": SKIPPED, "execute": SKIPPED, "display": OK}
    errors = error_posts(calls)
    assert len(errors) == 1 and "CHF" in errors[0].text and errors[0].text.startswith("VALUATION FAILED")


def test_a_refused_trade_is_an_ok_cycle():
    calls = []
    refused = PeerError(grpc.StatusCode.FAILED_PRECONDITION, "buy_cooldown: KO.US was bought 3 days ago")
    result = run_cycle(services(calls, trading__ExecutePlan=refused), NOW)
    assert result.ok and statuses(result)["execute"] == REFUSED
    assert not error_posts(calls)


def test_a_plan_without_steps_sends_no_order_and_the_steps_keep_their_order():
    calls = []
    empty = planner_pb2.GetRecommendationsResponse(plan_id="p")
    result = run_cycle(services(calls, planner__GetRecommendations=empty), NOW)
    assert result.ok and not [m for m, _, _ in calls if m == "ExecutePlan"]
    assert [(s.name, s.status, s.detail) for s in result.steps if s.name == "execute"] == [
        ("execute", OK, "NOTHING_TO_DO")]
    assert [s.name for s in result.steps] == ["display_processing", "sync_broker", "sync_prices", "valuation", "plan",
                                              "execute", "display"]
    posts = [r.text for m, r, _ in calls if m == "PostMessage"]
    assert posts == ["SYNCING..."]
    # one call ends the cycle's display: the next actions, the error pool cleared, the processing pool last
    assert [m for m, _, _ in calls if m == "ApplyChanges"] == ["ApplyChanges"]
    assert [(kind, getattr(r, "pool", None)) for kind, r in display_changes(calls)[1:]] == [
        ("next_actions", None), ("clear", display_pb2.ERROR), ("clear", display_pb2.PROCESSING)]
    assert result.display_text == "EUR 1,000"


def test_next_actions_the_display_refuses_still_let_the_error_show():
    calls = []
    refused = PeerError(grpc.StatusCode.INVALID_ARGUMENT, "changes[0].next_actions.total_value_base: not finite")

    def display(request):
        return refused if any(c.HasField("next_actions") for c in request.changes) else display_pb2.DisplayState()

    result = run_cycle(services(calls, portfolio__TakeSnapshot=lambda _: portfolio_pb2.Snapshot(
        portfolio=portfolio_pb2.GetPortfolioResponse(base_currency="EUR", total_value_base=float("nan"))),
        planner__GetRecommendations=PeerError(grpc.StatusCode.UNAVAILABLE, "planner down"),
        display__ApplyChanges=display), NOW)
    assert statuses(result)["plan"] == FAILED and statuses(result)["display"] == FAILED
    assert "next_actions.total_value_base" in result.steps[-1].detail
    refused_call, error_only = [r for m, r, _ in calls if m == "ApplyChanges"]  # then the error pool alone
    assert [c.WhichOneof("change") for c in error_only.changes] == ["post"]
    error = error_only.changes[0].post
    assert (error.pool, error.text, error.source) == (display_pb2.ERROR, "PLAN FAILED", "sync_cycle")


def test_a_failed_syncing_post_is_reported_in_its_place():
    calls = []
    down = PeerError(grpc.StatusCode.UNAVAILABLE, "display down")
    result = run_cycle(services(calls, display__PostMessage=down), NOW)
    assert result.steps[0].name == "display_processing" and result.steps[0].status == FAILED
    assert [statuses(result)[name] for name in ("sync_broker", "sync_prices", "valuation", "plan")] == [OK] * 4


def test_a_failed_trade_post_changes_nothing_about_the_trade_and_is_reported_before_it():
    calls = []
    down = PeerError(grpc.StatusCode.UNAVAILABLE, "display down")
    result = run_cycle(services(calls, display__PostMessage=lambda r: down if r.mode == display_pb2.MODE_TRADE
                                else display_pb2.DisplayState()), NOW)
    names = [s.name for s in result.steps]
    assert names.index("display_trade") == names.index("execute") - 1
    assert statuses(result)["display_trade"] == FAILED and statuses(result)["execute"] == OK
    assert [m for m, _, _ in calls].count("ExecutePlan") == 1 and not result.ok
    assert [r.text for m, r, _ in calls if m == "PostMessage"] == ["SYNCING...", "BUY KO USD 40"]


def replay_config(**changes) -> ReplayConfig:
    values = dict(autostart=True, start=date(2019, 3, 1), end=date(2019, 3, 5), cycles_per_second=0,
                  initial_deposit=1000, monthly_deposit=100, max_cycles=0, day_tries=4)
    values.update(changes)
    return ReplayConfig(**values)


class ServingPeers:
    """Stands in for Clients: every peer reports SERVING at once."""

    def wait_serving(self, services, timeout_s, stopped=lambda: False):
        return True


def run_replay(tmp_path, fake_services, **config) -> ReplayDriver:
    db = store.open_database(f"sqlite:///{tmp_path / 'gateway.db'}")
    finished = []
    driver = ReplayDriver(replay_config(**config), "EUR", db, fake_services, CycleRunner(db, fake_services),
                          lambda: finished.append(True), ServingPeers())
    driver.run()  # in this thread
    db.close()
    assert finished == [True]
    return driver


def cycle_days(calls) -> list[date]:
    return [as_of.date() for method, _, as_of in calls if method == "SyncBroker"]


def ledger_calls(calls) -> list[tuple[str, object]]:
    """(method, the cursor asked from / handed back as `after`, None when unset) of the sync's calls."""
    seen = []
    for method, request, _ in calls:
        if method == "GetLedgerCursor":
            seen.append((method, None))
        elif method == "SyncBroker":
            seen.append((method, (request.after.trade_id, request.after.cash_movement_id)))
        elif method == "ApplyBrokerState":
            seen.append((method, (request.after.trade_id, request.after.cash_movement_id)
                         if request.HasField("after") else None))
    return seen


def applied_at(trade_id: int, movement_id: int):
    reply = portfolio_pb2.ApplyBrokerStateResponse(portfolio_hash="h", ledger_cursor=portfolio_pb2.LedgerCursor(
        trade_id=trade_id, cash_movement_id=movement_id))
    return lambda _: reply


def test_the_next_sync_asks_from_the_cursor_the_last_one_applied_and_hands_it_back_to_be_checked():
    calls, ledger = [], KeptLedgerCursor()
    first = run_cycle(services(calls, portfolio__GetLedgerCursor=portfolio_pb2.LedgerCursor(trade_id=4),
                               portfolio__ApplyBrokerState=applied_at(5, 7)), NOW, ledger=ledger)
    assert statuses(first)["sync_broker"] == OK
    assert ledger_calls(calls) == [("GetLedgerCursor", None), ("SyncBroker", (4, 0)), ("ApplyBrokerState", None)]
    calls.clear()
    assert run_cycle(services(calls, portfolio__ApplyBrokerState=applied_at(6, 7)), NOW, ledger=ledger).ok
    assert ledger_calls(calls) == [("SyncBroker", (5, 7)), ("ApplyBrokerState", (5, 7))]  # no GetLedgerCursor
    calls.clear()
    run_cycle(services(calls, portfolio__GetLedgerCursor=portfolio_pb2.LedgerCursor(trade_id=9)), NOW)
    assert ledger_calls(calls)[0] == ("GetLedgerCursor", None)  # a cycle without a kept cursor reads it


def test_a_kept_cursor_another_sync_moved_is_read_again_and_the_sync_repeated_from_it():
    calls, ledger = [], KeptLedgerCursor()
    ledger.cursor = portfolio_pb2.LedgerCursor(trade_id=5, cash_movement_id=7)
    moved = PeerError(grpc.StatusCode.FAILED_PRECONDITION, "ledger_cursor_moved: the books are at (8, 7)")
    result = run_cycle(services(calls, portfolio__GetLedgerCursor=portfolio_pb2.LedgerCursor(trade_id=8,
                                                                                           cash_movement_id=7),
                                portfolio__ApplyBrokerState=lambda r: moved if r.HasField("after") else
                                applied_at(9, 7)(r)), NOW, ledger=ledger)
    assert statuses(result)["sync_broker"] == OK and result.ok
    assert ledger_calls(calls) == [("SyncBroker", (5, 7)), ("ApplyBrokerState", (5, 7)), ("GetLedgerCursor", None),
                                   ("SyncBroker", (8, 7)), ("ApplyBrokerState", None)]
    assert ledger.cursor == portfolio_pb2.LedgerCursor(trade_id=9, cash_movement_id=7)


def test_a_failed_sync_keeps_no_cursor_and_another_refusal_is_not_retried():
    calls, ledger = [], KeptLedgerCursor()
    ledger.cursor = portfolio_pb2.LedgerCursor(trade_id=5, cash_movement_id=7)
    other = PeerError(grpc.StatusCode.FAILED_PRECONDITION, "fx_rate_missing: no exchange rate for CHF (base EUR)")
    result = run_cycle(services(calls, portfolio__ApplyBrokerState=other), NOW, ledger=ledger)
    assert statuses(result)["sync_broker"] == FAILED and ledger.cursor is None
    assert ledger_calls(calls) == [("SyncBroker", (5, 7)), ("ApplyBrokerState", (5, 7))]
    calls.clear()
    run_cycle(services(calls), NOW, ledger=ledger)
    assert ledger_calls(calls)[0] == ("GetLedgerCursor", None)


def test_the_valuation_is_handed_the_securities_revision_the_price_sync_reported():
    calls = []
    run_cycle(services(calls, data__SyncPrices=data_pb2.SyncPricesResponse(provider="sample",
                                                                            securities_revision="r1:0.3")), NOW)
    assert [r.universe_revision for m, r, _ in calls if m == "TakeSnapshot"] == ["r1:0.3"]
    calls.clear()
    run_cycle(services(calls, data__SyncPrices=PeerError(grpc.StatusCode.UNAVAILABLE, "down")), NOW)
    assert [r.universe_revision for m, r, _ in calls if m == "TakeSnapshot"] == [""]  # none heard: it reads


def test_a_failed_call_is_retried_for_the_same_day(tmp_path, capsys):
    calls = []
    outcomes = iter([PeerError(grpc.StatusCode.UNAVAILABLE, "trading restarting"),
                     PeerError(grpc.StatusCode.UNAVAILABLE, "trading restarting")])
    flaky_sync = lambda _: next(outcomes, None) or trading_pb2.SyncBrokerResponse(broker="paper")  # noqa: E731
    fund_fails_once = iter([PeerError(grpc.StatusCode.UNAVAILABLE, "trading restarting")])
    fund = lambda _: next(fund_fails_once, None) or trading_pb2.FundPaperAccountResponse()  # noqa: E731
    driver = run_replay(tmp_path, services(calls, trading__SyncBroker=flaky_sync, trading__FundPaperAccount=fund))
    assert not driver.gave_up  # the gateway exits 0
    # Day 1: the deposit failed once, then two cycles failed at sync_broker; each retry is the same day.
    # The close-out (a sync at the next session's open) follows the last day.
    assert cycle_days(calls) == [date(2019, 3, 1)] * 3 + [date(2019, 3, 4), date(2019, 3, 5), date(2019, 3, 6)]
    out = capsys.readouterr().out
    assert out.count("simulated day 2019-03-01: try") == 3 and "replay reached the end of the history" in out
    deposits = [r.reference for m, r, _ in calls if m == "FundPaperAccount"]
    assert deposits.count("replay-deposit-2019-03") == 3  # idempotent by reference: retried, applied once


def test_the_replay_gives_up_after_its_tries_saying_why(tmp_path, capsys):
    calls = []
    driver = run_replay(tmp_path, services(calls, portfolio__TakeSnapshot=NO_CHF_RATE), day_tries=3)
    assert cycle_days(calls) == [date(2019, 3, 1)] * 3
    assert driver.gave_up  # the gateway exits REPLAY_GAVE_UP_EXIT: the launcher stops all and exits 1
    out = capsys.readouterr().out
    assert "replay gave up: simulated day 2019-03-01 did not succeed in 3 tries" in out
    assert "no exchange rate for CHF" in out.splitlines()[-1]


def test_a_resumed_replay_starts_at_the_day_that_did_not_succeed(tmp_path, capsys):
    calls = []
    valued = portfolio_pb2.Snapshot(portfolio=portfolio_pb2.GetPortfolioResponse(base_currency="EUR"))
    failing_from_day_2 = lambda _: NO_CHF_RATE if clock.as_of().day == 4 else valued  # noqa: E731
    run_replay(tmp_path, services(calls, portfolio__TakeSnapshot=failing_from_day_2), day_tries=2)
    calls.clear()
    run_replay(tmp_path, services(calls))
    assert cycle_days(calls) == [date(2019, 3, 4), date(2019, 3, 5), date(2019, 3, 6)]  # then the close-out
    assert "resuming replay after 2019-03-01" in capsys.readouterr().out


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE])
def test_listing_the_days_is_retried_too(tmp_path, capsys, code):
    calls = []
    fails_once = iter([PeerError(code, "data restarting")])
    sessions = data_pb2.ListSessionsResponse(sessions=[session("2019-03-01"), session("2019-03-06")])
    run_replay(tmp_path, services(calls, data__ListSessions=lambda _: next(fails_once, None) or sessions))
    assert cycle_days(calls) == [date(2019, 3, 1), date(2019, 3, 6)]  # the day, then the close-out


def test_the_gateway_exits_with_the_gave_up_code_only_when_its_replay_gave_up(monkeypatch):
    import gateway.__main__ as gateway_main  # noqa: PLC0415 - the process's entry point

    class Driver:
        gave_up = False

    monkeypatch.setattr(gateway_main, "run_service", lambda *_: 0)
    monkeypatch.setattr(gateway_main, "_drivers", [Driver()])
    assert gateway_main.main() == 0
    Driver.gave_up = True
    assert gateway_main.main() == REPLAY_GAVE_UP_EXIT
    monkeypatch.setattr(gateway_main, "run_service", lambda *_: 2)  # a failed start keeps its own code
    assert gateway_main.main() == 2
