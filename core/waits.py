"""The one bounded wait and the one free-port helper, for the service, its dev stacks and its tests.

A wait polls a condition until it gives something truthy and returns that; past its timeout it raises
``TimeoutError`` naming what it waited for.  Nothing in this project sleeps for a fixed time instead.
"""
from __future__ import annotations

import socket
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, *, interval: float = 0.05,
               backoff: float = 1.0, max_interval: float = 2.0,
               not_yet: tuple[type[BaseException], ...] = (), check: Callable[[], None] | None = None) -> T:
    """Poll ``condition`` until it returns a truthy value, and return that.

    ``interval`` grows by ``backoff`` after each poll, up to ``max_interval``.  Exceptions of the
    ``not_yet`` types count as "not yet" (the last one is named on timeout); ``check`` runs before each
    poll and may raise to give up at once (e.g. a process the wait depends on has died).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        if check is not None:
            check()
        try:
            value = condition()
            if value:
                return value
            last = value
        except not_yet as exc:
            last = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(min(interval, remaining))
        interval = min(interval * backoff, max_interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
