"""A finished job's data deleted, on the tenant's request (DELETE /jobs/{id}/data) and by retention (the
live sweeper, INPUT_RETENTION_DAYS and RESULT_RETENTION_DAYS at their defaults of 30 and 90 days): the row
says what and when, the files are gone from the host, the log and downloads answer 410, the tenant's stored
bytes go down."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from core.clock import utcnow
from core.db.engine import sqlalchemy_url
from core.db.tables import jobs
from tests.integration.harness import ZIPS, long_square, wait_until

SQUARE_SIZE = (ZIPS / "square.zip").stat().st_size


def stored(api, tenant) -> int:
    return api.http.get("/tenants/me/dashboard", headers=api.auth(tenant)).json()["usage_against_limits"]["stored_bytes"]["used"]


def store_paths(stack, tenant, job_id):
    root = stack.data_dir / "storage"
    return root / "inputs" / tenant["tenant_id"] / f"{job_id}.zip", root / "results" / tenant["tenant_id"] / job_id


def finished_job(api, tenant) -> tuple[str, dict]:
    job_id = api.submit_ok(tenant, "square.zip")
    api.wait_status(tenant, job_id, "SUCCEEDED", timeout=120)
    return job_id, api.wait_results(tenant, job_id)


def test_deleting_a_finished_job_s_data_removes_it_everywhere(stack, api, tenant):
    job_id, results = finished_job(api, tenant)
    result_bytes = sum(f["size"] for f in results["files"])
    assert stored(api, tenant) == SQUARE_SIZE + result_bytes
    input_file, result_dir = store_paths(stack, tenant, job_id)
    assert input_file.is_file() and (result_dir / "sumo.log").is_file()

    r = api.http.delete(f"/jobs/{job_id}/data", headers=api.auth(tenant))
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "SUCCEEDED" and job["data_deleted_at"]
    assert job["input_deleted_at"] == job["results_deleted_at"] == job["data_deleted_at"]
    assert job["kpis"], "what the run measured stays on the row"
    assert not input_file.exists()
    assert not result_dir.exists() or not any(result_dir.iterdir()), list(result_dir.iterdir())
    assert stored(api, tenant) == 0

    logs = api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant))
    assert logs.status_code == 410 and "deleted" in logs.json()["detail"] and f"/jobs/{job_id}/data" in logs.json()["detail"], logs.text
    assert api.http.get(f"/jobs/{job_id}/logs/stream", headers=api.auth(tenant)).status_code == 410
    download = api.http.get(f"/jobs/{job_id}/results/sumo.log", headers=api.auth(tenant))
    assert download.status_code == 410, download.text
    listing = api.http.get(f"/jobs/{job_id}/results", headers=api.auth(tenant)).json()
    assert listing["files"] == [] and listing["results_deleted_at"] == job["results_deleted_at"]

    again = api.http.delete(f"/jobs/{job_id}/data", headers=api.auth(tenant))
    assert again.status_code == 200 and again.json()["data_deleted_at"] == job["data_deleted_at"], "idempotent"
    assert stored(api, tenant) == 0, "freed once"
    other = api.register()
    assert api.http.delete(f"/jobs/{job_id}/data", headers=api.auth(other)).status_code == 404


def test_an_unfinished_job_s_data_is_refused_and_a_cancelled_one_s_is_deleted_with_its_log(stack, api, tenant):
    """409 naming the state while it runs; cancelled, its data may be deleted at once, even before its log is
    collected: the collection that follows stores nothing for good and the executor's copy goes."""
    job_id = api.submit_ok(tenant, long_square())
    api.wait_status(tenant, job_id, "RUNNING", timeout=60)
    r = api.http.delete(f"/jobs/{job_id}/data", headers=api.auth(tenant))
    assert r.status_code == 409 and "RUNNING" in r.json()["detail"], r.text

    assert api.http.delete(f"/jobs/{job_id}", headers=api.auth(tenant)).json()["status"] == "CANCELLED"
    r = api.http.delete(f"/jobs/{job_id}/data", headers=api.auth(tenant))
    assert r.status_code == 200 and r.json()["data_deleted_at"], r.text
    input_file, result_dir = store_paths(stack, tenant, job_id)
    work_dir = stack.data_dir / "work" / job_id
    assert api.wait_results(tenant, job_id, timeout=60)["files"] == []
    wait_until(lambda: not work_dir.exists(), 30, "the executor's copy released")
    assert not input_file.exists()
    # The collection records its end, then removes what it stored for nothing: wait for the removal too.
    wait_until(lambda: not result_dir.exists() or not any(result_dir.iterdir()), 30,
               "what the collection stored after the deletion removed")
    assert stored(api, tenant) == 0
    assert api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).status_code == 410


def test_retention_deletes_expired_inputs_then_expired_results(stack, api, tenant):
    job_id, results = finished_job(api, tenant)
    result_bytes = sum(f["size"] for f in results["files"])
    input_file, result_dir = store_paths(stack, tenant, job_id)
    engine = sa.create_engine(sqlalchemy_url(stack.env["DATABASE_URL"]))

    def age(**columns_days) -> None:
        with engine.begin() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(
                {c: utcnow() - timedelta(days=d) for c, d in columns_days.items()}))

    try:
        # Ended 40 days ago: past the input's 30 days, within the results' 90.
        age(finished_at=40, results_collected_at=40)
        job = wait_until(lambda: (j := api.job(tenant, job_id))["input_deleted_at"] and j, 30, "the input deleted")
        assert job["results_deleted_at"] is None and job["data_deleted_at"] is None
        assert not input_file.exists() and (result_dir / "sumo.log").is_file()
        assert stored(api, tenant) == result_bytes
        assert api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).status_code == 200

        age(results_collected_at=100)
        job = wait_until(lambda: (j := api.job(tenant, job_id))["results_deleted_at"] and j, 30, "the results deleted")
        assert job["data_deleted_at"] is None and job["status"] == "SUCCEEDED"
        assert not result_dir.exists() or not any(result_dir.iterdir())
        assert stored(api, tenant) == 0
        logs = api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant))
        assert logs.status_code == 410 and "RESULT_RETENTION_DAYS" in logs.json()["detail"], logs.text
        assert api.http.get(f"/jobs/{job_id}/results", headers=api.auth(tenant)).json()["files"] == []
        # The tenant's own deletion afterwards frees nothing more.
        assert api.http.delete(f"/jobs/{job_id}/data", headers=api.auth(tenant)).status_code == 200
        assert stored(api, tenant) == 0
    finally:
        engine.dispose()


def test_the_dashboard_shows_usage_against_every_limit(api):
    t = api.register(max_cpu=3, max_memory_gi=5, max_concurrent_jobs=2, max_stored_gb=2)
    job_id = api.submit_ok(t, long_square(), cpu=2, memory=3)
    try:
        api.wait_status(t, job_id, {"ADMITTED", "PENDING", "RUNNING"}, timeout=60)
        dash = api.http.get("/tenants/me/dashboard", headers=api.auth(t)).json()["usage_against_limits"]
        assert dash["cpu"] == {"used": 2, "limit": 3, "limit_name": "max_cpu"}
        assert dash["memory_gi"] == {"used": 3, "limit": 5, "limit_name": "max_memory_gi"}
        assert dash["concurrent_jobs"] == {"used": 1, "limit": 2, "limit_name": "max_concurrent_jobs"}
        assert dash["queued_jobs"] == {"used": 0, "limit": 500, "limit_name": "MAX_QUEUED_JOBS_PER_TENANT"}
        assert dash["stored_bytes"]["used"] == len(long_square()) and dash["stored_bytes"]["limit"] == 2 * 10**9
        assert dash["stored_bytes"]["limit_gb"] == 2
        assert dash["submissions_per_second"] == {"limit": 20, "burst": 100, "limit_name": "SUBMIT_RATE_PER_SECOND"}
    finally:
        api.http.delete(f"/jobs/{job_id}", headers=api.auth(t))
