"""The API's thread hand-off (api.threads) and the processes' collector settings (core.gc_policy)."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from api import threads
from core import gc_policy


def test_blocking_calls_run_on_the_pool_with_their_arguments_and_errors():
    def where(a, *, b):
        return threading.current_thread().name, a + b

    def fails():
        raise LookupError("from the thread")

    async def scenario():
        threads.start(2)
        try:
            name, total = await threads.run(where, 1, b=2)
            with pytest.raises(LookupError, match="from the thread"):
                await threads.run(fails)
            names = {n for n, _ in await asyncio.gather(*(threads.run(where, i, b=0) for i in range(20)))}
            return name, total, names
        finally:
            threads.stop()

    name, total, names = asyncio.run(scenario())
    assert total == 3
    assert name.startswith("api-blocking")
    assert len(names) <= 2 and all(n.startswith("api-blocking") for n in names)


def test_a_call_before_the_lifespan_started_the_pool_gets_a_default_one():
    threads.stop()
    try:
        assert asyncio.run(threads.run(lambda: threading.current_thread().name)).startswith("api-blocking")
    finally:
        threads.stop()


def test_settle_freezes_what_was_loaded_and_raises_the_thresholds():
    # In a fresh interpreter: the test process's own collector stays as pytest set it.
    code = ("import gc; from core import gc_policy; before = gc.get_freeze_count(); gc_policy.settle(); "
            "print(before, gc.get_freeze_count(), *gc.get_threshold())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, frozen, *thresholds = map(int, out)
    assert before == 0 and frozen > 1000
    assert tuple(thresholds) == gc_policy.THRESHOLDS
