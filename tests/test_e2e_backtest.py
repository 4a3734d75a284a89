"""`trader backtest` end to end (six processes): a short backtest writes every file of the report,
the strategy and both benchmarks received the same deposits, the rule audit found nothing, and
a second run of the same inputs writes the same report.json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.common.config import REPO_ROOT

pytestmark = pytest.mark.e2e
ARGS = ["backtest", "--start", "2018-01-02", "--end", "2018-02-28", "--initial-deposit", "10000",
        "--monthly-deposit", "1000", "--base-currency", "EUR"]


def backtest(out, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *ARGS, "--out", str(out), *extra], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    return (first, backtest(first)), (second, backtest(second))


def test_the_report_is_complete(runs):
    (out, finished), _ = runs
    assert finished.returncode == 0, finished.stderr[-3000:] + finished.stdout[-3000:]
    for name in ("report.json", "report.md", "equity.png", "drawdown.png", "trades.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "![equity](equity.png)" in markdown and "![drawdown](drawdown.png)" in markdown
    assert "rule audit: " in finished.stdout and "0 violations" in finished.stdout
    report = json.loads((out / "report.json").read_text())
    trades = (out / "trades.csv").read_text().splitlines()
    assert len(trades) - 1 == report["lines"][0]["trades"] > 0


def test_every_line_received_the_same_deposits_and_no_rule_was_broken(runs):
    (out, _), _ = runs
    report = json.loads((out / "report.json").read_text())
    strategy, index, basket = report["lines"]
    assert strategy["line"] == "strategy" and "SP500.IDX" in index["line"] and "equal-weight" in basket["line"]
    assert strategy["net_deposits"] == index["net_deposits"] == basket["net_deposits"] == 12_000.0
    assert [d["amount"] for d in report["deposits"]] == [10_000.0, 1_000.0, 1_000.0]
    assert report["rule_audit"] == {"trades_checked": strategy["trades"], "violations": 0, "offending": []}
    for line in report["lines"]:
        assert line["final_value"] > 0 and line["fees_paid"] > 0 and line["time_weighted_return"] is not None


def test_the_same_inputs_give_the_same_report(runs):
    (first, _), (second, again) = runs
    assert again.returncode == 0, again.stderr[-3000:]
    assert (first / "report.json").read_bytes() == (second / "report.json").read_bytes()
    assert (first / "trades.csv").read_bytes() == (second / "trades.csv").read_bytes()


def test_bad_arguments_are_refused_before_anything_starts(tmp_path):
    refused = subprocess.run([sys.executable, "-m", "gateway.cli", "backtest", "--start", "2018-13-01",
                              "--out", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "not a date" in refused.stderr
    afile = tmp_path / "afile"
    afile.write_text("")
    used = tmp_path / "used-state"
    (used / "logs").mkdir(parents=True)
    for state, message in ((afile, "exists and is not a directory"), (used, "is not empty (a backtest starts from")):
        refused = subprocess.run([sys.executable, "-m", "gateway.cli", *ARGS, "--out", str(tmp_path / "r"),
                                  "--keep-state", str(state)], cwd=REPO_ROOT, capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 2 and f"--keep-state {state}: {message}" in refused.stderr, refused.stderr
    for out, message in ((afile, "exists and is not a directory"), ("/proc/no-such-dir", "cannot write there")):
        refused = subprocess.run([sys.executable, "-m", "gateway.cli", *ARGS, "--out", str(out)], cwd=REPO_ROOT,
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and message in " ".join(refused.stderr.replace("│", " ").split())


@pytest.mark.parametrize(("arguments", "message"), [
    (("--start", "1985-01-02", "--end", "1985-06-28"), "--start 1985-01-02: outside the bundled history"),
    (("--start", "2023-01-03"), "--start 2023-01-03: outside the bundled history"),
    (("--start", "2019-01-02", "--end", "2030-06-28"), "--end 2030-06-28: outside the bundled history"),
    (("--start", "2019-01-02", "--base-currency", "XXX"), "--base-currency XXX: the ECB publishes no reference rate"),
    (("--start", "2019-01-02", "--base-currency", "GBP"),
     "--base-currency GBP: the paper broker converts its fee at TRADER_FX_RATES, which has no rate for USD"),
    (("--start", "2020-02-15", "--end", "2020-02-16"), "no XNYS session (a weekend or holiday)"),
    (("--start", "2020-12-25", "--end", "2020-12-25"), "no XNYS session (a weekend or holiday)"),
    (("--start", "2019-01-02", "--universe", "AAPL.US,NOPE.US"), "not an equity of the bundled sample: NOPE.US"),
    (("--start", "2019-01-02", "--universe", "SP500.IDX"), "not an equity of the bundled sample: SP500.IDX"),
])
def test_ranges_symbols_and_currencies_the_sample_cannot_serve_are_refused(tmp_path, arguments, message):
    refused = subprocess.run([sys.executable, "-m", "gateway.cli", "backtest", *arguments, "--out", str(tmp_path)],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and message in " ".join(refused.stderr.replace("│", " ").split()), refused.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("arguments", "message"), [
    (("--start", "2018-13-01"), "Invalid value for '--start': '2018-13-01' is not a date (YYYY-MM-DD)"),
    (("--end", "soon"), "Invalid value for '--end': 'soon' is not a date (YYYY-MM-DD)"),
    (("--initial-deposit", "nan"), "Invalid value for '--initial-deposit': nan is not a finite amount"),
    (("--monthly-deposit", "inf"), "Invalid value for '--monthly-deposit': inf is not a finite amount"),
    (("--initial-deposit", "-1"), "Invalid value for '--initial-deposit': -1 is outside 0..1e+09"),
    (("--universe", ",,"), "Invalid value for '--universe': ',,' names no symbol; give comma-separated symbols or "
                           "@FILE with one a line, or leave the option out for the whole sample"),
    (("--universe", "@/dev/null"), "Invalid value for '--universe': '@/dev/null' names no symbol; give "
                                   "comma-separated symbols or @FILE with one a line, or leave the option out for "
                                   "the whole sample"),
    (("--universe", "@/no/such/file"), "Invalid value for '--universe': @/no/such/file: No such file or directory"),
    (("--start", "2019-01-02", "--end", "2018-12-31"), "Invalid value for '--end': 2018-12-31 is before --start "
                                                       "2019-01-02"),
    (("--monthly-deposit", "abc"),
     "Invalid value for '--monthly-deposit': Input should be a valid number, unable to parse string as a number"),
])
def test_a_bad_option_value_is_one_error_line_naming_the_option(tmp_path, arguments, message):
    refused = subprocess.run([sys.executable, "-m", "gateway.cli", "backtest", *arguments, "--out", str(tmp_path)],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error: ")]
    assert refused.returncode == 2 and errors == [f"Error: {message}"], refused.stderr
    assert "\u256d" not in refused.stderr and not any(tmp_path.iterdir())  # no boxed panel, nothing written


def test_the_sample_range_constants_match_the_bundled_history():
    from services.data.adapters.sample_history import FIRST_CLOSE, LAST_CLOSE, read_sample_history

    _, series = read_sample_history()
    assert min(dates[0] for dates, _ in series.values()) == FIRST_CLOSE.toordinal()
    assert max(dates[-1] for dates, _ in series.values()) == LAST_CLOSE.toordinal()


@pytest.mark.parametrize("logs", [True, False])
def test_a_failed_system_keeps_the_logs_its_message_names(tmp_path, monkeypatch, logs):
    """A start-up or replay failure names the services' logs: a temporary state directory then
    stays; a failure that names none (a caller's mistake) leaves nothing behind."""
    from datetime import date

    from gateway import backtest as backtest_module
    from services.common.shutdown import StopRequest

    state = tmp_path / "state"
    monkeypatch.setattr(backtest_module.tempfile, "mkdtemp", lambda prefix: str(state))

    def start(system, stop):
        raise backtest_module.BacktestFailed("data exited with code 1", system.log_dir if logs else None)

    monkeypatch.setattr(backtest_module.System, "start", start)
    settings = backtest_module.BacktestSettings(date(2018, 1, 2), date(2018, 1, 31), 10_000.0, 1_000.0)
    with pytest.raises(backtest_module.BacktestFailed) as failed:
        backtest_module.run_backtest(settings, StopRequest(), {}, say=lambda _: None)
    if logs:
        assert str(state / "logs") in str(failed.value) and (state / "logs").is_dir()
    else:
        assert "logs in" not in str(failed.value) and not state.exists()


def test_a_failure_is_one_line_however_long(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gateway import backtest as backtest_module
    from gateway.cli import app

    reason = "the replay gave up:" + " a very long reason" * 20

    def failing(*_args, **_kwargs):
        raise backtest_module.BacktestFailed(reason, tmp_path / "logs")

    monkeypatch.setattr(backtest_module, "run_backtest", failing)
    result = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: {reason}; logs in {tmp_path / 'logs'}"], result.output
