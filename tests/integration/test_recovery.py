"""Crashes and lost messages: every job still ends exactly once.

Each test runs its own stack, since it kills parts of it.
"""
from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from core.db.engine import sqlalchemy_url

from devstack.services import start_postgres, start_redis
from tests.integration.harness import Api, long_square, wait_until

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _jobs(api: Api, tenant: dict) -> list[dict]:
    return api.http.get("/jobs", params={"limit": 500}, headers=api.auth(tenant)).json()["jobs"]


def _kill_redis(stack):
    """Stop Redis (no persistence: every queued message is gone); returns what restarts it, empty, on its port."""
    redis = stack.service("redis")
    port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
    redis.kill()

    def restart():
        stack.services[stack.services.index(redis)] = start_redis(Path(redis.log_path).parent, port=port,
                                                                  persistent=False)
    return restart


def _sumo_of(job_id: str) -> list[int]:
    """The local executor's ``sumo`` processes of a job (they run in its work directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "sumo" \
                    and job_id in os.readlink(proc / "cwd"):
                found.append(int(proc.name))
        except OSError:
            continue  # exited meanwhile
    return found


def _all_succeeded(api, tenant, ids):
    jobs = {j["job_id"]: j for j in _jobs(api, tenant)}
    return set(jobs) == set(ids) and all(j["status"] == "SUCCEEDED" for j in jobs.values()) and jobs


def test_worker_killed_mid_admission(make_stack):
    stack = make_stack("killed-worker")
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register(max_concurrent_jobs=3)
    stack.procs["workers"].kill()  # admission requests now wait in Redis

    ids = [api.submit_ok(tenant, "square.zip") for _ in range(12)]
    queues = {q["queue"]: q for q in api.http.get("/admin/queues", headers=api.admin).json()["queues"]}
    assert queues["admission"]["ready"] == 1, "one pending admission pass per tenant"
    assert queues["admission"]["oldest_message_age_seconds"] is not None

    # Hold the tenant's row lock so the next admission pass blocks inside its transaction,
    # then SIGKILL the worker there: truly mid-admission.
    engine = sa.create_engine(sqlalchemy_url(stack.env["DATABASE_URL"]), poolclass=sa.pool.NullPool)
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT 1 FROM tenants WHERE tenant_id = :t FOR UPDATE"), {"t": tenant["tenant_id"]})
        victim = stack.start_workers(name="victim")

        def blocked() -> int:
            with engine.connect() as probe:  # a fresh transaction: pg_stat_activity is a per-transaction snapshot
                return probe.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%FROM tenants%'"
                )).scalar()

        wait_until(blocked, 60, "the admission pass to block on the tenant lock")
        victim.kill()
        holder.rollback()
    assert all(j["status"] == "QUEUED" for j in _jobs(api, tenant)), "the killed pass committed nothing"

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

    _kill_redis(stack)()  # every queued message is gone with it

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


def test_cancel_sent_while_redis_is_down_still_stops_the_run(make_stack):
    stack = make_stack("lost-cancel")
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register(max_concurrent_jobs=1)
    job_id = api.submit_ok(tenant, long_square())
    api.wait_status(tenant, job_id, "RUNNING", timeout=60)
    wait_until(lambda: "Loading" in api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).json()["logs"],
               60, "the run's log")

    restart_redis = _kill_redis(stack)
    r = api.http.delete(f"/jobs/{job_id}", headers=api.auth(tenant))
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text  # its messages are lost
    restart_redis()

    # Only the sweeper's re-sent collection is left to stop the run: it must, or nothing is ever collected.
    api.wait_results(tenant, job_id, timeout=120)
    log_text = api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).json()["logs"]
    assert "Reason: Interrupted" in log_text, "SUMO was stopped by the signal"
    assert api.job(tenant, job_id)["status"] == "CANCELLED"


def _kill_postgres(stack):
    """Kill PostgreSQL, as a crash would; returns what starts it again on its port and data (crash recovery)."""
    pg = stack.service("postgres")
    port = int(pg.url.rsplit(":", 1)[1].split("/")[0])
    pg.kill()

    def restart():
        stack.services[stack.services.index(pg)] = start_postgres(Path(pg.log_path).parent, port=port)
    return restart


def test_postgres_restarted_mid_run_loses_no_job(make_stack, tmp_path):
    """PostgreSQL killed while a job runs and started again once the run ended: the job ends SUCCEEDED with
    its results; meanwhile every request answers 503 naming the database, and a submission refused then
    goes through when repeated with its Idempotency-Key."""
    stack = make_stack("postgres-restart", durable=True)
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register(max_concurrent_jobs=2)
    job_id = api.submit_ok(tenant, long_square(end=40000))
    api.wait_status(tenant, job_id, "RUNNING", timeout=60)
    wait_until(lambda: _sumo_of(job_id), 60, f"the sumo process of job {job_id}")

    restart = _kill_postgres(stack)
    read = api.http.get(f"/jobs/{job_id}", headers=api.auth(tenant))
    assert read.status_code == 503 and "PostgreSQL" in read.json()["detail"], read.text
    assert read.headers["Retry-After"].isdigit()
    refused = api.submit(tenant, "square.zip", idempotency_key="during-the-outage")
    assert refused.status_code == 503 and "PostgreSQL" in refused.json()["detail"], refused.text
    ready = api.http.get("/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["postgres"].startswith("unreachable")
    wait_until(lambda: not _sumo_of(job_id), 120, f"job {job_id}'s run ending while PostgreSQL is down")
    restart()

    assert api.wait_status(tenant, job_id, timeout=120)["status"] == "SUCCEEDED"
    assert "sumo.log" in {f["name"] for f in api.wait_results(tenant, job_id, timeout=60)["files"]}
    workers_log = (stack.data_dir / "logs" / "workers.log").read_text()
    assert "apply_status" in workers_log and "PostgreSQL cannot be reached; try again shortly; retrying" in workers_log
    assert "Failed to process message apply_status" not in workers_log, "an outage is a warning line, not a traceback"
    again = api.submit(tenant, "square.zip", idempotency_key="during-the-outage")
    assert again.status_code == 202, again.text
    assert api.wait_status(tenant, again.json()["job_id"], timeout=120)["status"] == "SUCCEEDED"


def test_a_run_lost_with_its_worker_and_redis_is_run_again(make_stack):
    """A running job's simulation worker killed, and Redis restarted empty (its message gone with it): nothing
    would ever run the job again but the sweeper, which re-sends the run of a job left RUNNING (or PENDING,
    waiting for a slot) as it does the start of an ADMITTED one."""
    stack = make_stack("lost-run")
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register()
    job_id = api.submit_ok(tenant, long_square(end=40000))
    api.wait_status(tenant, job_id, "RUNNING", timeout=60)
    stack.procs["simulations"].kill()
    _kill_redis(stack)()
    stack.start_simulation_workers(name="simulations-after")
    job = api.wait_status(tenant, job_id, TERMINAL, timeout=120)
    assert (job["status"], job["exit_code"]) == ("SUCCEEDED", 0), job
    assert "sumo.log" in {f["name"] for f in api.wait_results(tenant, job_id, timeout=60)["files"]}
