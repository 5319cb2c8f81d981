"""CPU per hand-off of a blocking call from the event loop to a thread: anyio (Starlette) vs ``api.threads``.

Each API request that touches state makes two hand-offs (the API key lookup,
then the use case), so their cost is paid twice per request.  The benchmark
runs a trivial function through each mechanism from 32 concurrent tasks on
uvloop (as uvicorn does), with the thread count the API uses (API_THREADS),
and reports the CPU time per call.  No service is started.

    python -m bench.thread_hop [--calls 20000] [--threads 8] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import uvloop
from anyio import to_thread
from starlette.concurrency import run_in_threadpool

from api import threads
from bench import common

NAME = "thread_hop"
CONCURRENCY = 32


def _noop(x: int) -> int:
    return x + 1


async def _measure(hop, calls: int) -> tuple[float, float]:
    """(µs of CPU per call, calls per second) over ``calls`` calls from CONCURRENCY tasks."""
    async def task(n: int) -> None:
        for i in range(n):
            await hop(_noop, i)

    await asyncio.gather(*(task(100) for _ in range(CONCURRENCY)))  # warm-up: threads started
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(task(calls // CONCURRENCY) for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    done = CONCURRENCY * (calls // CONCURRENCY)
    return 1e6 * cpu / done, done / wall


async def _round(threads_n: int, calls: int) -> dict:
    to_thread.current_default_thread_limiter().total_tokens = threads_n
    threads.start(threads_n)
    try:
        anyio_us, anyio_rate = await _measure(run_in_threadpool, calls)
        pool_us, pool_rate = await _measure(threads.run, calls)
    finally:
        threads.stop()
    return {"anyio_us": anyio_us, "anyio_per_s": anyio_rate, "pool_us": pool_us, "pool_per_s": pool_rate}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=8, help="threads of each pool (API_THREADS)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    started = common.machine()
    print(f"[{NAME}] at start: {common.describe(started)}")
    rounds = [uvloop.run(_round(args.threads, args.calls)) for _ in range(args.rounds)]
    rows = [("mechanism", "µs CPU per call (median)", "calls/s (median)")]
    medians = {k: round(statistics.median(r[k] for r in rounds), 1) for k in rounds[0]}
    rows.append(("starlette.concurrency.run_in_threadpool (anyio)", medians["anyio_us"], medians["anyio_per_s"]))
    rows.append(("api.threads.run (loop.run_in_executor)", medians["pool_us"], medians["pool_per_s"]))
    common.print_table(f"{args.calls} trivial calls from {CONCURRENCY} tasks, {args.threads} threads, {args.rounds} rounds", rows)
    result = {"benchmark": NAME, "machine": started, "threads": args.threads, "calls": args.calls,
              "rounds": rounds, "median": medians}
    common.write_result(NAME, result)
    return result


if __name__ == "__main__":
    main()
