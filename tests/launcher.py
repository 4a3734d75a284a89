"""`python -m gateway.launch` (make run) as a test drives it: its output read line by line, its
children found in /proc."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from services.common.config import REPO_ROOT, SERVICES
from tests.helpers import free_port

LINE = re.compile(r"^(\d{4}-\d{2}-\d{2})  value EUR +([\d,]+\.\d\d)  cash EUR +([\d,]+\.\d\d)  "
                  r"trade: (.+)  display: (.+)$")


def launcher_env(tmp_path, **extra):
    env = {**os.environ, "TRADER_VAR_DIR": str(tmp_path), "TRADER_REPLAY_CYCLES_PER_SECOND": "0", **extra}
    env.pop("TRADER_API_TOKEN", None)
    env.update({f"TRADER_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in SERVICES})
    return env


class Launcher:
    """`python -m gateway.launch` with its output read line by line in the background."""

    def __init__(self, env):
        self.process = subprocess.Popen([sys.executable, "-m", "gateway.launch"], cwd=REPO_ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, predicate, timeout_s: float = 120) -> str:
        """The next line matching `predicate` (every line read is kept in `seen`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError("expected line not seen; output so far:\n" + "\n".join(self.seen[-40:]))

    def saw(self, text: str) -> bool:
        """Whether a line equal to `text` was printed so far (without waiting)."""
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return text in self.seen

    def children(self) -> dict[str, int]:
        return children_of(self.process.pid)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        for pid in self.children().values():
            os.kill(pid, signal.SIGKILL)


def children_of(parent: int) -> dict[str, int]:
    """Service name -> pid of the processes `parent` started (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"-m" in argv:
            module = argv[argv.index(b"-m") + 1].decode()
            found[module.rsplit(".", 1)[-1]] = int(entry.name)
    return found


def cycle_day(line: str) -> str | None:
    match = LINE.match(line.split("  | ")[0])
    return match.group(1) if match else None


def cycle_ok(line: str) -> bool:
    """A cycle line without a FAILED step (a REFUSED trade is an ok cycle)."""
    return " FAILED: " not in line.partition("  | ")[2]
