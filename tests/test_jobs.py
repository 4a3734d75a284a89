"""The job runner and the scheduler (gateway/runner.py), and each job against stand-in peers.

- A job that raises is recorded FAILED with why, and the next job (and its next run) still runs.
- Five failures within an hour turn the job's health NOT_SERVING and post to the display's
  error pool; a success, or the hour passing, turns it back.
- Overlapping triggers never run a job twice at once: a scheduled one is recorded SKIPPED,
  RunJob is refused (job_running).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from trader.common.v1 import maintenance_pb2
from trader.display.v1 import display_pb2
from trader.planner.v1 import planner_pb2
from trader.portfolio.v1 import portfolio_pb2
from trader.trading.v1 import trading_pb2

from gateway import runner as runner_module
from gateway import store
from gateway.jobs import JOBS, bucket_reconciliation, dividend_reinvestment, maintenance, planner_batch
from gateway.jobs.base import Job, JobFailed, JobPeers
from gateway.runner import MANUAL, SCHEDULE, JobRunner, Scheduler
from gateway.schedule import parse_schedule
from services.common.errors import FailedPrecondition, NotFound
from tests.test_gateway_faults import PeerError, Stub

WALL = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime = WALL):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def db(tmp_path):
    database = store.open_database(f"sqlite:///{tmp_path / 'gateway.db'}")
    yield database
    database.close()


@pytest.fixture
def spans(monkeypatch):
    """The runner's spans, kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(runner_module, "tracer", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def make_runner(db, jobs, clock=None, display=None, schedules=None):
    health: list[tuple[str, bool]] = []
    runner = JobRunner(db, jobs, JobPeers(services=None, cycles=None), schedules or {}, display,
                       wall_now=clock or Clock())
    runner.attach_health(lambda service, serving: health.append((service, serving)))
    return runner, health


def job(name, run, **extra) -> Job:
    return Job(name, f"test job {name}", "off", run, **extra)


def boom(peers, now):
    raise RuntimeError("the broker's API answered nonsense")


def test_a_job_that_raises_is_recorded_failed_and_the_next_one_still_runs(db, spans):
    ran = []
    runner, _ = make_runner(db, [job("bad", boom), job("good", lambda peers, now: ran.append(now) or "done")])
    bad = runner.run("bad", SCHEDULE, WALL)
    good = runner.run("good", SCHEDULE, WALL)
    assert (bad.status, bad.detail) == ("FAILED", "RuntimeError: the broker's API answered nonsense")
    assert (good.status, good.detail, ran) == ("OK", "done", [WALL])
    assert bad.finished_at is not None and bad.duration_ms >= 0 and len(bad.trace_id) == 32
    # one span per run, carrying the run's trace id and status
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert set(finished) == {"job.bad", "job.good"}
    assert format(finished["job.bad"].context.trace_id, "032x") == bad.trace_id != good.trace_id
    assert finished["job.bad"].attributes["job.status"] == "FAILED" and not finished["job.bad"].status.is_ok
    # the failed job runs again next time, and a peer's refusal or JobFailed is its detail
    flaky = iter([PeerError(grpc.StatusCode.UNAVAILABLE, "trading is down"), JobFailed("backup failed")])

    def fails_twice(peers, now):
        raise next(flaky)

    runner, _ = make_runner(db, [job("bad", boom), job("good", lambda peers, now: "done"), job("flaky", fails_twice)])
    assert runner.run("flaky", SCHEDULE, WALL).detail == "UNAVAILABLE: trading is down"
    assert runner.run("flaky", SCHEDULE, WALL).detail == "backup failed"
    history = runner.history(None, 10)
    assert [(r.job, r.status) for r in history] == [("flaky", "FAILED"), ("flaky", "FAILED"), ("good", "OK"),
                                                    ("bad", "FAILED")]
    assert history[0].id > history[1].id and runner.history("good", 10)[0].detail == "done"
    assert [r.job for r in runner.history(None, 2, before_id=history[1].id)] == ["good", "bad"]


def test_five_failures_in_an_hour_flip_the_jobs_health_and_post_to_the_display(db):
    clock = Clock()
    calls = []
    display = Stub(calls, PostMessage=display_pb2.DisplayState(), ClearMessage=display_pb2.DisplayState())
    outcome = {"fail": True}

    def sometimes(peers, now):
        if outcome["fail"]:
            raise JobFailed("backup of trading failed: disk full")
        return "ok"

    runner, health = make_runner(db, [job("maintenance", sometimes)], clock, display)
    assert health == [("job/maintenance", True)]
    for _ in range(4):
        runner.run("maintenance", SCHEDULE, clock.at)
        clock.at += timedelta(minutes=10)
    assert runner.failing_jobs() == [] and health[-1] == ("job/maintenance", True) and calls == []
    runner.run("maintenance", SCHEDULE, clock.at)  # the fifth within the hour
    assert runner.failing_jobs() == ["maintenance"] and health[-1] == ("job/maintenance", False)
    (method, post, _), = calls
    assert method == "PostMessage" and post.pool == display_pb2.ERROR and post.source == "job.maintenance"
    assert post.text == "MAINTENANCE FAILING: backup of trading failed: disk full" and post.ttl_seconds == 3600
    [view] = runner.views(clock.at)
    assert (view.healthy, view.failures_last_hour, view.last_run.status) == (False, 5, "FAILED")
    # a success turns it back, and clears the message
    outcome["fail"] = False
    runner.run("maintenance", SCHEDULE, clock.at)
    assert runner.failing_jobs() == [] and health[-1] == ("job/maintenance", True)
    assert [c[0] for c in calls] == ["PostMessage", "ClearMessage"] and calls[-1][1].source == "job.maintenance"
    # failing again at once flips it again (5 failures still in the hour); an hour later they aged out
    outcome["fail"] = True
    runner.run("maintenance", SCHEDULE, clock.at)
    assert runner.failing_jobs() == ["maintenance"]
    clock.at += timedelta(minutes=20)  # the first failure leaves the hour: 5 of them left
    runner.refresh_health(clock.at)
    assert runner.failing_jobs() == ["maintenance"]
    clock.at += timedelta(minutes=11)  # 4 left
    runner.refresh_health(clock.at)
    assert runner.failing_jobs() == [] and health[-1] == ("job/maintenance", True)


def test_health_survives_a_restart_and_runs_left_running_are_marked_interrupted(db):
    clock = Clock()
    runner, _ = make_runner(db, [job("bad", boom)], clock)
    for _ in range(5):
        runner.run("bad", SCHEDULE, clock.at)
    with db.transaction() as session:
        store.start_job_run(session, "bad", store.RUNNING, SCHEDULE, WALL, False, WALL, "")
    again, health = make_runner(db, [job("bad", boom)], clock)
    assert again.failing_jobs() == ["bad"] and health == [("job/bad", False)]
    assert again.history("bad", 1)[0].status == "FAILED"
    assert again.history("bad", 1)[0].detail == "interrupted: the gateway stopped while the job ran"


def test_overlapping_triggers_never_run_a_job_twice_at_once(db):
    inside, release = threading.Event(), threading.Event()
    running, most = [0], [0]
    guard = threading.Lock()

    def slow(peers, now):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        inside.set()
        release.wait(10)
        with guard:
            running[0] -= 1
        return "slow done"

    runner, _ = make_runner(db, [job("slow", slow), job("other", lambda peers, now: "other done")])
    first = threading.Thread(target=runner.run, args=("slow", SCHEDULE, WALL))
    first.start()
    assert inside.wait(10)
    overlapping = [threading.Thread(target=runner.run, args=("slow", SCHEDULE, WALL)) for _ in range(5)]
    for thread in overlapping:
        thread.start()
    for thread in overlapping:
        thread.join(10)
    with pytest.raises(FailedPrecondition, match="job_running: the slow job is still running since"):
        runner.run("slow", MANUAL, WALL)
    assert runner.run("other", MANUAL, WALL).status == "OK"  # other jobs are not held up
    assert [v.running for v in runner.views(WALL)] == [True, False]
    release.set()
    first.join(10)
    assert most[0] == 1
    statuses = [r.status for r in runner.history("slow", 10)]
    assert statuses.count("SKIPPED") == 5 and statuses.count("OK") == 1
    skipped = runner.history("slow", 1, before_id=runner.history("slow", 1)[0].id)[0]
    assert skipped.detail.startswith("still running since 2026-03-06T12:00:00Z (run ")
    assert runner.run("slow", MANUAL, WALL).status == "OK"  # released: it runs again


def test_unknown_jobs_are_not_found(db):
    runner, _ = make_runner(db, [job("one", lambda peers, now: "")])
    with pytest.raises(NotFound, match="unknown job 'two'; the jobs: one"):
        runner.run("two", MANUAL, WALL)
    with pytest.raises(NotFound):
        runner.history("two", 10)


def test_the_scheduler_starts_due_jobs_on_the_wall_clock_and_nothing_when_off(db):
    clock = Clock(datetime(2026, 3, 6, 11, 59, 58, tzinfo=UTC))
    done = threading.Event()
    schedules = {"minutely": parse_schedule("* * * * *", "UTC"), "never": None}
    runner, _ = make_runner(db, [job("minutely", lambda peers, now: done.set() or "ran"),
                                 job("never", lambda peers, now: "ran")], clock, schedules=schedules)
    since = clock.at
    scheduler = Scheduler(runner, schedules, triggering=True, wall_now=clock)
    try:
        assert scheduler.tick(since) == []
        clock.at = WALL  # 12:00:00
        assert scheduler.tick(since) == ["minutely"]
        assert done.wait(10)
        clock.at = WALL + timedelta(seconds=30)
        assert scheduler.tick(since) == []  # ran for 12:00 already
        clock.at = WALL + timedelta(minutes=1)
        assert scheduler.tick(since) == ["minutely"]
    finally:
        scheduler.stop()
    assert runner.views(WALL)[0].next_run == WALL + timedelta(minutes=1)
    quiet = Scheduler(runner, schedules, triggering=False, wall_now=clock)
    clock.at = WALL + timedelta(minutes=5)
    assert quiet.tick(since) == []
    quiet.stop()


def test_job_runs_are_kept_a_week_and_each_jobs_newest_twenty_for_ever(db):
    with db.transaction() as session:
        for n in range(30):
            store.start_job_run(session, "weekly", store.OK, SCHEDULE, WALL, False, WALL - timedelta(days=400 + n), "")
        for n in range(30):
            store.start_job_run(session, "ticker", store.OK, SCHEDULE, WALL, False, WALL - timedelta(days=8, hours=n),
                                "")
        store.start_job_run(session, "ticker", store.OK, SCHEDULE, WALL, False, WALL, "")
        deleted = store.delete_job_runs_started_before(session, WALL - timedelta(days=7))
    assert deleted == 10 + 11
    with db.transaction() as session:
        assert len(store.job_runs(session, "weekly", 100)) == 20 and len(store.job_runs(session, "ticker", 100)) == 20


# --- the jobs themselves, against stand-ins ---


def peers(**stubs) -> JobPeers:
    return JobPeers(services=SimpleNamespace(**stubs), cycles=None)


def reply(parts, ok=True):
    return maintenance_pb2.RunMaintenanceResponse(ok=ok, parts=parts)


def test_maintenance_asks_every_service_in_turn_leaving_out_what_a_backend_lacks():
    calls = []
    copy = maintenance_pb2.BackupFile(path="var/backups/data/data-20260306T030000Z.db", size_bytes=2_500_000,
                                      integrity="ok")
    backup = maintenance_pb2.MaintenancePart(name="backup", status=maintenance_pb2.PART_OK, backup=copy)
    done = [backup] + [maintenance_pb2.MaintenancePart(name=n, status=maintenance_pb2.PART_OK)
                       for n in ("retention", "optimize", "checkpoint")]

    def postgres(request):  # PostgreSQL: no backup part, the rest runs
        if request.backup:
            return PeerError(grpc.StatusCode.FAILED_PRECONDITION, "backup_unavailable: use pg_dump -Fc")
        return reply(done[1:])

    stubs = {service: Stub(calls, RunMaintenance=reply(done)) for service in maintenance.SERVICES}
    stubs["trading"] = Stub(calls, RunMaintenance=postgres)
    text = maintenance.run(peers(**stubs), WALL)
    assert [c[0] for c in calls] == ["RunMaintenance"] * 6  # five services, trading asked twice
    assert [(c[1].backup, c[1].retention, c[1].optimize, c[1].checkpoint, c[1].integrity_check) for c in calls][:1] \
        == [(True, True, True, True, False)]
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == list(maintenance.SERVICES)
    assert lines[0] == ("data: backup var/backups/data/data-20260306T030000Z.db (2.5 MB, integrity ok), retention ok, "
                        "optimize ok, checkpoint ok")
    assert lines[3] == "trading: retention ok, optimize ok, checkpoint ok; backup not on this backend"
    # a part that failed, or a service that is down, fails the job after every service was asked
    failed = maintenance_pb2.MaintenancePart(name="backup", status=maintenance_pb2.PART_FAILED, detail="disk full")
    stubs["planner"] = Stub(calls, RunMaintenance=reply([failed], ok=False))
    stubs["display"] = Stub(calls, RunMaintenance=PeerError(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    with pytest.raises(JobFailed) as raised:
        maintenance.run(peers(**stubs), WALL)
    assert str(raised.value).startswith("did not succeed: planner backup, display\n")
    assert "planner: backup FAILED: disk full" in str(raised.value)
    assert "display: UNAVAILABLE: connection refused" in str(raised.value)


def test_dividend_reinvestment_submits_each_buy_once_under_its_client_order_id():
    calls = []
    plan = portfolio_pb2.DividendReinvestmentPlan(pooled_base=12.5, buys=[
        portfolio_pb2.ReinvestmentBuy(symbol=s, client_order_id=f"div-{s}", quantity=2, amount_base=300,
                                      dividend_ids=[1, 2]) for s in ("KO.US", "XOM.US", "PG.US")])
    answers = {"KO.US": trading_pb2.Order(state=trading_pb2.FILLED),
               "XOM.US": PeerError(grpc.StatusCode.ALREADY_EXISTS, "client_order_id div-XOM.US was used"),
               "PG.US": PeerError(grpc.StatusCode.FAILED_PRECONDITION, "frequency: at most 4 trades a day")}
    trading = Stub(calls, SubmitOrder=lambda request: answers[request.symbol])
    portfolio = Stub(calls, PlanDividendReinvestment=plan)
    text = dividend_reinvestment.run(peers(trading=trading, portfolio=portfolio), WALL)
    assert text == ("BUY 2 KO.US FILLED, BUY 2 XOM.US already submitted, BUY 2 PG.US refused (FAILED_PRECONDITION: "
                    "frequency: at most 4 trades a day); pooled 12.50 for the rebalancer, 0 pending bonuses")
    orders = [c[1] for c in calls if c[0] == "SubmitOrder"]
    assert [(o.client_order_id, o.side, o.quantity) for o in orders] == [
        ("div-KO.US", trading_pb2.BUY, 2), ("div-XOM.US", trading_pb2.BUY, 2), ("div-PG.US", trading_pb2.BUY, 2)]
    answers["KO.US"] = PeerError(grpc.StatusCode.UNAVAILABLE, "broker down")
    with pytest.raises(JobFailed, match="BUY 2 KO.US: UNAVAILABLE: broker down; BUY 2 XOM.US already submitted"):
        dividend_reinvestment.run(peers(trading=trading, portfolio=portfolio), WALL)


def test_an_alert_from_the_bucket_reconciliation_fails_its_run():
    calls = []
    currencies = [portfolio_pb2.CurrencyReconciliation(currency="EUR", virtual_total=100, broker=100, action="ok")]
    portfolio = Stub(calls, ReconcileBuckets=portfolio_pb2.ReconcileBucketsResponse(currencies=currencies))
    assert bucket_reconciliation.run(peers(portfolio=portfolio), WALL) == "EUR ok (buckets 100.00, broker 100.00)"
    currencies[0].broker, currencies[0].action = 180, "alert"
    alert = portfolio_pb2.ReconcileBucketsResponse(currencies=currencies, alerted=True)
    portfolio = Stub(calls, ReconcileBuckets=alert)
    with pytest.raises(JobFailed, match="the buckets disagree with the broker: EUR alert"):
        bucket_reconciliation.run(peers(portfolio=portfolio), WALL)


def test_a_planner_without_a_state_to_plan_is_an_answer_not_a_failure():
    calls = []
    planner = Stub(calls, RunPlannerBatch=PeerError(grpc.StatusCode.FAILED_PRECONDITION, "no_history: too few bars"))
    assert planner_batch.run(peers(planner=planner), WALL) == \
        "nothing to evaluate: FAILED_PRECONDITION: no_history: too few bars"
    planner = Stub(calls, RunPlannerBatch=planner_pb2.PlannerStatus(batch_key="b1", mode="incremental", generated=90,
                                                                    evaluated=50, evaluated_now=50))
    assert planner_batch.run(peers(planner=planner), WALL) == "batch b1 (incremental): 50 evaluated now, 50 of 90"
    planner = Stub(calls, RunPlannerBatch=PeerError(grpc.StatusCode.UNAVAILABLE, "planner down"))
    with pytest.raises(grpc.RpcError):
        planner_batch.run(peers(planner=planner), WALL)


def test_every_job_has_a_valid_default_schedule_a_variable_and_a_health_name():
    names = [j.name for j in JOBS]
    assert len(set(names)) == len(names)
    for each in JOBS:
        assert parse_schedule(each.default_schedule, "UTC") is not None
        assert each.variable == f"TRADER_JOB_{each.name.upper()}_SCHEDULE" and each.health_service == f"job/{each.name}"
    assert {j.name for j in JOBS if not j.simulated} == {"display_ticker", "fundamentals_sync"}


def test_the_display_ticker_hands_the_display_the_valuation_and_the_plans_first_step():
    """The display is a leaf: the ticker reads the valuation and the plan and hands them over;
    a state without a plan (FAILED_PRECONDITION) still shows value and cash."""
    from trader.planner.v1 import planner_pb2

    from gateway.jobs import display_ticker

    calls = []
    valuation = portfolio_pb2.GetPortfolioResponse(base_currency="EUR", total_value_base=12_345.0, cash_base=675.0)
    step = planner_pb2.Step(symbol="AAPL.US", side=planner_pb2.BUY, quantity=5, estimated_value_base=855.0)
    shown = display_pb2.DisplayState(pool=display_pb2.NEXT_ACTIONS, text="EUR 12,345 | CASH EUR 675 | BUY AAPL EUR 855")
    stubs = {"portfolio": Stub(calls, GetPortfolio=valuation), "display": Stub(calls, RefreshNextActions=shown),
             "planner": Stub(calls, GetRecommendations=planner_pb2.GetRecommendationsResponse(steps=[step]))}
    assert display_ticker.run(peers(**stubs), WALL) == f"showing NEXT_ACTIONS: {shown.text}"
    handed = next(request for method, request, _ in calls if method == "RefreshNextActions")
    assert (handed.base_currency, handed.total_value_base, handed.cash_base) == ("EUR", 12_345.0, 675.0)
    assert (handed.next_step.side, handed.next_step.symbol, handed.next_step.value_base) == ("BUY", "AAPL.US", 855.0)
    assert next(request for method, request, _ in calls if method == "GetRecommendations").max_steps == 1
    calls.clear()
    stubs["planner"] = Stub(calls, GetRecommendations=PeerError(grpc.StatusCode.FAILED_PRECONDITION, "no plan"))
    display_ticker.run(peers(**stubs), WALL)
    handed = next(request for method, request, _ in calls if method == "RefreshNextActions")
    assert handed.total_value_base == 12_345.0 and not handed.HasField("next_step")
    stubs["planner"] = Stub(calls, GetRecommendations=PeerError(grpc.StatusCode.UNAVAILABLE, "down"))
    with pytest.raises(grpc.RpcError):
        display_ticker.run(peers(**stubs), WALL)
