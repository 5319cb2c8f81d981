"""Tenant isolation, authentication, key rotation, registration rules and health endpoints."""
from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.harness import Api

pytestmark = pytest.mark.integration

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def pair(api):
    """Tenants A and B; A owns one finished job (with results) and one queued-or-later job."""
    a, b = api.register(), api.register()
    job_id = api.submit_ok(a, "square.zip")
    api.wait_status(a, job_id, "SUCCEEDED", timeout=90)
    results = api.wait_results(a, job_id)
    assert results["files"], results
    return {"a": a, "b": b, "job_id": job_id, "result_name": results["files"][0]["name"]}


def job_endpoints(job_id: str, result_name: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/logs"),
        ("GET", f"/jobs/{job_id}/logs/stream"),
        ("GET", f"/jobs/{job_id}/results"),
        ("GET", f"/jobs/{job_id}/results/{result_name}"),
        ("DELETE", f"/jobs/{job_id}"),
    ]


def call(api: Api, method: str, path: str, headers: dict | None = None, **kw) -> httpx.Response:
    return api.http.request(method, path, headers=headers or {}, timeout=httpx.Timeout(20), **kw)


# ----------------------------------------------------------------- cross-tenant access


def test_owner_can_use_every_job_endpoint(api, pair):
    a, job_id = pair["a"], pair["job_id"]
    for method, path in job_endpoints(job_id, pair["result_name"]):
        if method == "DELETE":
            continue
        r = call(api, method, path, api.auth(a))
        assert r.status_code == 200, (path, r.status_code, r.text[:200])


def test_other_tenant_gets_404_on_every_job_endpoint(api, pair):
    a, b, job_id = pair["a"], pair["b"], pair["job_id"]
    for method, path in job_endpoints(job_id, pair["result_name"]):
        r = call(api, method, path, api.auth(b))
        assert r.status_code == 404, (method, path, r.status_code, r.text[:200])
        assert "not found" in r.json()["detail"], r.text
    # B's DELETE did not cancel or touch A's job
    assert api.job(a, job_id)["status"] == "SUCCEEDED"


def test_other_tenants_job_never_listed(api, pair):
    b, job_id = pair["b"], pair["job_id"]
    for params in ({}, {"status": "SUCCEEDED"}, {"limit": 500}):
        r = call(api, "GET", "/jobs", api.auth(b), params=params)
        assert r.status_code == 200, r.text
        assert job_id not in {j["job_id"] for j in r.json()["jobs"]}
    r = call(api, "GET", "/tenants/me/dashboard", api.auth(b))
    assert r.status_code == 200
    assert job_id not in r.text
    assert r.json()["counts"]["SUCCEEDED"] == 0


def test_tenant_record_visible_only_to_its_owner(api, pair):
    a, b = pair["a"], pair["b"]
    r = call(api, "GET", f"/auth/tenants/{a['tenant_id']}", api.auth(b))
    assert r.status_code == 404, r.text
    r = call(api, "GET", f"/auth/tenants/{a['tenant_id']}", api.auth(a))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenant_id"] == a["tenant_id"]
    assert body["namespace"] == f"sumo-{a['tenant_id']}"
    assert "api_key" not in body and "api_key_hash" not in body
    # an unknown tenant and another existing one look the same to B
    r2 = call(api, "GET", "/auth/tenants/no-such-tenant-xyz", api.auth(b))
    assert r2.status_code == 404


# ----------------------------------------------------------------- authentication


ADMIN_ENDPOINTS = [
    ("GET", "/admin/jobs", None),
    ("GET", "/admin/activity", None),
    ("GET", "/admin/cluster", None),
    ("GET", "/admin/queues", None),
    ("POST", "/auth/register", {"tenant_id": "never-made"}),
    ("GET", "/auth/tenants", None),
    ("PATCH", "/auth/tenants/{tid}", {"max_cpu": 100}),
]


def test_admin_endpoints_work_with_admin_key(api, pair):
    tid = pair["a"]["tenant_id"]
    for method, path, body in ADMIN_ENDPOINTS:
        if method == "POST":
            body = {"tenant_id": f"adm-{uuid.uuid4().hex[:8]}"}
        if method == "PATCH":
            body = {"max_cpu": 8}
        r = call(api, method, path.format(tid=tid), api.admin, json=body)
        assert r.status_code in (200, 201), (path, r.status_code, r.text)


@pytest.mark.parametrize("who", ["anonymous", "tenant-bearer", "tenant-x-api-key", "tenant-key-as-admin-key", "wrong-admin-key"])
def test_admin_endpoints_refuse_non_admins(api, pair, who):
    a = pair["a"]
    headers, allowed = {
        "anonymous": ({}, {401}),
        "tenant-bearer": (api.auth(a), {401, 403}),
        "tenant-x-api-key": ({"X-API-Key": a["api_key"]}, {401, 403}),
        "tenant-key-as-admin-key": ({"X-Admin-Key": a["api_key"]}, {403}),
        "wrong-admin-key": ({"X-Admin-Key": "not-the-admin-key"}, {403}),
    }[who]
    for method, path, body in ADMIN_ENDPOINTS:
        r = call(api, method, path.format(tid=a["tenant_id"]), headers, json=body)
        assert r.status_code in allowed, (who, method, path, r.status_code, r.text)
    # and nothing changed: the PATCH did not apply, the register did not happen
    assert call(api, "GET", f"/auth/tenants/{a['tenant_id']}", api.admin).json()["max_cpu"] == 8
    assert call(api, "GET", "/auth/tenants/never-made", api.admin).status_code == 404


def tenant_endpoints(job_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", f"/jobs/{job_id}"),
        ("DELETE", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/logs"),
        ("GET", f"/jobs/{job_id}/logs/stream"),
        ("GET", f"/jobs/{job_id}/results"),
        ("GET", f"/jobs/{job_id}/results/x.xml"),
        ("GET", "/tenants/me/dashboard"),
        ("GET", "/auth/tenants/whoever"),
        ("POST", "/auth/regenerate-key"),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk-not-a-real-key"},
        {"Authorization": "Bearer not-even-prefixed"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"X-API-Key": "sk-wrong"},
    ],
    ids=["anonymous", "unknown-sk", "no-prefix", "basic", "empty-bearer", "x-api-key-wrong"],
)
def test_tenant_endpoints_refuse_missing_or_invalid_key(api, pair, headers):
    for method, path in tenant_endpoints(pair["job_id"]):
        kw = {"json": {"tenant_id": pair["a"]["tenant_id"]}} if path == "/auth/regenerate-key" else {}
        r = call(api, method, path, headers, **kw)
        assert r.status_code == 401, (headers, method, path, r.status_code, r.text)
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
    # A's job was not cancelled by any of these
    assert api.job(pair["a"], pair["job_id"])["status"] == "SUCCEEDED"


def test_admin_key_is_not_a_tenant(api, pair):
    r = call(api, "GET", "/jobs", api.admin)
    assert r.status_code == 403, r.text
    r = call(api, "GET", f"/jobs/{pair['job_id']}", api.admin)
    assert r.status_code == 403, r.text


def test_x_api_key_header_authenticates(api, pair):
    r = call(api, "GET", "/jobs", {"X-API-Key": pair["a"]["api_key"]})
    assert r.status_code == 200
    assert pair["job_id"] in {j["job_id"] for j in r.json()["jobs"]}


# ----------------------------------------------------------------- job ids


@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "00000000-0000-0000-0000", "%20", "' OR 1=1 --"])
def test_malformed_job_ids_are_refused_cleanly(api, pair, bad):
    a = pair["a"]
    for method, path in job_endpoints(bad, "x.xml"):
        r = call(api, method, path, api.auth(a))
        assert r.status_code in (404, 422), (method, path, r.status_code, r.text)


def test_unknown_job_id_is_404(api, pair):
    a = pair["a"]
    for method, path in job_endpoints(UNKNOWN, "x.xml"):
        r = call(api, method, path, api.auth(a))
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert UNKNOWN in r.json()["detail"]


def test_unknown_result_file_is_404(api, pair):
    r = call(api, "GET", f"/jobs/{pair['job_id']}/results/no-such-file.xml", api.auth(pair["a"]))
    assert r.status_code == 404
    assert "no-such-file.xml" in r.json()["detail"]


@pytest.mark.parametrize(
    "method,path,kw",
    [
        ("GET", "/auth/tenants/a%00b", {}),
        ("PATCH", "/auth/tenants/a%00b", {"json": {"max_cpu": 2}}),
        ("POST", "/auth/regenerate-key", {"json": {"tenant_id": "a\x00b"}}),
        ("GET", "/auth/tenants", {"params": {"cursor": "a\x00b"}}),
        ("GET", "/admin/jobs", {"params": {"tenant_id": "a\x00b"}}),
    ],
    ids=["get-tenant", "patch-tenant", "regenerate-key", "tenants-cursor", "admin-jobs-tenant"],
)
def test_nul_byte_in_tenant_id_is_not_a_server_error(api, method, path, kw):
    """PostgreSQL refuses NUL in text; the API must answer 404/422, not 500."""
    # own connection: after a 500 the server drops the keep-alive connection of the shared client
    with httpx.Client(base_url=str(api.http.base_url), timeout=httpx.Timeout(20)) as http:
        r = http.request(method, path, headers=api.admin, **kw)
    assert r.status_code in (404, 422), (method, path, r.status_code, r.text)


# ----------------------------------------------------------------- key rotation


def test_regenerate_key_revokes_the_old_key_at_once(api):
    t = api.register()
    old = api.auth(t)
    assert call(api, "GET", "/jobs", old).status_code == 200
    r = call(api, "POST", "/auth/regenerate-key", old, json={"tenant_id": t["tenant_id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenant_id"] == t["tenant_id"]
    new_key = body["api_key"]
    assert new_key.startswith("sk-") and new_key != t["api_key"]
    assert call(api, "GET", "/jobs", old).status_code == 401
    assert call(api, "GET", "/tenants/me/dashboard", {"X-API-Key": t["api_key"]}).status_code == 401
    assert call(api, "GET", "/jobs", {"Authorization": f"Bearer {new_key}"}).status_code == 200


def test_admin_can_regenerate_any_key(api):
    t = api.register()
    r = call(api, "POST", "/auth/regenerate-key", api.admin, json={"tenant_id": t["tenant_id"]})
    assert r.status_code == 200, r.text
    assert call(api, "GET", "/jobs", api.auth(t)).status_code == 401
    assert call(api, "GET", "/jobs", {"Authorization": f"Bearer {r.json()['api_key']}"}).status_code == 200


def test_admin_regenerate_unknown_tenant_is_404(api):
    r = call(api, "POST", "/auth/regenerate-key", api.admin, json={"tenant_id": "no-such-tenant-abc"})
    assert r.status_code == 404, r.text


def test_tenant_cannot_regenerate_another_tenants_key(api):
    a, b = api.register(), api.register()
    r = call(api, "POST", "/auth/regenerate-key", api.auth(b), json={"tenant_id": a["tenant_id"]})
    assert r.status_code == 404, r.text
    assert "api_key" not in r.text
    assert call(api, "GET", "/jobs", api.auth(a)).status_code == 200
    assert call(api, "GET", "/jobs", api.auth(b)).status_code == 200


# ----------------------------------------------------------------- registration and limits


def test_duplicate_register_is_409(api):
    t = api.register()
    r = call(api, "POST", "/auth/register", api.admin, json={"tenant_id": t["tenant_id"]})
    assert r.status_code == 409, r.text
    assert t["tenant_id"] in r.json()["detail"]
    # the original key still works: the duplicate did not overwrite it
    assert call(api, "GET", "/jobs", api.auth(t)).status_code == 200


def test_register_returns_key_once_and_defaults(api):
    tid = f"t-{uuid.uuid4().hex[:8]}"
    r = call(api, "POST", "/auth/register", api.admin, json={"tenant_id": tid})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["api_key"].startswith("sk-")
    assert body["namespace"] == f"sumo-{tid}"
    assert (body["max_cpu"], body["max_memory_gi"], body["max_concurrent_jobs"]) == (8, 16, 5)
    listed = call(api, "GET", "/auth/tenants", api.admin, params={"limit": 1000}).json()["tenants"]
    assert tid in {t["tenant_id"] for t in listed}
    assert all("api_key" not in t and "api_key_hash" not in t for t in listed)


@pytest.mark.parametrize(
    "tenant_id",
    ["Bad_Name", "kube-system", "kube-foo", "default", "x" * 70, "x" * 59, "", "-x", "x-", "a.b", "sumo-k8", "trailing-newline\n",
     "k8-system"],  # k8-system: its namespace, sumo-k8-system, is the controller's
)
def test_bad_tenant_ids_are_422(api, tenant_id):
    r = call(api, "POST", "/auth/register", api.admin, json={"tenant_id": tenant_id})
    assert r.status_code == 422, (tenant_id, r.status_code, r.text)
    assert "tenant_id" in r.json()["detail"]


@pytest.mark.parametrize("field", ["max_cpu", "max_memory_gi", "max_concurrent_jobs"])
@pytest.mark.parametrize("value", [0, -1, 10_001, 10**12, "many", 1.5])
def test_register_limits_are_range_checked(api, field, value):
    r = call(api, "POST", "/auth/register", api.admin, json={"tenant_id": f"r-{uuid.uuid4().hex[:8]}", field: value})
    assert r.status_code == 422, (field, value, r.status_code, r.text)
    assert field in r.json()["detail"]


@pytest.mark.parametrize("field", ["max_cpu", "max_memory_gi", "max_concurrent_jobs"])
@pytest.mark.parametrize("value", [0, -1, 10_001, 2**63])
def test_patch_limits_are_range_checked(api, pair, field, value):
    tid = pair["b"]["tenant_id"]
    r = call(api, "PATCH", f"/auth/tenants/{tid}", api.admin, json={field: value})
    assert r.status_code == 422, (field, value, r.status_code, r.text)
    assert field in r.json()["detail"]
    assert call(api, "GET", f"/auth/tenants/{tid}", api.admin).json()[field] == pair["b"][field]


def test_patch_changes_limits(api):
    t = api.register()
    r = call(api, "PATCH", f"/auth/tenants/{t['tenant_id']}", api.admin, json={"max_cpu": 3, "max_concurrent_jobs": 2})
    assert r.status_code == 200, r.text
    assert (r.json()["max_cpu"], r.json()["max_memory_gi"], r.json()["max_concurrent_jobs"]) == (3, 16, 2)
    assert call(api, "GET", f"/auth/tenants/{t['tenant_id']}", api.auth(t)).json()["max_cpu"] == 3


def test_patch_unknown_tenant_is_404(api):
    r = call(api, "PATCH", "/auth/tenants/no-such-tenant-q", api.admin, json={"max_cpu": 2})
    assert r.status_code == 404, r.text
    r = call(api, "PATCH", "/auth/tenants/no-such-tenant-q", api.admin, json={})
    assert r.status_code == 404, r.text


# ----------------------------------------------------------------- health


def test_health(api):
    r = call(api, "GET", "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_ready(api):
    r = call(api, "GET", "/ready")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok", "sandbox": "ok"}}


def test_metrics(api, pair):
    call(api, "GET", "/health")
    r = call(api, "GET", "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "sumo_jobs" in r.text
    assert "sumo_http_request_duration_seconds" in r.text
    # Public, so nothing per tenant: no tenant id, job id or scenario name in any label.
    for private in (pair["a"]["tenant_id"], pair["b"]["tenant_id"], pair["job_id"], "scenario.zip"):
        assert private not in r.text, private
