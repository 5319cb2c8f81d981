"""Crashes and lost messages: every job still ends exactly once.

Each test runs its own stack, since it kills parts of it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from devstack.services import start_redis
from tests.integration.harness import Api, wait_until

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _jobs(api: Api, tenant: dict) -> list[dict]:
    return api.http.get("/jobs", params={"limit": 500}, headers=api.auth(tenant)).json()["jobs"]


def _admin_jobs(api: Api, tenant: dict) -> list[dict]:
    return [j for j in api.http.get("/admin/jobs", params={"tenant_id": tenant["tenant_id"], "limit": 500}, headers=api.admin).json()["jobs"]]


def _all_succeeded(api, tenant, ids):
    jobs = {j["job_id"]: j for j in _jobs(api, tenant)}
    return set(jobs) == set(ids) and all(j["status"] == "SUCCEEDED" for j in jobs.values()) and jobs


def test_worker_killed_mid_admission(make_stack):
    stack = make_stack("killed-worker")
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register(max_concurrent_jobs=3)
    stack.procs["workers"].kill()  # admission messages now pile up in Redis

    ids = [api.submit_ok(tenant, "square.zip") for _ in range(12)]
    queues = {q["queue"]: q for q in api.http.get("/admin/queues", headers=api.admin).json()["queues"]}
    assert queues["admission"]["ready"] == 12
    assert queues["admission"]["oldest_message_age_seconds"] is not None

    # A worker starts, takes messages, and is SIGKILLed as soon as it has admitted something.
    victim = stack.start_workers(name="victim")
    wait_until(lambda: any(j["admitted_at"] for j in _jobs(api, tenant)), 60, "a first admission")
    victim.kill()

    stack.start_workers(name="survivor")
    jobs = wait_until(lambda: _all_succeeded(api, tenant, ids), 180, "every job to succeed after the crash", interval=0.5)
    assert len(jobs) == 12
    for job in jobs.values():
        assert job["exit_code"] == 0 and job["finished_at"] >= job["started_at"]


def test_redis_restarted_without_persistence_loses_no_job(make_stack):
    stack = make_stack("redis-restart")
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register(max_concurrent_jobs=2)
    stack.procs["workers"].kill()
    ids = [api.submit_ok(tenant, "square.zip") for _ in range(6)]

    redis = stack.service("redis")
    port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
    redis.kill()  # every queued message is gone with it
    stack.services[stack.services.index(redis)] = start_redis(Path(redis.log_path).parent, port=port, persistent=False)

    ready = api.http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert all(q["ready"] == 0 for q in api.http.get("/admin/queues", headers=api.admin).json()["queues"])

    stack.start_workers(name="after-restart")
    jobs = wait_until(lambda: _all_succeeded(api, tenant, ids), 180, "the sweeper to recover every job", interval=0.5)
    assert len(jobs) == 6


def test_ready_reports_an_unreachable_redis(make_stack):
    stack = make_stack("redis-down")
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    stack.service("redis").kill()
    r = api.http.get("/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["redis"].startswith("unreachable")
    assert r.json()["checks"]["postgres"] == "ok"
    # Submissions are still accepted and durable: the row is written, the message waits for the sweeper.
    tenant = api.register()
    r = api.submit(tenant, "square.zip")
    assert r.status_code == 202, r.text
    assert api.job(tenant, r.json()["job_id"])["status"] == "QUEUED"
