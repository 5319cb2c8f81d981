"""A huge log costs the service what one read costs, not what the log weighs; open streams are bounded.

The stack here runs :mod:`bench.fake_sumo` as its SUMO_BINARY (the real ``sumo`` cannot be made to write
~100 MB of log quickly), on a real scenario that the service validates as usual.  Its job writes its log and
holds, so the live log (the work directory's file) is read first; released, the job is collected and the
archived log (the result store) is read the same way.  Every measurement is taken on the host: the API
processes' peak RSS (``VmHWM``, reset before each request) and the bytes they read from files (``rchar``).
"""
from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import textwrap
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis

from bench import fake_sumo
from bench.log_memory import Watch, service_processes
from cli.sse import sse_events
from core.stream_registry import RedisStreamRegistry
from devstack import emulators
from devstack.services import port_open
from devstack.stack import start_stack
from tests.conftest import BASE_ENV
from tests.integration.harness import Api, wait_until

MiB = 1 << 20
LOG_BYTES = 96 * MiB
LOG = b"".join(fake_sumo.log_bytes(LOG_BYTES))
#: The most an API process may grow while it serves one request on this log: a few reads of 256 KiB and
#: the interpreter's own allocations, far below the log's size.
MEMORY_BOUND_MB = 32
HEARTBEAT_SECONDS = 2  # a crashed worker's streams stop counting after 6 s
STREAMS = 2
LINES = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def reference_tail(lines: int) -> bytes:
    """The log's last ``lines`` lines by splitting (its last 2 MiB hold far more than asked for here)."""
    return b"".join(LINES.findall(LOG[-2 * MiB:])[-lines:])


def as_sse(data: bytes) -> str:
    """What SSE carries of a piece of log: each line end (CR, LF, CR LF) as one line break."""
    return re.sub(r"\r\n|\r", "\n", data.decode("utf-8"))


@pytest.fixture(scope="module")
def logs_stack(tmp_path_factory):
    env = {**BASE_ENV, "SUMO_BINARY": str(fake_sumo.install(tmp_path_factory.mktemp("fake-sumo"))),
           "MAX_LOG_STREAMS_PER_TENANT": str(STREAMS), "LOG_STREAM_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)}
    stack = start_stack(tmp_path_factory.mktemp("logs-bounded"), env_overrides=env, api_workers=2, persistent=False,
                        fast_db=True)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def api(logs_stack) -> Api:
    return Api(logs_stack.url, logs_stack.env["ADMIN_KEY"])


def api_processes(stack) -> dict[str, int]:
    return {label: pid for label, pid in service_processes(stack).items() if label.split("/")[0] == "api"}


class Held:
    """A job of the fake sumo whose log is written and which waits to be released."""

    def __init__(self, stack, api: Api, log_bytes: int) -> None:
        self.stack, self.api, self.tenant = stack, api, api.register()
        self.job_id = api.submit_ok(self.tenant, fake_sumo.scenario({"log_bytes": log_bytes, "hold_file": "release"}))
        self.work = Path(stack.env["DATA_DIR"]) / "work" / self.job_id
        log = self.work / "sumo.log"
        wait_until(lambda: log.exists() and log.stat().st_size >= log_bytes, 120, f"{log_bytes} bytes of live log")
        assert api.job(self.tenant, self.job_id)["status"] == "RUNNING"

    def release(self) -> None:
        (self.work / "run" / "release").touch()
        self.api.wait_status(self.tenant, self.job_id, "SUCCEEDED")

    def get(self, path: str = "/logs", **kw) -> httpx.Response:
        return self.api.http.get(f"/jobs/{self.job_id}{path}", headers=self.api.auth(self.tenant), **kw)

    def stream(self, last_event_id: str | None = None):
        return sse_stream(self.api, self.tenant, self.job_id, last_event_id)


def sse_stream(api: Api, tenant: dict, job_id: str, last_event_id: str | None = None):
    headers = api.auth(tenant) | ({"Last-Event-ID": last_event_id} if last_event_id else {})
    return api.http.stream("GET", f"/jobs/{job_id}/logs/stream", headers=headers, timeout=httpx.Timeout(120))


@pytest.fixture(scope="module")
def live(logs_stack, api) -> Held:
    return Held(logs_stack, api, LOG_BYTES)


@pytest.fixture(scope="module")
def archived(live) -> Held:
    live.release()
    results = live.api.wait_results(live.tenant, live.job_id)
    assert {"name": "sumo.log", "size": LOG_BYTES, "sha256": hashlib.sha256(LOG).hexdigest()}.items() <= \
        next(f for f in results["files"] if f["name"] == "sumo.log").items()
    assert not (live.work / "sumo.log").exists(), "the work directory is gone: the log is read from the store"
    return live


def events(response: httpx.Response):
    """(event, id, data) of each server-sent event (as the CLI reads them)."""
    return sse_events(response.iter_lines())


def follow(job: Held, start: str | None, *, until: int | None = None, count: int | None = None):
    """Log events from ``start`` until one's position reaches ``until``, ``count`` of them, or the status
    event; (the log's text received, the last id, the status event's data or None)."""
    text, last, status, n = [], start, None, 0
    with job.stream(start) as r:
        assert r.status_code == 200, r.read()
        for event, event_id, data in events(r):
            if event == "status":
                status = json.loads(data)
                break
            text.append(data)
            last, n = event_id, n + 1
            if (until is not None and int(event_id) >= until) or (count is not None and n >= count):
                break
    return "".join(text), last, status


# -- the live log ------------------------------------------------------------------------------------------
def check_tail(job: Held) -> None:
    for lines in (1, 100, 5000):
        with Watch(api_processes(job.stack)) as watch:
            r = job.get(params={"tail": lines})
        assert r.status_code == 200
        assert r.json() == {"job_id": job.job_id, "logs": reference_tail(lines).decode()}
        assert watch.most("api") < MEMORY_BOUND_MB, watch.growth_mb
        assert watch.read("api") < 4, f"a tail reads the log's end only, not {watch.read('api')} MB"


def check_whole(job: Held) -> None:
    with Watch(api_processes(job.stack)) as watch:
        r = job.get()
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert "content-length" not in r.headers  # streamed, not built first
    body = r.json()
    assert body["job_id"] == job.job_id and body["logs"].encode() == LOG
    assert watch.most("api") < MEMORY_BOUND_MB, watch.growth_mb

    with Watch(api_processes(job.stack)) as watch:  # the log's own bytes, as the CLI asks for them
        r = job.get(params={"format": "text"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "content-length" not in r.headers and r.content == LOG
    assert watch.most("api") < MEMORY_BOUND_MB, watch.growth_mb


def check_resume_from_offset(job: Held, offset: int, *, ends: bool) -> dict | None:
    """From an offset inside a line: the rest of the log, without reading what came before; then (when the
    job ``ends``) the status event, which is returned."""
    with Watch(api_processes(job.stack)) as watch:
        text, last, status = follow(job, str(offset), until=None if ends else LOG_BYTES)
    assert last == str(LOG_BYTES)
    assert text == as_sse(LOG[offset:])
    assert watch.most("api") < MEMORY_BOUND_MB, watch.growth_mb
    assert watch.read("api") < (LOG_BYTES - offset) / MiB + 3, f"read {watch.read('api')} MB for {LOG_BYTES - offset} B"
    return status


def check_resume_with_tokens(job: Held) -> None:
    """Cut after three events and resumed with the last id seen, twice: every line once, in order."""
    start = LOG_BYTES // 3
    first, token, _ = follow(job, str(start), count=3)
    second, token2, _ = follow(job, token, count=3)
    assert int(token2) > int(token) > start
    assert first + second == as_sse(LOG[start:int(token2)])
    assert all(text.endswith("\n") for text in (first, second)), "whole lines, CR-ended progress lines too"


def test_live_tail_is_read_from_the_end_of_the_file(live):
    check_tail(live)


def test_live_whole_log_is_streamed_as_json(live):
    check_whole(live)


def test_live_stream_resumes_at_an_offset(live):
    check_resume_from_offset(live, LOG_BYTES - 3 * MiB - 7, ends=False)
    check_resume_with_tokens(live)


# -- the archived log ---------------------------------------------------------------------------------------
def test_archived_tail_is_read_from_the_end_of_the_object(archived):
    check_tail(archived)


def test_archived_whole_log_is_streamed_as_json(archived):
    check_whole(archived)


def test_archived_stream_resumes_at_an_offset_and_ends(archived):
    assert check_resume_from_offset(archived, LOG_BYTES - 2 * MiB + 3, ends=True)["status"] == "SUCCEEDED"
    check_resume_with_tokens(archived)


def test_download_streams(archived):
    """The archived log as a result file (Range-less): the API streams it in chunks."""
    with Watch(api_processes(archived.stack)) as watch:
        r = archived.get("/results/sumo.log")
    assert r.status_code == 200 and int(r.headers["content-length"]) == LOG_BYTES
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(LOG).hexdigest()
    assert watch.most("api") < MEMORY_BOUND_MB, watch.growth_mb


# -- the command line -------------------------------------------------------------------------------------------
def test_cli_follow_prints_the_log_as_sent_and_waits_out_a_429(archived, logs_stack, api):
    """``logs --follow`` while the tenant's places are all taken (by streams of another process, which
    expire): it says so, waits as Retry-After says, then prints the log, every line once, and the end."""
    tenant = api.register()
    log = b"".join(fake_sumo.log_bytes(3 * MiB))
    job_id = api.submit_ok(tenant, fake_sumo.scenario({"log_bytes": len(log)}))
    api.wait_status(tenant, job_id, "SUCCEEDED")
    others = RedisStreamRegistry(redis.Redis.from_url(logs_stack.env["REDIS_URL"]), ttl_seconds=3)
    for i in range(STREAMS):
        assert others.acquire(tenant["tenant_id"], f"elsewhere-{i}", STREAMS)
    env = {"SUMO_K8_URL": logs_stack.url, "SUMO_K8_API_KEY": tenant["api_key"], "PATH": "/usr/bin:/bin",
           "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "cli.main", "logs", job_id, "--follow"], env=env, capture_output=True,
                         text=True, encoding="utf-8", timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert "MAX_LOG_STREAMS_PER_TENANT" in out.stderr and "job ended: SUCCEEDED" in out.stderr, out.stderr
    assert out.stdout == as_sse(log)


def test_cli_logs_prints_the_whole_log_byte_for_byte(archived):
    """``logs`` without ``--follow`` streams the log's text (``format=text``) to stdout as it comes."""
    env = {"SUMO_K8_URL": archived.stack.url, "SUMO_K8_API_KEY": archived.tenant["api_key"], "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "cli.main", "logs", archived.job_id], env=env, capture_output=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout == LOG


# -- refusals ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["abc", "12@", "-5", "1" * 150, "9" * 250])
def test_a_malformed_last_event_id_is_a_422_naming_it(archived, bad):
    with archived.stream(bad) as r:
        r.read()
    assert r.status_code == 422, r.text
    assert "last-event-id" in r.json()["detail"].lower()


# -- open streams per tenant ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(logs_stack, api, archived) -> Held:
    """A held job with a short log, for the tests of open streams (each starts with none open); after the
    large one ended, as the stack runs one simulation at a time."""
    return Held(logs_stack, api, 10_000)


def registry(stack) -> RedisStreamRegistry:
    return RedisStreamRegistry(redis.Redis.from_url(stack.env["REDIS_URL"]), ttl_seconds=3 * HEARTBEAT_SECONDS)


def open_streams(job: Held, exits: ExitStack, n: int, opener=None) -> list[httpx.Response]:
    """``n`` streams of ``job`` (or of what ``opener`` opens) kept open (a 200 is sent once one counts)."""
    out = []
    for _ in range(n):
        r = exits.enter_context((opener or job.stream)())
        assert r.status_code == 200, r.read()
        out.append(r)
    return out


def refused(job: Held) -> httpx.Response | None:
    """The 429 answering one more stream of the job's tenant, or None when it was opened (and closed)."""
    with job.stream() as r:
        if r.status_code == 200:
            return None
        r.read()
        assert r.status_code == 429, r.text
        return r


def no_stream_open(job: Held) -> RedisStreamRegistry:
    counts = registry(job.stack)
    wait_until(lambda: counts.count(job.tenant["tenant_id"]) == 0, 20, "no stream of the tenant open")
    return counts


def test_the_tenants_next_open_stream_is_a_429(small, api):
    counts = no_stream_open(small)
    with ExitStack() as exits:
        first, _ = open_streams(small, exits, STREAMS)
        r = refused(small)
        assert r is not None, "the third stream must be refused"
        assert r.headers["Retry-After"].isdigit()
        assert "MAX_LOG_STREAMS_PER_TENANT" in r.json()["detail"] and small.tenant["tenant_id"] in r.json()["detail"]
        assert counts.count(small.tenant["tenant_id"]) == STREAMS
        # Renewed while open: after several times the TTL both still count.
        expiry = max(score for _, score in counts.client.zrange(counts._key(small.tenant["tenant_id"]), 0, -1, withscores=True))
        wait_until(lambda: min(s for _, s in counts.client.zrange(counts._key(small.tenant["tenant_id"]), 0, -1,
                                                                  withscores=True)) > expiry + 3000, 30,
                   "both entries renewed past their first expiry")
        assert counts.count(small.tenant["tenant_id"]) == STREAMS
        first.close()
        # A closed stream gives its place back (well before it would expire).
        wait_until(lambda: counts.count(small.tenant["tenant_id"]) == STREAMS - 1, 10, "the closed stream released")
        assert exits.enter_context(small.stream()).status_code == 200
    wait_until(lambda: counts.count(small.tenant["tenant_id"]) == 0, 10, "every stream released")


def test_another_tenants_streams_are_counted_apart(small, logs_stack, api):
    """Another tenant's streams, on its job waiting for the simulation slot: a count of its own."""
    other = api.register()
    queued = small.api.submit_ok(other, fake_sumo.scenario({"log_bytes": 1000}))
    no_stream_open(small)
    with ExitStack() as exits:
        open_streams(small, exits, STREAMS)
        assert refused(small) is not None
        open_streams(small, exits, STREAMS, opener=lambda: sse_stream(api, other, queued))
        assert registry(logs_stack).count(other["tenant_id"]) == STREAMS


def test_redis_away_is_unavailable_not_an_error():
    """Where open streams are counted cannot be reached: RegistryUnavailable (the API's 503), in bounded time."""
    import socket

    from core.stream_registry import RegistryUnavailable

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        away = RedisStreamRegistry.from_url(f"redis://127.0.0.1:{closed.getsockname()[1]}/0", ttl_seconds=3)
        for call in (lambda: away.acquire("t", "s", 2), lambda: away.renew("t", "s"), lambda: away.release("t", "s"),
                     lambda: away.count("t")):
            with pytest.raises(RegistryUnavailable, match="Redis"):
                call()


HOLDER = textwrap.dedent("""
    import sys, time, redis
    from core.stream_registry import RedisStreamRegistry
    url, tenant, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    registry = RedisStreamRegistry(redis.Redis.from_url(url), ttl_seconds=ttl)
    assert registry.acquire(tenant, "held-by-another-process", 2)
    print("held", flush=True)
    while True:
        registry.renew(tenant, "held-by-another-process")
        time.sleep(ttl / 3)
""")


def test_the_count_spans_processes_and_a_crashed_one_stops_counting(small, logs_stack):
    """Another process (as another API worker would) holds one of the tenant's places: the API counts it.
    SIGKILLed, it cannot give it back: the place stops counting once its entry expires."""
    tenant_id = small.tenant["tenant_id"]
    no_stream_open(small)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, logs_stack.env["REDIS_URL"], tenant_id,
                               str(3 * HEARTBEAT_SECONDS)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        with ExitStack() as exits:
            open_streams(small, exits, STREAMS - 1)
            assert refused(small) is not None
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            wait_until(lambda: refused(small) is None, 20, "the crashed process's place to expire")
    finally:
        holder.kill()
        holder.wait(10)


def test_an_api_crash_keeps_its_streams_counted_until_they_expire(small, logs_stack):
    """The API SIGKILLed with streams open: nothing gave their places back, so they still count (in
    Redis, not in the dead processes); they stop counting once they expire, and the API started again
    opens streams."""
    tenant_id = small.tenant["tenant_id"]
    counts = no_stream_open(small)
    with ExitStack() as exits:
        open_streams(small, exits, STREAMS)
        logs_stack.procs["api"].kill()
        assert counts.count(tenant_id) == STREAMS
    # The group's workers may outlive their parent for a moment, holding the port.
    wait_until(lambda: not port_open(logs_stack.port), 20, "the killed API's port closed")
    logs_stack.start_api(2)
    wait_until(lambda: counts.count(tenant_id) == 0, 20, "the crashed API's places to expire")
    assert refused(small) is None


# -- downloads from S3 ----------------------------------------------------------------------------------------
def test_s3_logs_and_downloads_stream(make_stack, tmp_path):
    """The same reads with the result store in S3 (moto's server): ranged reads from the end, a stream
    resumed at an offset, and a download of a result file much larger than any chunk."""
    output = 160 * MiB
    log_bytes = 24 * MiB
    log = b"".join(fake_sumo.log_bytes(log_bytes))
    with emulators.start_s3() as emu:
        stack = make_stack("logs-s3", SUMO_BINARY=str(fake_sumo.install(tmp_path)), RESULT_STORAGE_TYPE="s3",
                           S3_ENDPOINT_URL=emu.endpoint, S3_BUCKET="logs-bounded",
                           AWS_ACCESS_KEY_ID=emulators.S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=emulators.S3_SECRET_KEY)
        try:
            api = Api(stack.url, stack.env["ADMIN_KEY"])
            tenant = api.register()
            job_id = api.submit_ok(tenant, fake_sumo.scenario({"log_bytes": log_bytes, "output_bytes": output}))
            api.wait_status(tenant, job_id, "SUCCEEDED", timeout=180)
            files = {f["name"]: f for f in api.wait_results(tenant, job_id)["files"]}
            assert files["fake-output.bin"]["size"] == output
            pids = api_processes(stack)
            headers = api.auth(tenant)

            with Watch(pids) as watch:
                digest, size = hashlib.sha256(), 0
                with api.http.stream("GET", f"/jobs/{job_id}/results/fake-output.bin", headers=headers) as r:
                    assert r.status_code == 200
                    for chunk in r.iter_raw():
                        digest.update(chunk)
                        size += len(chunk)
            assert size == output and digest.hexdigest() == files["fake-output.bin"]["sha256"]
            assert watch.most("api") < MEMORY_BOUND_MB, watch.growth_mb

            with Watch(pids) as watch:
                tail = api.http.get(f"/jobs/{job_id}/logs", params={"tail": 50}, headers=headers).json()["logs"]
                whole = api.http.get(f"/jobs/{job_id}/logs", headers=headers).json()["logs"]
            assert tail.encode() == b"".join(LINES.findall(log[-MiB:])[-50:])
            assert whole.encode() == log
            assert watch.most("api") < MEMORY_BOUND_MB, watch.growth_mb

            offset = log_bytes - MiB - 11
            with api.http.stream("GET", f"/jobs/{job_id}/logs/stream", headers={**headers, "Last-Event-ID": str(offset)},
                                 timeout=httpx.Timeout(120)) as r:
                got = list(events(r))
            assert got[-1][0] == "status" and json.loads(got[-1][2])["status"] == "SUCCEEDED"
            assert "".join(data for event, _, data in got if event == "log") == as_sse(log[offset:])
        finally:
            stack.stop()
