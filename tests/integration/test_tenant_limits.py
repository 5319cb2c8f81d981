"""Hostile tenants against the real service: the queue limit, the submission rate, the stored bytes, the
API's threads under slow submissions, and jobs that cannot go on (a collection that keeps failing; a local
wait for a slot, which must not time out).

One stack of its own with small limits (the shared one keeps the defaults).  The refusals are checked on
the host too: a refused submission leaves no file in the store.
"""
from __future__ import annotations

import io
import random
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from core.bootstrap import bootstrap
from core.db.tables import jobs
from core.services import submission, tenants
from core.services.errors import TooManyRequests
from core.settings import Settings
from tests.integration.harness import ZIPS, Api, long_square, wait_until

MAX_QUEUED = 10
RATE, BURST = 5, 40
API_THREADS = 2
SQUARE = (ZIPS / "square.zip").read_bytes()
CHUNK = 1 << 20


@pytest.fixture(scope="module")
def limited(make_stack):
    stack = make_stack(
        "limits", MAX_QUEUED_JOBS_PER_TENANT=str(MAX_QUEUED), SUBMIT_RATE_PER_SECOND=str(RATE), SUBMIT_BURST=str(BURST),
        API_THREADS=str(API_THREADS), MAX_FILE_SIZE_MB="20", MAX_UNCOMPRESSED_MB="200", LOCAL_MAX_PARALLEL="1",
        PENDING_TIMEOUT_SECONDS="2", COLLECT_TIMEOUT_SECONDS="6",
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def lapi(limited) -> Api:
    return Api(limited.url, limited.env["ADMIN_KEY"])


def stack_context(stack):
    settings = Settings(**{k.lower(): v for k, v in stack.env.items() if k.lower() in Settings.model_fields})
    return bootstrap(settings)


def stored_inputs(stack, tenant: dict) -> set[str]:
    folder = stack.data_dir / "storage" / "inputs" / tenant["tenant_id"]
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def usage(api: Api, tenant: dict) -> dict:
    r = api.http.get("/tenants/me/dashboard", headers=api.auth(tenant))
    assert r.status_code == 200, r.text
    return r.json()["usage_against_limits"]


def cancel_all(api: Api, tenant: dict, job_ids) -> None:
    for job_id in job_ids:
        api.http.delete(f"/jobs/{job_id}", headers=api.auth(tenant))


def hold_the_only_place(api: Api, tenant: dict) -> str:
    """A job that runs for ever, so the tenant's (one) place stays taken and what follows stays QUEUED."""
    job_id = api.submit_ok(tenant, long_square())
    api.wait_status(tenant, job_id, {"ADMITTED", "PENDING", "RUNNING"}, timeout=30)
    return job_id


# ----------------------------------------------------------------- 1. queued jobs per tenant


def test_exactly_the_queue_limit_gets_in_under_concurrent_submissions(limited, lapi):
    """Thirty submissions at once (threads released together, each through the whole submission: archive
    validated and stored, the counting insert) while the tenant's queue has room for ten: exactly ten go in,
    the others are refused naming MAX_QUEUED_JOBS_PER_TENANT and leave nothing in the store."""
    t = lapi.register(max_cpu=1, max_memory_gi=1, max_concurrent_jobs=1)
    holder = hold_the_only_place(lapi, t)
    ctx = stack_context(limited)
    row = tenants.authenticate(ctx, t["api_key"])
    start = threading.Barrier(30)
    outcomes: list = []
    again: list[str] = []

    def one(i: int):
        start.wait(timeout=30)
        wanted = submission.Submission(f"race-{i}", 1, 1, None, None)
        try:
            return submission.submit(ctx, row, io.BytesIO(SQUARE), wanted)[0]["job_id"]
        except TooManyRequests as exc:
            return exc

    try:
        with ThreadPoolExecutor(max_workers=30) as pool:
            outcomes = list(pool.map(one, range(30)))
        accepted = [o for o in outcomes if isinstance(o, str)]
        refused = [o for o in outcomes if isinstance(o, TooManyRequests)]
        assert (len(accepted), len(refused)) == (MAX_QUEUED, 30 - MAX_QUEUED), outcomes
        assert all("MAX_QUEUED_JOBS_PER_TENANT" in exc.message and exc.retry_after >= 1 for exc in refused)
        assert stored_inputs(limited, t) == {f"{j}.zip" for j in [holder, *accepted]}, "a refusal left its input behind"
        assert usage(lapi, t)["queued_jobs"] == {"used": MAX_QUEUED, "limit": MAX_QUEUED, "limit_name": "MAX_QUEUED_JOBS_PER_TENANT"}

        # Through the API: the same refusal as a 429 with Retry-After.
        r = lapi.submit(t)
        assert r.status_code == 429, r.text
        assert "MAX_QUEUED_JOBS_PER_TENANT" in r.json()["detail"] and "10 QUEUED" in r.json()["detail"]
        assert int(r.headers["Retry-After"]) >= 1

        # A queued job cancelled gives its place back.
        assert lapi.http.delete(f"/jobs/{accepted[0]}", headers=lapi.auth(t)).json()["status"] == "CANCELLED"
        again.append(lapi.submit_ok(t))
        assert usage(lapi, t)["queued_jobs"]["used"] == MAX_QUEUED
    finally:
        cancel_all(lapi, t, [holder, *[o for o in outcomes if isinstance(o, str)], *again])
        ctx.engine.dispose()
    wait_until(lambda: usage(lapi, t)["queued_jobs"]["used"] == 0, 30, "the queue count back at 0")


# ----------------------------------------------------------------- 2. submissions per second


def test_the_submission_rate_is_limited_per_tenant_with_retry_after(lapi):
    """Past SUBMIT_BURST submissions at once (refused ones count too: the check comes first), 429 naming
    SUBMIT_RATE_PER_SECOND with Retry-After; after that wait the tenant may submit again, and another tenant
    was never held up."""
    t, other = lapi.register(), lapi.register()
    answers = []
    for _ in range(BURST * 3):
        r = lapi.submit(t, b"not a zip archive")
        answers.append(r.status_code)
        if r.status_code == 429:
            break
    assert answers[-1] == 429, f"never refused: {answers}"
    assert len(answers) > BURST and 429 not in answers[:BURST], answers
    assert "SUBMIT_RATE_PER_SECOND" in r.json()["detail"], r.text
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= 2, r.headers
    assert lapi.submit(other, b"not a zip archive").status_code != 429, "another tenant's bucket is its own"
    wait_until(lambda: lapi.submit(t, b"not a zip archive").status_code != 429, retry_after + 5,
               "a submission accepted by the rate limit again")


# ----------------------------------------------------------------- 3. stored bytes per tenant


def test_stored_bytes_are_counted_and_a_submission_past_the_limit_is_refused(limited, lapi):
    size = len(SQUARE)
    t = lapi.register(max_concurrent_jobs=2, max_stored_gb=2.5 * size / 1e9)
    assert t["max_stored_gb"] == pytest.approx(2.5 * size / 1e9, rel=1e-3)
    first, second = lapi.submit_ok(t), lapi.submit_ok(t)
    assert usage(lapi, t)["stored_bytes"]["used"] == 2 * size

    r = lapi.submit(t)
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert "max_stored_gb" in detail and f"{2 * size} bytes" in detail and f"({size} bytes)" in detail, detail
    assert stored_inputs(limited, t) == {f"{first}.zip", f"{second}.zip"}, "the refused upload was left in the store"

    # Results count once collected (they may pass the limit: a run is not cut short for its outputs).
    for job_id in (first, second):
        lapi.wait_status(t, job_id, "SUCCEEDED", timeout=120)
    results = {j: lapi.wait_results(t, j) for j in (first, second)}
    result_bytes = {j: sum(f["size"] for f in results[j]["files"]) for j in results}
    assert usage(lapi, t)["stored_bytes"]["used"] == 2 * size + sum(result_bytes.values())

    # Deleting a job's data frees its bytes; the admin raises the limit with PATCH like the other limits.
    r = lapi.http.delete(f"/jobs/{first}/data", headers=lapi.auth(t))
    assert r.status_code == 200, r.text
    assert r.json()["data_deleted_at"] is not None
    assert usage(lapi, t)["stored_bytes"]["used"] == size + result_bytes[second]
    r = lapi.http.patch(f"/auth/tenants/{t['tenant_id']}", json={"max_stored_gb": 1}, headers=lapi.admin)
    assert r.status_code == 200 and r.json()["max_stored_gb"] == 1, r.text
    third = lapi.submit_ok(t)
    stored = usage(lapi, t)["stored_bytes"]
    assert (stored["limit"], stored["limit_gb"], stored["limit_name"]) == (10**9, 1, "max_stored_gb")
    assert stored["used"] >= 2 * size + result_bytes[second]
    lapi.wait_status(t, third, timeout=120)


# ----------------------------------------------------------------- 4. slow submissions and the thread pool


def slow_archive(detectors: int) -> bytes:
    """square.zip plus an additional file of ``detectors`` detectors, each with an output file to check: a
    valid scenario whose validation takes a while (random figures keep it from compressing away)."""
    rnd = random.Random(7)
    buf = io.BytesIO()
    with zipfile.ZipFile(ZIPS / "square.zip") as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".sumocfg"):
                data = data.replace(b'<route-files value="square.rou.xml"/>',
                                    b'<route-files value="square.rou.xml"/><additional-files value="det.add.xml"/>')
            dst.writestr(info.filename, data)
        lines = [b'<e1Detector id="d%d" lane="x" pos="%.2f" period="60" file="out/d%d.xml"/>' % (i, rnd.random() * 100, i)
                 for i in range(detectors)]
        dst.writestr("det.add.xml", b"<additional>\n" + b"\n".join(lines) + b"\n</additional>\n")
    return buf.getvalue()


def test_slow_submissions_leave_the_other_requests_their_threads(limited, lapi):
    """Submissions hold at most half of the API's threads: while twice as many slow submissions as the API
    has threads are in flight, a job is polled again and again and every poll answers at once.  (Without
    the bound every thread is soon busy validating, and a poll waits behind several validations.)"""
    t = lapi.register(max_cpu=1, max_memory_gi=1, max_concurrent_jobs=1)
    job_ids = [hold_the_only_place(lapi, t)]
    form = httpx.Request("POST", limited.url + "/jobs", data={"scenario_id": "slow", "cpu_request": "1", "memory_gi": "1"},
                         files={"sumo_files": ("slow.zip", slow_archive(800_000), "application/zip")})
    body, headers = form.read(), {**dict(form.headers), **lapi.auth(t)}

    def post(sent: threading.Event | None = None) -> httpx.Response:
        def chunks():
            for i in range(0, len(body), CHUNK):
                yield body[i:i + CHUNK]
            if sent is not None:
                sent.set()
        with httpx.Client(timeout=300) as client:
            return client.post(limited.url + "/jobs", content=chunks(), headers=headers)

    began = time.monotonic()
    alone = post()
    single = time.monotonic() - began
    assert alone.status_code == 202, alone.text
    job_ids.append(alone.json()["job_id"])
    assert single >= 1.0, f"a slow submission took only {single:.2f} s: make the archive slower to validate"

    n = 2 * API_THREADS
    sent = [threading.Event() for _ in range(n)]
    polls: list[tuple[float, int]] = []  # (seconds, slow submissions still in flight when it was answered)
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(post, e) for e in sent]
        wait_until(lambda: all(e.is_set() for e in sent), 60, "every slow upload sent")
        deadline = time.monotonic() + 20 * n * single
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            began = time.monotonic()
            polled = lapi.http.get(f"/jobs/{job_ids[0]}", headers=lapi.auth(t))
            polls.append((time.monotonic() - began, sum(not f.done() for f in futures)))
            assert polled.status_code == 200, polled.text
        answers = [f.result() for f in futures]
    job_ids += [r.json()["job_id"] for r in answers if r.status_code == 202]
    cancel_all(lapi, t, job_ids)
    slowest = max(seconds for seconds, _ in polls)
    assert slowest < single / 2, f"a poll took {slowest:.2f} s while slow submissions ran (one alone: {single:.2f} s)"
    busy = [seconds for seconds, in_flight in polls if in_flight >= API_THREADS]
    assert len(busy) >= 3, f"too few polls while {API_THREADS} or more slow submissions were in flight: {polls}"
    assert all(r.status_code == 202 for r in answers), [r.text for r in answers]


# ----------------------------------------------------------------- 6. jobs that cannot go on


def test_a_collection_that_keeps_failing_ends_the_job_failed_naming_why(limited, lapi):
    """Its result folder taken by a file, a finished job's results cannot be stored: after
    COLLECT_TIMEOUT_SECONDS it is FAILED, naming the timeout, how the run ended and the store's error."""
    t = lapi.register()
    job_id = lapi.submit_ok(t, long_square(40000))
    lapi.wait_status(t, job_id, "RUNNING", timeout=60)
    blocker = limited.data_dir / "storage" / "results" / t["tenant_id"] / job_id
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"not a folder")
    try:
        job = lapi.wait_status(t, job_id, {"SUCCEEDED", "FAILED", "CANCELLED"}, timeout=120)
        assert job["status"] == "FAILED", job
        assert "COLLECT_TIMEOUT_SECONDS (6 s)" in job["error"] and "the run ended SUCCEEDED" in job["error"], job["error"]
        assert "Error" in job["error"].split("COLLECT_TIMEOUT_SECONDS (6 s): ", 1)[1], job["error"]
        listing = lapi.http.get(f"/jobs/{job_id}/results", headers=lapi.auth(t)).json()
        assert listing["collected"] is True and listing["files"] == []
        assert usage(lapi, t)["concurrent_jobs"]["used"] == 0
    finally:
        blocker.unlink(missing_ok=True)  # the given-up collection may have cleared the job's prefix already


def test_a_local_job_waiting_for_a_slot_does_not_time_out(limited, lapi):
    """PENDING_TIMEOUT_SECONDS is 2 here, but a local job PENDING for a free simulation slot waits as long as
    it takes: the sweeper has looked at it (re-sent its run twice) well past the timeout, and it still waits."""
    t = lapi.register(max_concurrent_jobs=2)
    running = lapi.submit_ok(t, long_square())
    lapi.wait_status(t, running, "RUNNING", timeout=60)
    # The stack's simulation worker has one thread (LOCAL_MAX_PARALLEL=1), busy with the running job: a second
    # worker takes the next job's message and waits for the slot (PENDING), as with several worker machines.
    extra = limited.start_simulation_workers(name="simulations-extra", threads=1)
    waiting = lapi.submit_ok(t, long_square())
    ctx = stack_context(limited)
    try:
        job = lapi.wait_status(t, waiting, "PENDING", timeout=60)
        assert "slot" in (job["pending_reason"] or ""), job

        def attempts() -> int:
            with ctx.engine.connect() as conn:
                return conn.execute(sa.select(jobs.c.dispatch_attempts).where(jobs.c.job_id == waiting)).scalar_one()

        wait_until(lambda: attempts() >= 2, 60, "two re-sends of the waiting job's run by the sweeper")
        job = lapi.job(t, waiting)
        assert job["status"] == "PENDING" and job["error"] is None, job
    finally:
        cancel_all(lapi, t, [running, waiting])
        ctx.engine.dispose()
        lapi.wait_status(t, waiting, "CANCELLED", timeout=30)
        extra.stop()
