"""Stop requests that cannot deadlock, and children that die with their parent.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds a lock; a handler that takes a lock (threading.Event.set does) can deadlock
against it, and a burst of signals makes that likely. So the handler here only assigns an
attribute; the main thread waits on a self-pipe that the C-level handler wakes
(`signal.set_wakeup_fd`), and other threads wake it by writing to the same pipe.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_PID_VARIABLE = "TRADER_PARENT_PID"


class StopRequest:
    """A one-way "please stop" flag: raised by SIGTERM/SIGINT or `request()` from any thread,
    awaited by the main thread with `wait()`."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.reason: str | None = None
        self._signums: tuple[int, ...] = ()

    def install(self, signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Handle `signums` (main thread only): each raises the request; repeats change nothing."""
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._signums = signums
        for signum in signums:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        # Only an attribute assignment: safe however often and wherever it interrupts.
        if self.reason is None:
            self.reason = signal.Signals(signum).name

    def request(self, reason: str = "requested") -> None:
        """Raise the request from any thread."""
        if self.reason is None:
            self.reason = reason
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the main thread is about to wake anyway

    def is_set(self) -> bool:
        return self.reason is not None

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the request is raised or `timeout_s` passes; True when it was raised."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.reason is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            # Short slices: a signal's Python handler runs after select returns, not before.
            select.select([self._read_fd], [], [], 0.5 if left is None else min(left, 0.5))
            self._drain()
        if self.reason is None:
            return False
        # Stopping: later signals change nothing. Ignored (not handled) they also cannot kill the
        # process while the interpreter exits, when Python puts its handlers back to the default.
        for signum in self._signums:
            signal.signal(signum, signal.SIG_IGN)
        return True

    def _drain(self) -> None:
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """On Linux, ask the kernel to send `signum` to this process when the process that started
    it (named by TRADER_PARENT_PID) dies, so a killed launcher never leaves orphans behind.

    Called by the child itself at start-up (no preexec_fn: the launcher has threads). If the
    parent is already gone, the signal is raised at once. Elsewhere this does nothing.
    """
    parent = os.environ.get(PARENT_PID_VARIABLE)
    if not sys.platform.startswith("linux") or not parent or not parent.isdigit():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os.kill(os.getpid(), signum)
