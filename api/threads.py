"""Blocking calls (database, broker, storage) from the API's event loop, on one thread pool per process.

Every request that reads or writes state makes two of these calls (the API key
lookup, then the use case), so their overhead is paid twice per request.
Starlette's ``run_in_threadpool`` goes through anyio's worker threads,
capacity limiter and cancel scopes: about 130–160 µs of CPU per call here,
against 30–40 µs for the event loop's own ``run_in_executor``
(``python -m bench.thread_hop``).  The pool has ``API_THREADS`` threads: the
calls are short, and more threads mostly contend for the GIL.

A call whose awaiting request is cancelled (the client went away) still runs to
its end in its thread; only its answer is dropped, as with anyio.

Submissions go through :func:`run_submission`: validating a large archive
holds a thread for a long while, so at most half of the threads (at least
one) do submission work at once, and further submissions wait on an
asyncio semaphore, holding no thread, while every other request keeps the
rest of the pool.
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_submissions: asyncio.Semaphore | None = None
_submission_slots = 1


def start(threads: int) -> None:
    """Size this process's pool (the app's lifespan calls it; :func:`run` starts a default one otherwise)."""
    global _pool, _submissions, _submission_slots
    stop()
    _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="api-blocking")
    _submission_slots = submission_slots(threads)
    _submissions = None  # made on first use, in the event loop that awaits it


def submission_slots(threads: int) -> int:
    """How many of ``threads`` may do submission work at once: half, at least one."""
    return max(1, threads // 2)


def stop() -> None:
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False)


async def run(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` on the pool; the event loop serves other requests meanwhile."""
    if _pool is None:
        from core.settings import get_settings

        start(get_settings().api_threads)
    call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
    return await asyncio.get_running_loop().run_in_executor(_pool, call)


async def run_submission(fn: Callable[..., T], *args, **kwargs) -> T:
    """:func:`run` for submission work: waits (without a thread) while :func:`submission_slots` submissions run."""
    global _submissions
    if _pool is None:
        from core.settings import get_settings

        start(get_settings().api_threads)
    if _submissions is None:
        _submissions = asyncio.Semaphore(_submission_slots)
    async with _submissions:
        return await run(fn, *args, **kwargs)
