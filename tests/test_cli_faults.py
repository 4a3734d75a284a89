"""Issue 11, a new user's findings about the `trader` command, each kept as an example of its
kind: nothing listening is one UNAVAILABLE line naming the address (never a long wait), a
malformed setting is one line and exit code 2 with nothing created, an empty path option is
refused, `trader call` takes --json and needs the token like every other command, and the
report states the fee as it was charged."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest
from typer.testing import CliRunner

from gateway import backtest as backtest_module
from gateway import report
from gateway.cli import app
from services.common.config import REPO_ROOT, SERVICES, ConfigError
from services.common.shutdown import StopRequest
from tests.helpers import free_port

TOKEN = "a-token-of-sixteen-or-more"
BACKTEST = ["backtest", "--start", "2018-01-02", "--end", "2018-02-28"]


@pytest.fixture
def nothing_listens(monkeypatch) -> dict[str, str]:
    """Every service's address on a port where nothing listens, and a token."""
    addresses = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
    for name, address in addresses.items():
        monkeypatch.setenv(f"TRADER_{name.upper()}_ADDR", address)
    monkeypatch.setenv("TRADER_API_TOKEN", TOKEN)
    return addresses


@pytest.mark.parametrize(("command", "service"), [
    (["plan"], "planner"),
    (["cycle", "--as-of", "2019-03-01T20:30:00Z"], "gateway"),
    (["status"], "gateway"),
    (["portfolio"], "portfolio"),
    (["orders", "--json"], "trading"),
    (["trades"], "trading"),
    (["jobs"], "gateway"),
    (["job", "run", "maintenance"], "gateway"),
    (["call", "trading/ListTrades", "{}"], "trading"),
    (["call", "data"], "data"),
])
def test_nothing_listening_is_one_unavailable_line_naming_the_address(nothing_listens, command, service):
    """`plan` waited 300 s and `status` 30 s for a connection, then said DEADLINE_EXCEEDED."""
    result = CliRunner().invoke(app, command)
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1, result.output
    assert len(errors) == 1 and errors[0].startswith(
        f"error: UNAVAILABLE: no connection to {service} at {nothing_listens[service]} within "), result.output
    assert "Connection refused" in errors[0] and "DEADLINE_EXCEEDED" not in result.output


def test_call_takes_json_as_every_command_does(nothing_listens):
    result = CliRunner().invoke(app, ["call", "trading/ListTrades", "{}", "--json"])
    assert "No such option" not in result.output
    assert result.exit_code == 1 and "error: UNAVAILABLE: no connection to trading" in result.output


def test_call_without_a_token_is_refused_at_once_like_every_command(nothing_listens, monkeypatch):
    monkeypatch.delenv("TRADER_API_TOKEN")
    for command in (["call", "trading/ListTrades", "{}"], ["orders"]):
        result = CliRunner().invoke(app, command)
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert result.exit_code == 2 and len(errors) == 1 and "TRADER_API_TOKEN is not set" in errors[0], \
            result.output
    # Health and reflection are served without a token: listing a service's methods needs none.
    listing = CliRunner().invoke(app, ["call", "data"])
    assert listing.exit_code == 1 and "UNAVAILABLE" in listing.output and "TRADER_API_TOKEN" not in listing.output


@pytest.mark.parametrize(("variable", "value", "problem"), [
    ("TRADER_FX_RATES", "USD=abc", "TRADER_FX_RATES='USD=abc': 'USD=abc': rate is not a number"),
    ("TRADER_PAPER_SLIPPAGE", "lots", "TRADER_PAPER_SLIPPAGE"),
    ("TRADER_CALL_TIMEOUT_S", "-3", "TRADER_CALL_TIMEOUT_S"),
])
def test_a_malformed_setting_is_one_line_exit_2_and_creates_nothing(tmp_path, variable, value, problem):
    """It was a traceback (exit code 1) leaving an empty /tmp/trader-backtest-* behind."""
    temporary, out = tmp_path / "tmp", tmp_path / "out" / "report"
    temporary.mkdir()
    env = {**os.environ, variable: value, "TMPDIR": str(temporary)}
    refused = subprocess.run([sys.executable, "-m", "gateway.cli", *BACKTEST, "--out", str(out)], cwd=REPO_ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr
    assert errors[0].startswith("error: invalid configuration:") and problem in errors[0], refused.stderr
    assert "Traceback" not in refused.stderr
    assert not any(temporary.iterdir()) and not (tmp_path / "out").exists()


def test_run_backtest_refuses_a_malformed_setting_before_making_a_state_directory(monkeypatch):
    made = []
    monkeypatch.setattr(backtest_module.tempfile, "mkdtemp", lambda prefix: made.append(prefix))
    settings = backtest_module.BacktestSettings(date(2018, 1, 2), date(2018, 1, 31), 10_000.0, 1_000.0)
    with pytest.raises(ConfigError, match="rate is not a number"):
        backtest_module.run_backtest(settings, StopRequest(), {"TRADER_FX_RATES": "USD=abc"}, say=lambda _: None)
    assert made == []


@pytest.mark.parametrize("keep", [False, True])
def test_a_failed_start_removes_the_state_directory_it_made(tmp_path, monkeypatch, keep):
    state = tmp_path / "state"
    monkeypatch.setattr(backtest_module.tempfile, "mkdtemp", lambda prefix: str(state))

    def broken(self, env, state_dir, say):
        raise RuntimeError("cannot supervise")

    monkeypatch.setattr(backtest_module.System, "__init__", broken)
    settings = backtest_module.BacktestSettings(date(2018, 1, 2), date(2018, 1, 31), 10_000.0, 1_000.0)
    with pytest.raises(RuntimeError):
        backtest_module.run_backtest(settings, StopRequest(), {}, say=lambda _: None,
                                     keep_state=state if keep else None)
    assert not state.exists()


def test_a_failed_backtest_removes_the_out_directories_it_made(tmp_path, monkeypatch):
    def failing(*_args, **_kwargs):
        raise backtest_module.BacktestFailed("the services did not start: data exited with code 1")

    monkeypatch.setattr(backtest_module, "run_backtest", failing)
    result = CliRunner().invoke(app, [*BACKTEST, "--out", str(tmp_path / "new" / "report")])
    assert result.exit_code == 1 and "error: the services did not start" in result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option", ["--out", "--keep-state"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_path_is_refused_naming_the_option(tmp_path, monkeypatch, option, value):
    """`--out ""` wrote the report into the current directory."""
    monkeypatch.chdir(tmp_path)
    extra = [option, value] + (["--out", str(tmp_path / "out")] if option != "--out" else [])
    result = CliRunner().invoke(app, [*BACKTEST, *extra])
    assert result.exit_code == 2 and f"Invalid value for '{option}': an empty path" in result.output, result.output
    assert not any(tmp_path.iterdir())


def _run(base: str, fee_rates: dict[str, float]) -> backtest_module.BacktestRun:
    settings = backtest_module.BacktestSettings(date(2019, 1, 2), date(2019, 1, 3), 10_000.0, 0.0,
                                                base_currency=base, minutes_before_close=45)
    run = backtest_module.BacktestRun(settings, base, universe=["AAPL.US", "SAP.DE"], fee_rates=fee_rates)
    run.securities = {s: backtest_module.SecurityInfo(s, c, "XNYS", 1, True, True)
                      for s, c in (("AAPL.US", "USD"), ("SAP.DE", "EUR"), (report.INDEX, "USD"))}
    at = datetime(2019, 1, 2, 20, 30, tzinfo=UTC)
    run.days = [backtest_module.DayRecord(date(2019, 1, 2), at, (), 10_000.0, 10_000.0, "")]
    return run


def test_the_report_states_the_fee_as_charged():
    """report.md said "2 EUR + 0.2%" whatever the base currency."""
    run = _run("USD", {"EUR": 0.9})
    text = report._markdown(run, [], [])
    assert "Fees: 2 USD + 0.2% of the value per order, the fixed part converted at EUR=0.9 per USD" in \
        " ".join(text.split())
    assert "2 EUR" not in text and "45 minutes before the close" in " ".join(text.split())
    euro = report.fee_text(_run("EUR", {"USD": 1.1}))
    assert euro == "2 EUR + 0.2% of the value per order, the fixed part converted at USD=1.1 per EUR (TRADER_FX_RATES)"


def test_the_report_json_carries_the_fee():
    document = report._document(_run("GBP", {"EUR": 1.15, "USD": 1.27}), [], [])
    assert document["settings"]["fee"]["fixed_base"] == 2.0 and document["settings"]["fee"]["rate"] == 0.002
    assert document["settings"]["fee"]["text"].startswith("2 GBP + 0.2%")
    assert "EUR=1.15, USD=1.27 per GBP" in document["settings"]["fee"]["text"]

