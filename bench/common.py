"""Shared pieces of the benchmarks: a whole stack in a temp dir, a tenant, percentiles, output.

Every benchmark starts the real service (embedded PostgreSQL and Redis, uvicorn,
Dramatiq workers, sweeper) through :func:`devstack.stack.start_stack`, so the
figures include every hop a user's request takes.  Results are printed as a
table and written to ``bench/out/<name>.json``.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from devcluster.cluster import cache_dir  # noqa: F401 — one cache root for heavy tools (bench/submit_throughput)
from devstack.services import wait_for as wait_until  # noqa: F401 — used by the benchmarks as common.wait_until

import httpx

ROOT = Path(__file__).resolve().parent.parent
ZIPS = ROOT / "test_networks" / "zips"
OUT = Path(__file__).resolve().parent / "out"

#: The service's defaults except what a throw-away local stack needs, and per-tenant limits raised out of
#: reach: the benchmarks submit hundreds of jobs per second from one tenant, which the defaults (20/s, 500
#: QUEUED) refuse.  Raised, not switched off: every submission still pays the rate check's round trip and
#: the counting insert, as in production.
BASE_ENV = {
    "ADMIN_KEY": "bench-admin-key",
    "PORT": "0",
    "EXECUTOR": "local",
    "LOG_LEVEL": "INFO",
    "DATABASE_URL": "",
    "REDIS_URL": "",
    "SUBMIT_RATE_PER_SECOND": "1000000",
    "SUBMIT_BURST": "1000000",
    "MAX_QUEUED_JOBS_PER_TENANT": "1000000",
}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_probe_ms(rounds: int = 5) -> float:
    """Best-of-``rounds`` time of a fixed pure-Python workload, in ms.

    This VM's CPU speed varies from hour to hour with the host's load (the same
    code has cost up to 1.5x the CPU time per request); printed with every run so
    figures taken at different times can be compared.
    """
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        total = 0
        for i in range(300_000):
            total += i * i % 7
        best = min(best, time.process_time() - t0)
    return round(1000 * best, 1)


_ECHO = "import socket, sys\ns = socket.socket(fileno=int(sys.argv[1]))\nwhile (b := s.recv(1)) not in (b'', b'q'):\n    s.sendall(b)"


def round_trip_probe_us(trips: int = 2000, rounds: int = 3) -> float:
    """Best-of-``rounds`` mean time of a 1-byte round trip to another process over a socketpair, in µs.

    Every request of the service crosses processes several times (HTTP, PostgreSQL, Redis, thread
    wake-ups), and on this VM that cost moves independently of :func:`cpu_probe_ms`: the same code
    has cost 1.6x the CPU per request at an unchanged CPU probe, and this probe is meant to show it.
    """
    ours, theirs = socket.socketpair()
    child = subprocess.Popen([sys.executable, "-c", _ECHO, str(theirs.fileno())], pass_fds=[theirs.fileno()])
    theirs.close()
    best = float("inf")
    try:
        ours.sendall(b"x")
        ours.recv(1)  # the child is up
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(trips):
                ours.sendall(b"x")
                ours.recv(1)
            best = min(best, (time.perf_counter() - t0) / trips)
    finally:
        ours.sendall(b"q")
        ours.close()
        child.wait(10)
    return round(best * 1e6, 1)


def steal_seconds() -> float | None:
    """CPU time the hypervisor gave to others while this VM wanted it (``steal`` in /proc/stat), summed over CPUs."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def describe(m: dict) -> str:
    """How loaded and how fast the machine was (see :func:`machine`), for a benchmark's first line."""
    return (f"load average {m['load_average']} ({m['cpus']} CPUs); CPU probe {m['cpu_probe_ms']} ms, round-trip probe "
            f"{m['round_trip_probe_us']} µs (bench.common: lower is a faster machine)")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": load_average(),
            "cpu_probe_ms": cpu_probe_ms(), "round_trip_probe_us": round_trip_probe_us(),
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def file_create_probe_us(directory: Path, files: int = 50) -> float:
    """Mean time to create, write (3 KB, a square.zip) and close one new file in ``directory``, in µs.

    Each submission stores its input archive as a new file, and this VM's root
    filesystem is an ext4 without a journal.  There the kernel's inode allocator
    (``find_inode_bit``) skips every free inode of the block group that was
    deleted less than 60 s ago (6 min while its inode-table block is still
    dirty), checking each one in the buffer cache, and it starts from the
    group's first inode on every allocation.  After thousands of files were
    deleted near the store (a previous stack's data directory) a create costs
    0.4–0.8 ms of kernel CPU instead of 40–90 µs, which halved the figures of
    ``bench.submit_throughput`` (``perf``: ``recently_deleted`` and
    ``find_get_block_common`` on top).  The files are kept: deleting them would
    tax the next allocations.  They go with the stack's directory at exit.
    Probe the directory the files of interest go to: a file's inode is taken
    from its directory's block group, and each group has its own history.
    """
    directory.mkdir(parents=True, exist_ok=True)
    payload = b"x" * 3000
    t0 = time.perf_counter()
    for _ in range(files):
        fd = os.open(directory / f".fs-probe-{uuid.uuid4().hex}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
    return round((time.perf_counter() - t0) / files * 1e6, 1)


_REMOVE_AT_EXIT: list[Path] = []


@atexit.register
def _remove_stack_dirs() -> None:
    while _REMOVE_AT_EXIT:
        shutil.rmtree(_REMOVE_AT_EXIT.pop(), ignore_errors=True)


@contextmanager
def stack(name: str, *, api_workers: int = 1, env: dict | None = None, sweeper: bool = True,
          process_env: dict[str, dict] | None = None):
    """A whole service in a temp dir; stopped however the block ends, its dir removed when the process exits.

    The directory outlives the stack because deleting thousands of files makes
    the next file creations on this filesystem slow for minutes (see
    :func:`file_create_probe_us`): a measurement must not pay for the clean-up of
    the one before it.
    """
    from devstack.stack import start_stack

    data_dir = Path(tempfile.mkdtemp(prefix=f"sumo-k8-bench-{name}-"))
    os.chmod(data_dir, 0o755)  # the embedded PostgreSQL may run as another user
    s = None
    try:
        # PostgreSQL as `make run` runs it: fsync and synchronous commits on (the tests turn them off).
        s = start_stack(data_dir, env_overrides={**BASE_ENV, **(env or {})}, api_workers=api_workers,
                        persistent=False, fast_db=False, sweeper=sweeper, process_env=process_env)
        wait_ready(s.url, 60)
        yield s
    finally:
        if s is not None:
            s.stop()
        logs = data_dir / "logs"
        if logs.is_dir():  # kept for a look at errors: bench/out/logs/<name>/
            dest = OUT / "logs" / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(logs, dest)
        _REMOVE_AT_EXIT.append(data_dir)


def wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/ready", timeout=5)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s (last: {last})")


def stop_simulations(s) -> None:
    """Stop the simulation workers: admitted jobs then wait and SUMO takes no CPU."""
    s.procs["simulations"].stop()


def download(http: httpx.Client, url: str, headers: dict) -> tuple[int, str]:
    """Streams ``url`` to nowhere: its size and sha256, for checking against a results listing."""
    digest, size = hashlib.sha256(), 0
    with http.stream("GET", url, headers=headers) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def run_caps(output_bytes: int, log_bytes: int) -> dict:
    """A stack's MAX_OUTPUT_MB and MAX_LOG_MB raised above what a benchmark's run writes (their defaults would
    stop a heavy run, as they should stop a tenant's)."""
    return {"MAX_OUTPUT_MB": str(math.ceil(output_bytes * 1.15 / (1 << 20)) + 64),
            "MAX_LOG_MB": str(math.ceil(log_bytes * 1.15 / (1 << 20)) + 64)}


def register_tenant(s, **limits) -> dict:
    body = {"tenant_id": f"bench-{uuid.uuid4().hex[:10]}", "max_cpu": 10_000, "max_memory_gi": 10_000,
            "max_concurrent_jobs": 10_000, **limits}
    r = httpx.post(s.url + "/auth/register", json=body, headers={"X-Admin-Key": s.env["ADMIN_KEY"]}, timeout=30)
    r.raise_for_status()
    return r.json()


def auth(tenant: dict) -> dict:
    return {"Authorization": f"Bearer {tenant['api_key']}"}


def submit_form(scenario_id: str = "bench") -> dict:
    return {"scenario_id": scenario_id, "cpu_request": "1", "memory_gi": "1"}


def percentile(values, p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    data = sorted(values)
    if not data:
        return None
    k = max(0, min(len(data) - 1, math.ceil(p / 100 * len(data)) - 1))
    return data[k]


def summary_ms(seconds: list[float]) -> dict:
    """p50/p90/p99/max/mean of a list of seconds, in milliseconds."""
    if not seconds:
        return {"n": 0}
    ms = [x * 1000 for x in seconds]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p90_ms": round(percentile(ms, 90), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2), "mean_ms": round(sum(ms) / len(ms), 2)}


def print_table(title: str, rows: list[tuple]) -> None:
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n== {title}")
    for j, r in enumerate(rows):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if j == 0:
            print("  " + "  ".join("-" * w for w in widths))


def write_out(filename: str, text: str) -> Path:
    """``text`` into OUT/filename; prints where (relative to the repository when inside it)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / filename
    path.write_text(text)
    print(f"-> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def write_result(name: str, data: dict) -> Path:
    return write_out(f"{name}.json", json.dumps(data, indent=2, default=str))


def pg_counters(database_url: str) -> dict:
    """Sessions opened, transactions and table scans so far (pg_stat_database, pg_stat_user_tables)."""
    import sqlalchemy as sa

    from core.db.engine import sqlalchemy_url

    engine = sa.create_engine(sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            db = conn.execute(sa.text(
                "SELECT sessions, xact_commit, xact_rollback, tup_returned, tup_fetched FROM pg_stat_database "
                "WHERE datname = current_database()")).mappings().one()
            tables = {r["relname"]: dict(r) for r in conn.execute(sa.text(
                "SELECT relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins, n_tup_upd "
                "FROM pg_stat_user_tables WHERE relname IN ('jobs', 'tenants')")).mappings()}
        return {**dict(db), "tables": tables}
    finally:
        engine.dispose()


def counter_delta(before: dict, after: dict) -> dict:
    out = {}
    for k, v in after.items():
        if isinstance(v, dict):
            out[k] = counter_delta(before.get(k, {}), v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = v - (before.get(k) or 0)
        else:
            out[k] = v
    return out
