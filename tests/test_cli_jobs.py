"""`trader jobs`, `trader job run|history` and the richer `trader status` against the six
services as processes (the shared suite): tables by default, `--json` for the reply, one error
line with the gRPC status and exit code 1 for a refused call."""

from __future__ import annotations

import json

import pytest

from gateway.jobs import JOBS
from tests.test_service_inputs import trader

pytestmark = pytest.mark.e2e


def test_trader_jobs_lists_every_job_with_its_schedule_and_next_run(running_suite):
    shown = trader(running_suite, "jobs")
    assert shown.exit_code == 0, shown.output
    for job in JOBS:
        assert job.name in shown.stdout
    assert "next run" in shown.stdout and "fails 1h" in shown.stdout
    listed = json.loads(trader(running_suite, "jobs", "--json").stdout)
    jobs = {job["name"]: job for job in listed["jobs"]}
    assert list(jobs) == [job.name for job in JOBS]
    assert jobs["maintenance"]["schedule"] == "0 3 * * *" and "next_run" in jobs["maintenance"]
    assert all(job["health"] == "SERVING" for job in jobs.values())


def test_trader_job_run_runs_it_and_history_shows_the_run(running_suite):
    ran = trader(running_suite, "job", "run", "integrity_check", "--json")
    assert ran.exit_code == 0, ran.output
    run = json.loads(ran.stdout)["run"]
    assert run["job"] == "integrity_check" and run["status"] == "JOB_OK" and run["trigger"] == "TRIGGER_MANUAL"
    table = trader(running_suite, "job", "run", "integrity_check")
    assert table.exit_code == 0 and "integrity_check" in table.stdout and "OK" in table.stdout
    history = json.loads(trader(running_suite, "job", "history", "integrity_check", "--limit", "1", "--json").stdout)
    assert len(history["runs"]) == 1 and history["runs"][0]["job"] == "integrity_check"
    assert int(history["runs"][0]["id"]) > int(run["id"])  # the newest first: the table's run
    shown = trader(running_suite, "job", "history", "integrity_check")
    assert shown.exit_code == 0 and shown.stdout.count("integrity_check") >= 2
    listed = json.loads(trader(running_suite, "jobs", "--json").stdout)
    job = next(j for j in listed["jobs"] if j["name"] == "integrity_check")
    assert job["status"] == "JOB_OK" and job["last_run"]["id"] == history["runs"][0]["id"]


@pytest.mark.parametrize("command", [["job", "run", "nope"], ["job", "history", "nope"]])
def test_an_unknown_job_is_not_found(running_suite, command):
    refused = trader(running_suite, *command)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: NOT_FOUND: unknown job 'nope'") and refused.stderr.count("\n") == 1


def test_bad_arguments_and_a_bad_token_are_refused(running_suite):
    assert trader(running_suite, "job", "history", "maintenance", "--limit", "0").exit_code == 2
    assert trader(running_suite, "job", "run").exit_code == 2
    refused = trader(running_suite, "jobs", token="x" * 20)
    assert refused.exit_code == 1 and refused.stderr.startswith("error: UNAUTHENTICATED")


def test_trader_status_shows_each_services_version_uptime_database_and_disk(running_suite):
    shown = trader(running_suite, "status")
    assert shown.exit_code == 0, shown.output
    for heading in ("version", "uptime", "database", "disk free", "failing jobs: none", "cycles run"):
        assert heading in shown.stdout, heading
    assert "sqlite" in shown.stdout and "trader.trading.v1.Trading" in shown.stdout
    status = json.loads(trader(running_suite, "status", "--log-records", "5", "--json").stdout)
    assert [s["info"]["service"] for s in status["services"]] == [
        "gateway", "data", "portfolio", "planner", "trading", "display"]
    for service in status["services"]:
        info = service["info"]
        assert info["version"] and info["uptime_s"] > 0 and int(info["database"]["size_bytes"]) > 0
        assert int(info["disk"]["free_bytes"]) > 0
    assert trader(running_suite, "status", "--log-records", "51").exit_code == 2


@pytest.mark.parametrize("command", [["cycle"], ["cycle", "--settle-only"], ["job", "run", "sync_cycle"],
                                     ["job", "run", "dividend_reinvestment"], ["job", "run", "bucket_reconciliation"],
                                     ["job", "run", "securities_data_sync"]])
def test_in_replay_mode_what_acts_on_the_book_refuses_the_wall_clock(running_suite, command):
    """A replay's book lives on simulated time: a cycle at the wall clock would value it at today's
    prices and write that snapshot into it. Refused, nothing run (with --as-of it runs: the e2e
    cycle tests)."""
    before = json.loads(trader(running_suite, "status", "--json").stdout)
    refused = trader(running_suite, *command)
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1, refused.output
    assert refused.stderr.startswith("error: FAILED_PRECONDITION: simulated_clock: the gateway runs in replay mode")
    after = json.loads(trader(running_suite, "status", "--json").stdout)
    # (a cycle run here would leave a snapshot that the shared suite's later tests do not expect)
    assert int(after.get("cycles_run", 0)) == int(before.get("cycles_run", 0))
    if command[0] == "job":
        history = json.loads(trader(running_suite, "job", "history", command[2], "--json").stdout)
        assert not history.get("runs")

