"""Admission under concurrency, cancellation and idempotency against the real service."""
from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import redis

from tests.integration.harness import Api, wait_until


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def max_overlap(jobs: list[dict]) -> int:
    """Most jobs holding quota at one instant: each holds it from admitted_at to finished_at."""
    edges = []
    for j in jobs:
        edges.append((_t(j["admitted_at"]), 1))
        edges.append((_t(j["finished_at"]), -1))
    edges.sort(key=lambda e: (e[0], e[1]))  # a release at the same instant comes first
    level = peak = 0
    for _, delta in edges:
        level += delta
        peak = max(peak, level)
    return peak


def all_jobs(api: Api, tenant: dict) -> list[dict]:
    out, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = api.http.get("/jobs", params=params, headers=api.auth(tenant)).json()
        out += page["jobs"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_fifty_concurrent_submissions_respect_max_concurrent_jobs(api, stack):
    # A second worker process, so admission decisions race across processes, not only threads.
    extra = stack.start_workers(name="workers-race", processes=1, threads=8)
    try:
        tenant = api.register(max_concurrent_jobs=2, max_cpu=8, max_memory_gi=16)
        # Sample the quota usage admission itself reads, all along the run.
        samples: list[int] = []
        done = threading.Event()

        def sample():
            while not done.is_set():
                samples.append(api.http.get("/tenants/me/dashboard", headers=api.auth(tenant)).json()["usage"]["jobs"])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(lambda i: api.submit(tenant, "square.zip", scenario_id=f"s{i}"), range(50)))
        assert [r.status_code for r in responses] == [202] * 50
        ids = [r.json()["job_id"] for r in responses]
        assert len(set(ids)) == 50

        def finished():
            jobs = all_jobs(api, tenant)
            return len(jobs) == 50 and all(j["status"] == "SUCCEEDED" for j in jobs) and jobs

        jobs = wait_until(finished, 240, "50 jobs to succeed", interval=0.5)
        done.set()
        sampler.join(timeout=30)
        assert {j["job_id"] for j in jobs} == set(ids), "none lost, none duplicated"
        assert len(samples) > 20 and max(samples) == 2
        assert max_overlap(jobs) <= 2
        assert max_overlap(jobs) == 2, "the quota was used, not serialised to one"
    finally:
        extra.stop()


def test_cpu_quota_is_shared_across_jobs(api):
    tenant = api.register(max_concurrent_jobs=10, max_cpu=3, max_memory_gi=16)
    ids = [api.submit_ok(tenant, "square.zip", cpu=2) for _ in range(4)]
    jobs = [api.wait_status(tenant, j, "SUCCEEDED") for j in ids]
    assert max_overlap(jobs) == 1, "two 2-cpu jobs never fit in 3 cpus at once"


def test_cancel_queued_and_running_jobs(api):
    tenant = api.register(max_concurrent_jobs=1)
    running = api.submit_ok(tenant, "bologna-acosta.zip")
    queued = api.submit_ok(tenant, "square.zip")
    api.wait_status(tenant, running, "RUNNING", timeout=60)
    job = api.job(tenant, queued)
    assert job["status"] == "QUEUED" and job["queue_position"] == 1

    r = api.http.delete(f"/jobs/{queued}", headers=api.auth(tenant))
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    # Wait for the live log to show the simulation is under way, then stop it.
    wait_until(lambda: "Loading" in api.http.get(f"/jobs/{running}/logs", headers=api.auth(tenant)).json()["logs"], 60, "the run's log")
    r = api.http.delete(f"/jobs/{running}", headers=api.auth(tenant))
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"

    # The run stops: its log is archived and no further event moves it.
    api.wait_results(tenant, running)
    stopped = api.job(tenant, running)
    assert stopped["status"] == "CANCELLED" and stopped["exit_code"] is None
    log_text = api.http.get(f"/jobs/{running}/logs", headers=api.auth(tenant)).json()["logs"]
    assert "Reason: Interrupted" in log_text, "SUMO was stopped by the signal, not run to the end"
    assert "All vehicles have left the simulation" not in log_text
    never = api.job(tenant, queued)
    assert never["status"] == "CANCELLED" and never["admitted_at"] is None and never["started_at"] is None
    # Cancelling twice is harmless; the freed quota lets the next job run.
    assert api.http.delete(f"/jobs/{queued}", headers=api.auth(tenant)).json()["status"] == "CANCELLED"
    api.wait_status(tenant, api.submit_ok(tenant, "square.zip"), "SUCCEEDED", timeout=180)


def test_raising_limits_admits_queued_jobs(api):
    """PATCH reconciles the tenant, then admission looks again: the queued job starts beside the running one."""
    tenant = api.register(max_concurrent_jobs=1)
    running = api.submit_ok(tenant, "bologna-acosta.zip")
    api.wait_status(tenant, running, "RUNNING", timeout=60)
    queued = api.submit_ok(tenant, "square.zip")
    assert api.job(tenant, queued)["status"] == "QUEUED"

    patched = datetime.now(timezone.utc)
    r = api.http.patch(f"/auth/tenants/{tenant['tenant_id']}", headers=api.admin, json={"max_concurrent_jobs": 2})
    assert r.status_code == 200 and r.json()["max_concurrent_jobs"] == 2
    done = api.wait_status(tenant, queued, "SUCCEEDED", timeout=120)
    first = api.job(tenant, running)
    assert first["finished_at"] is None or _t(done["admitted_at"]) < _t(first["finished_at"]), "admitted only when the first ended"
    # by the PATCH's own request, not the sweeper's re-send (SWEEP_GRACE_SECONDS, 15 s) nor the first job's end
    assert (_t(done["admitted_at"]) - patched).total_seconds() < 10
    api.http.delete(f"/jobs/{running}", headers=api.auth(tenant))


def test_idempotency_key_returns_the_same_job(api):
    tenant, other = api.register(), api.register()
    key = f"key-{uuid.uuid4()}"
    first = api.submit(tenant, idempotency_key=key)
    second = api.submit(tenant, idempotency_key=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    # The key is per tenant.
    assert api.submit(other, idempotency_key=key).json()["job_id"] != first.json()["job_id"]
    # Concurrent retries with one key make one job, every retry answered 202 with it.  Several rounds, and
    # the admission of the first copy runs meanwhile: that race once deadlocked (a 500; core.db.usage).
    for _ in range(6):
        key2 = f"key-{uuid.uuid4()}"
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: api.submit(tenant, idempotency_key=key2), range(8)))
        assert [r.status_code for r in answers] == [202] * 8, [r.text for r in answers if r.status_code != 202]
        assert len({r.json()["job_id"] for r in answers}) == 1
    assert len(all_jobs(api, tenant)) == 7


def _ready_admissions(stack, tenant_id: str) -> int:
    """Ready messages of the admission queue asking for ``tenant_id``, read from Redis.

    Per tenant: other tests' tenants share the stack, and their jobs ending ask for passes of their own."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        ids = client.lrange("dramatiq:admission", 0, -1)
        raws = client.hmget("dramatiq:admission.msgs", ids) if ids else []
    finally:
        client.close()
    return sum(1 for raw in raws if raw and json.loads(raw)["args"] == [tenant_id])  # None: consumed meanwhile


def test_a_deep_queue_does_not_pile_up_admission_messages(api, stack):
    """One pending admission pass per tenant: another tenant's request is never behind hundreds."""
    busy = api.register(max_concurrent_jobs=1)
    blocker = api.submit_ok(busy, "bologna-acosta.zip")
    api.wait_status(busy, blocker, {"RUNNING", "PENDING"}, timeout=60)
    depths, queued = [], []
    for _ in range(40):
        queued.append(api.submit_ok(busy, "square.zip"))
        depths.append(_ready_admissions(stack, busy["tenant_id"]))
    assert max(depths) <= 1, depths
    other = api.register()
    api.wait_status(other, api.submit_ok(other, "square.zip"), "SUCCEEDED", timeout=180)
    for job_id in [blocker, *queued]:
        assert api.http.delete(f"/jobs/{job_id}", headers=api.auth(busy)).status_code == 200
