"""The `trader` command's output when piped or redirected: tables keep each row on one line
(rich's non-terminal default of 80 columns wrapped and cut their cells); COLUMNS still rules."""

from __future__ import annotations

import os
import subprocess
import sys

from services.common.config import REPO_ROOT

WIDTH = "from gateway import cli; print(cli.out.width)"


def _width(**env: str) -> int:
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | env
    shown = subprocess.run([sys.executable, "-c", WIDTH], cwd=REPO_ROOT, env=environment, capture_output=True,
                           text=True, timeout=60, check=True)
    return int(shown.stdout)


def test_a_piped_table_is_not_cut_at_80_columns():
    assert _width() == 1000


def test_columns_sets_the_width_of_piped_output():
    assert _width(COLUMNS="60") == 60


def test_a_long_row_stays_one_line_when_piped():
    code = ("from rich.table import Table; from gateway import cli; t = Table('symbol', 'detail'); "
            "t.add_row('AAPL.US', 'x' * 150); cli.out.print(t)")
    shown = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={k: v for k, v in os.environ.items()
                                                                              if k != "COLUMNS"},
                           capture_output=True, text=True, timeout=60, check=True)
    assert any("AAPL.US" in line and "x" * 150 in line for line in shown.stdout.splitlines()), shown.stdout
