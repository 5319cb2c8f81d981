"""Small helpers to run control-plane processes and wait on conditions.

Every child runs in its own session/process group, so stopping it (SIGTERM,
then SIGKILL after a bound) also reaps anything it forked.  Output goes to a
per-process log file that is quoted in error messages when a start fails.
Waiting is always "poll a condition until true or a deadline passes" - never
a fixed sleep.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from core.waits import wait_until

T = TypeVar("T")
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGTERM if the harness dies (even
    by SIGKILL), so no etcd/apiserver outlives a crashed test run.  Note the
    signal fires when the *thread* that started the child exits."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Proc:
    """A child process in its own process group with output in ``log``."""

    def __init__(self, name: str, argv: Sequence[str], log: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None):
        self.name, self.argv, self.log = name, list(argv), log
        self._fh = open(log, "ab", buffering=0)
        self._fh.write(("+ " + " ".join(self.argv) + "\n").encode())
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._fh,
            stderr=subprocess.STDOUT, start_new_session=True,
            env=env, cwd=cwd, preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        """Raise if the process already exited (with its log tail)."""
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}; log {self.log}:\n"
                + tail(self.log)
            )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if still alive after ``grace``."""
        if self.alive():
            _killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        _killpg(self.pid, signal.SIGKILL)  # also any leftover group members
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._fh.close()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(what: str, cond: Callable[[], T], timeout: float,
             interval: float = 0.25, alive: Sequence[Proc] = ()) -> T:
    """:func:`core.waits.wait_until` for the cluster's processes: exceptions from ``cond`` count as
    "not yet", and it gives up at once (``RuntimeError``) if one of the ``alive`` processes died."""
    return wait_until(cond, timeout, what, interval=interval, not_yet=(Exception,),
                      check=lambda: [p.check() for p in alive] and None)
