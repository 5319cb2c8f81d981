"""POST /jobs throughput: 32 concurrent clients submitting square.zip against the real service.

The simulation workers are stopped first so SUMO does not compete for the CPUs
(admission and the other control workers keep running, as in production).  The
load comes from bombardier (a Go HTTP benchmarking tool, ``make bench-tools``
installs it under ``$SUMO_K8_CACHE/bin``) sending one multipart body encoded
once over keep-alive connections: it costs ~0.3 ms of CPU per request, where a
Python client cost ~6 ms and took a third of this 2-core machine.  Its CPU
use is reported so a client-bound figure is recognisable.  The API is measured
with 1 and with 2 uvicorn workers, each on a stack of its own (``--runs`` repeats
them in turn).

Each submission stores its input as a new file, and on this VM's journal-less
ext4 creating a file costs up to ten times more for minutes after many files
were deleted nearby (``bench.common.file_create_probe_us``).  So the stacks'
directories are deleted only when the process exits, and each run prints the
file-create probe next to the CPU and round-trip probes: a run that started
within ~6 minutes of a mass deletion (another benchmark's clean-up, a test run)
shows it there.

    python -m bench.submit_throughput [--requests 3000] [--concurrency 32] [--api-workers 1,2] [--runs 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

import httpx
import psutil

from bench import common

NAME = "submit_throughput"
SLOW_FILE_CREATE_US = 150  # the file-create probe above this: the run is taxed by recent deletions (see docstring)


def bombardier() -> str:
    """The load generator's path: $BOMBARDIER, else the one ``make bench-tools`` installed."""
    path = os.environ.get("BOMBARDIER") or str(common.cache_dir() / "bin" / "bombardier")
    if not os.access(path, os.X_OK):
        raise SystemExit(f"bombardier not found at {path}: run `make bench-tools` (go install into the cache)")
    return path


def _tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_snapshot(s) -> dict[str, float]:
    """CPU seconds (user+system) used so far by each part of the stack (live processes only)."""
    pids = {name: proc.process.pid for name, proc in s.procs.items() if proc.process and proc.process.poll() is None}
    pids.update({svc.name: svc.process.pid for svc in s.services})
    out = {}
    for name, pid in pids.items():
        total = 0.0
        for p in _tree(pid):
            try:
                t = p.cpu_times()  # children_*: reaped children, e.g. PostgreSQL backends that exited
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
        out[name] = total
    return out


def _run(url: str, tenant: dict, body: bytes, count: int, concurrency: int, timeout: float) -> dict:
    """``count`` submissions over ``concurrency`` connections; wall time, latencies and errors as bombardier saw them."""
    template = httpx.Request("POST", url + "/jobs", data=common.submit_form(),
                             files={"sumo_files": ("scenario.zip", body, "application/zip")})
    with tempfile.NamedTemporaryFile(prefix="sumo-k8-bench-body-") as payload:
        payload.write(template.read())
        payload.flush()
        argv = [bombardier(), "--connections", str(concurrency), "--requests", str(count), "--method", "POST",
                "--body-file", payload.name, "--header", f"Content-Type: {template.headers['Content-Type']}",
                "--header", f"Authorization: Bearer {tenant['api_key']}", "--timeout", "60s",
                "--latencies", "--print", "result", "--format", "json", url + "/jobs"]
        before, t0 = os.times(), time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
        wall, after = time.perf_counter() - t0, os.times()
    result = json.loads(done.stdout)["result"]
    errors = {k: v for k, v in result.items() if k in ("req1xx", "req3xx", "req4xx", "req5xx", "others") and v}
    errors.update({e["description"]: e["count"] for e in result.get("errors") or []})
    return {
        "ok": result["req2xx"],
        "errors": errors,
        "wall_s": wall,
        "latency_ms": {f"p{p}_ms": round(us / 1000, 2) for p, us in result["latency"]["percentiles"].items()},
        "max_ms": round(result["latency"]["max"] / 1000, 2),
        "client_cpu_s": (after.children_user + after.children_system) - (before.children_user + before.children_system),
    }


def drain_queues(s, timeout: float) -> bool:
    """Wait until the control queues are empty (admission of the previous batch finished)."""
    def empty():
        r = httpx.get(s.url + "/admin/queues", headers={"X-Admin-Key": s.env["ADMIN_KEY"]}, timeout=30)
        return all(q["ready"] == 0 and q["in_flight"] == 0 for q in r.json()["queues"] if q["queue"] != "simulations")
    try:
        common.wait_until(empty, timeout, "control queues to drain", interval=0.5)
        return True
    except TimeoutError:
        return False


def measure(s, api_workers: int, args) -> dict:
    drained = drain_queues(s, args.drain_timeout)
    tenant = common.register_tenant(s)
    body = (common.ZIPS / args.archive).read_bytes()
    _run(s.url, tenant, body, args.warmup, args.concurrency, args.timeout)  # warm-up: not counted
    drain_queues(s, args.drain_timeout)
    load = common.load_average()
    probe = common.cpu_probe_ms()
    round_trip = common.round_trip_probe_us()
    # The directory LocalStore keeps this tenant's inputs in (created by the warm-up's first submission).
    file_create = common.file_create_probe_us(s.data_dir / "storage" / "inputs" / tenant["tenant_id"])
    if file_create > SLOW_FILE_CREATE_US:
        print(f"[{NAME}] api_workers={api_workers}: creating a file in the store takes {file_create} µs (40-90 µs "
              "when no files were deleted nearby in the last ~6 min): this run measures the filesystem's clean-up")
    pg_before = common.pg_counters(s.env["DATABASE_URL"])
    before, steal_before = cpu_snapshot(s), common.steal_seconds()
    res = _run(s.url, tenant, body, args.requests, args.concurrency, args.timeout)
    after, steal_after = cpu_snapshot(s), common.steal_seconds()
    steal = None if steal_before is None or steal_after is None else round(steal_after - steal_before, 2)
    pg = common.counter_delta(pg_before, common.pg_counters(s.env["DATABASE_URL"]))
    server_cpu = {k: round(after.get(k, 0) - before.get(k, 0), 2) for k in after}
    ok = res["ok"]
    return {
        "api_workers": api_workers,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "ok": ok,
        "errors": sum(res["errors"].values()),
        "error_kinds": res["errors"],
        "wall_s": round(res["wall_s"], 3),
        "submissions_per_s": round(ok / res["wall_s"], 1),
        "latency": {**res["latency_ms"], "max_ms": res["max_ms"]},
        "client": "bombardier",
        "client_cpu_s": round(res["client_cpu_s"], 2),
        "client_cpu_pct_of_one_core": round(100 * res["client_cpu_s"] / res["wall_s"], 1),
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_submission": {k: round(1000 * v / max(ok, 1), 2) for k, v in server_cpu.items()},
        "postgres_counters": pg,
        "load_average_before": load,
        "cpu_probe_ms_before": probe,
        "round_trip_probe_us_before": round_trip,
        "file_create_probe_us_before": file_create,
        "cpu_stolen_s": steal,
        "cpu_stolen_pct": None if steal is None else round(100 * steal / (res["wall_s"] * (os.cpu_count() or 1)), 1),
        "previous_queues_drained": drained,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--api-workers", default="1,2", help="comma-separated uvicorn worker counts to try")
    ap.add_argument("--runs", type=int, default=1, help="measure each worker count this many times (in turn, each on a fresh stack)")
    ap.add_argument("--archive", default="square.zip")
    ap.add_argument("--timeout", type=float, default=600, help="bound of each measured batch, seconds")
    ap.add_argument("--drain-timeout", type=float, default=180)
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="service setting for this run (repeatable), e.g. --env DB_POOL_MIN=10")
    ap.add_argument("--out-name", default=NAME, help="bench/out/<name>.json")
    args = ap.parse_args(argv)
    overrides = dict(kv.split("=", 1) for kv in args.env)
    started = common.machine()
    print(f"[{NAME}] at start: {common.describe(started)}")
    print(f"[{NAME}] simulation workers are STOPPED during the measurement (SUMO does not compete for the CPUs); "
          "control workers, sweeper, PostgreSQL and Redis run as usual")
    runs = []
    if overrides:
        print(f"[{NAME}] settings overridden for this run: {overrides}")
    counts = [int(x) for x in args.api_workers.split(",") if x.strip()]
    for w in counts * args.runs:
        # A fresh stack per worker count: the jobs one measurement admitted stay ADMITTED (no simulation
        # workers), and in a shared stack the sweeper's re-sends of them would land in the next measurement.
        with common.stack(NAME, env=overrides, api_workers=w) as s:
            common.stop_simulations(s)
            print(f"[{NAME}] api_workers={w}: {args.warmup} warm-up + {args.requests} measured requests, {args.concurrency} concurrent")
            runs.append(measure(s, w, args))
    rows = [("api_workers", "submissions/s", "p50 ms", "p99 ms", "max ms", "errors", "client CPU %", "server CPU s (api/workers/postgres/redis)")]
    for r in runs:
        c = r["server_cpu_s"]
        rows.append((r["api_workers"], r["submissions_per_s"], r["latency"].get("p50_ms"), r["latency"].get("p99_ms"),
                     r["latency"].get("max_ms"), r["errors"], r["client_cpu_pct_of_one_core"],
                     f"{c.get('api')}/{c.get('workers')}/{c.get('postgres')}/{c.get('redis')} in {r['wall_s']} s"))
    common.print_table(f"POST /jobs ({args.archive}), {args.concurrency} concurrent clients, simulation workers stopped", rows)
    for r in runs:
        pg = r["postgres_counters"]
        print(f"  api_workers={r['api_workers']} (CPU probe {r['cpu_probe_ms_before']} ms, round trip {r['round_trip_probe_us_before']} µs, "
              f"file create {r['file_create_probe_us_before']} µs, CPU stolen by the hypervisor {r['cpu_stolen_pct']} %): server CPU ms per submission {r['server_cpu_ms_per_submission']}; "
              f"PostgreSQL sessions opened {pg['sessions']}, commits {pg['xact_commit']} during {r['ok']} submissions")
        if r["errors"]:
            print(f"  api_workers={r['api_workers']} errors: {r['error_kinds']}")
    result = {"benchmark": NAME, "machine": started, "simulation_workers": "stopped", "settings_overridden": overrides, "runs": runs}
    common.write_result(args.out_name, result)
    return result


if __name__ == "__main__":
    main()
