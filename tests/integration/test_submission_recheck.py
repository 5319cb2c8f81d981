"""Submissions authenticated from memory (core.services.recent_keys) against the real PostgreSQL.

An API worker may use a tenant row it read up to KEY_CACHE_SECONDS ago; the key
may have been regenerated, or the limits changed, through another worker since.
Here the test plays that worker: it authenticates through its own Context, then
changes the tenant through the running API, then submits with the remembered row.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from core.services import submission, tenants
from core.bootstrap import bootstrap
from core.services.errors import Invalid, Unauthenticated
from core.settings import Settings
from tests.integration.harness import ZIPS

SQUARE = ZIPS / "square.zip"


def _ctx(stack):
    return bootstrap(Settings(database_url=stack.env["DATABASE_URL"], redis_url=stack.env["REDIS_URL"],
                            data_dir=Path(stack.env["DATA_DIR"])))


def _stored_inputs(stack, tenant_id: str) -> list[str]:
    folder = Path(stack.env["DATA_DIR"]) / "storage" / "inputs" / tenant_id
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _jobs(api, tenant: dict) -> list[dict]:
    r = api.http.get("/admin/jobs", params={"tenant_id": tenant["tenant_id"]}, headers=api.admin)
    assert r.status_code == 200, r.text
    return r.json()["jobs"]


def _submit(ctx, row, archive: Path = SQUARE, cpu: int = 1, idempotency_key: str | None = None):
    with archive.open("rb") as fh:
        return submission.submit(ctx, row, fh, submission.Submission("s", cpu, 1, None, idempotency_key))


def test_a_key_regenerated_through_another_worker_creates_no_job(stack, api, tmp_path):
    t = api.register()
    ctx = _ctx(stack)
    remembered = tenants.authenticate(ctx, t["api_key"])
    replayed = _submit(ctx, remembered, idempotency_key="k1")[0]["job_id"]
    r = api.http.post("/auth/regenerate-key", json={"tenant_id": t["tenant_id"]}, headers=api.admin)
    assert r.status_code == 200, r.text
    assert tenants.recently_authenticated(ctx, t["api_key"]) == remembered  # this worker did not see it

    with pytest.raises(Unauthenticated, match="invalid API key"):
        _submit(ctx, remembered)
    assert tenants.recently_authenticated(ctx, t["api_key"]) is None  # forgotten on the refusal
    with pytest.raises(Unauthenticated):  # an idempotent replay answers only to the current key
        _submit(ctx, remembered, idempotency_key="k1")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(Unauthenticated):  # told that its key is gone, not what is wrong with the upload
        _submit(ctx, remembered, archive=broken)
    assert [j["job_id"] for j in _jobs(api, t)] == [replayed]
    assert _stored_inputs(stack, t["tenant_id"]) == [f"{replayed}.zip"]


def _remembered_then_patched(stack, api, max_cpu: int, patched_max_cpu: int):
    """A tenant whose row this Context remembers with ``max_cpu``, then patched through the API."""
    t = api.register(max_cpu=max_cpu)
    ctx = _ctx(stack)
    remembered = tenants.authenticate(ctx, t["api_key"])
    r = api.http.patch(f"/auth/tenants/{t['tenant_id']}", json={"max_cpu": patched_max_cpu}, headers=api.admin)
    assert r.status_code == 200, r.text
    return t, ctx, remembered


def test_limits_lowered_through_another_worker_refuse_the_job(stack, api):
    t, ctx, remembered = _remembered_then_patched(stack, api, 8, 2)
    with pytest.raises(Invalid, match="max_cpu limit of 2"):
        _submit(ctx, remembered, cpu=4)
    assert _jobs(api, t) == [] and _stored_inputs(stack, t["tenant_id"]) == []


def test_limits_raised_through_another_worker_apply_at_once(stack, api):
    t, ctx, remembered = _remembered_then_patched(stack, api, 2, 6)
    row, created = _submit(ctx, remembered, cpu=4)  # the remembered max_cpu 2 is not the one that decides
    assert created and row["cpu_request"] == 4
    assert [j["job_id"] for j in _jobs(api, t)] == [row["job_id"]]
    assert api.http.delete(f"/jobs/{row['job_id']}", headers=api.auth(t)).status_code == 200


def test_the_api_refuses_a_regenerated_key_it_verified_before(api):
    t = api.register()
    first = api.submit_ok(t)  # the worker now remembers the key
    r = api.http.post("/auth/regenerate-key", json={"tenant_id": t["tenant_id"]}, headers=api.admin)
    assert r.status_code == 200, r.text
    refused = api.submit(t)
    assert refused.status_code == 401, refused.text
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    fresh = {**t, "api_key": r.json()["api_key"]}
    assert [j["job_id"] for j in _jobs(api, fresh)] == [first]
    assert api.submit(fresh).status_code == 202
