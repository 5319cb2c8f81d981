"""Listing and polling: ordering, filters, cursors, ETags, queue positions, dashboard, admin views."""
from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.integration.harness import TERMINAL, Api, wait_until

pytestmark = pytest.mark.integration

STATUSES = ["QUEUED", "ADMITTED", "PENDING", "RUNNING", "COLLECTING", "SUCCEEDED", "FAILED", "CANCELLED"]


def get(api: Api, path: str, headers: dict, **params):
    r = api.http.get(path, headers=headers, params=params)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def cancel(api: Api, tenant: dict, job_id: str) -> dict:
    r = api.http.delete(f"/jobs/{job_id}", headers=api.auth(tenant))
    assert r.status_code == 200, r.text
    return r.json()


def all_pages(api: Api, path: str, headers: dict, limit: int, **params) -> list[list[dict]]:
    pages, cursor = [], None
    for _ in range(50):
        q = {"limit": limit, **params}
        if cursor:
            q["cursor"] = cursor
        body = get(api, path, headers, **q)
        pages.append(body["jobs"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("pagination did not end")


def fresh_get(api: Api, path: str, params: dict, headers: dict) -> httpx.Response:
    """A GET on its own connection: after a 500 the server drops the keep-alive connection."""
    with httpx.Client(base_url=str(api.http.base_url), timeout=httpx.Timeout(20)) as http:
        return http.get(path, params=params, headers=headers)


def forged_cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.fixture(scope="module")
def seven(api):
    """A tenant with 7 jobs, submitted one after the other; the first four cancelled at once."""
    t = api.register(max_concurrent_jobs=1)
    ids = [api.submit_ok(t, "square.zip", scenario_id=f"s{i}") for i in range(7)]
    for job_id in ids[:4]:
        cancel(api, t, job_id)
    yield t, ids
    for job_id in ids[4:]:
        api.http.delete(f"/jobs/{job_id}", headers=api.auth(t))


# ----------------------------------------------------------------- GET /jobs


def test_list_newest_first(api, seven):
    t, ids = seven
    jobs = get(api, "/jobs", api.auth(t))["jobs"]
    assert [j["job_id"] for j in jobs] == ids[::-1]
    stamps = [j["submitted_at"] for j in jobs]
    assert stamps == sorted(stamps, reverse=True)
    assert [j["scenario_id"] for j in jobs] == [f"s{i}" for i in range(6, -1, -1)]
    for j in jobs:
        assert set(j) >= {"job_id", "scenario_id", "status", "cpu_request", "memory_gi", "config_file", "submitted_at",
                          "admitted_at", "started_at", "finished_at", "exit_code", "error", "pending_reason", "kpis"}
        assert "tenant_id" not in j and "input_key" not in j


def test_cursor_pagination_returns_each_job_once_in_order(api, seven):
    t, ids = seven
    pages = all_pages(api, "/jobs", api.auth(t), limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [j["job_id"] for p in pages for j in p] == ids[::-1]


def test_exact_multiple_page_size_ends_with_null_cursor(api, seven):
    t, ids = seven
    pages = all_pages(api, "/jobs", api.auth(t), limit=7)
    assert len(pages) == 1 and len(pages[0]) == 7
    pages = all_pages(api, "/jobs", api.auth(t), limit=1)
    assert [p[0]["job_id"] for p in pages] == ids[::-1]


def test_status_filter(api, seven):
    t, ids = seven
    cancelled = get(api, "/jobs", api.auth(t), status="CANCELLED")["jobs"]
    assert [j["job_id"] for j in cancelled] == ids[:4][::-1]
    assert all(j["status"] == "CANCELLED" and j["error"] == "cancelled by the tenant" for j in cancelled)
    others = []
    for status in STATUSES:
        if status != "CANCELLED":
            page = get(api, "/jobs", api.auth(t), status=status)["jobs"]
            assert all(j["status"] == status for j in page)
            others += [j["job_id"] for j in page]
    # the cancelled jobs appear under no other status (the others may move on between the calls)
    assert not set(others) & set(ids[:4])
    assert set(others) <= set(ids[4:])
    pages = all_pages(api, "/jobs", api.auth(t), limit=3, status="CANCELLED")
    assert [j["job_id"] for p in pages for j in p] == ids[:4][::-1]


@pytest.mark.parametrize("status", ["queued", "DONE", "", "QUEUED,RUNNING"])
def test_bad_status_filter_is_422(api, seven, status):
    r = api.http.get("/jobs", params={"status": status}, headers=api.auth(seven[0]))
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("limit", [0, -1, 501, "ten"])
def test_bad_limit_is_422(api, seven, limit):
    r = api.http.get("/jobs", params={"limit": limit}, headers=api.auth(seven[0]))
    assert r.status_code == 422, r.text
    assert "limit" in r.json()["detail"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!not base64!!!",
        forged_cursor({"a": 1}),
        forged_cursor([1, 2]),
        forged_cursor(["yesterday", "x"]),
        forged_cursor(["2026-01-01T00:00:00+00:00"]),
        forged_cursor(["2026-01-01T00:00:00+00:00", "not-a-uuid"]),
        forged_cursor(["2026-01-01T00:00:00+00:00", "1"]),
    ],
    ids=["garbage", "not-base64", "dict", "ints", "bad-date", "one-value", "bad-uuid", "short-uuid"],
)
def test_garbage_cursor_is_422(api, seven, cursor):
    r = fresh_get(api, "/jobs", {"cursor": cursor}, api.auth(seven[0]))
    assert r.status_code == 422, r.text
    assert "cursor" in r.json()["detail"]


def test_admin_garbage_cursor_is_422(api):
    r = fresh_get(api, "/admin/jobs", {"cursor": "garbage"}, api.admin)
    assert r.status_code == 422, r.text
    r = fresh_get(api, "/admin/jobs", {"cursor": forged_cursor(["2026-01-01T00:00:00+00:00", "not-a-uuid"])}, api.admin)
    assert r.status_code == 422, r.text


# ----------------------------------------------------------------- ETag


def test_etag_and_conditional_get(api, tenant):
    job_id = api.submit_ok(tenant, "square.zip")
    first = api.http.get(f"/jobs/{job_id}", headers=api.auth(tenant))
    assert first.status_code == 200
    etag1 = first.headers["ETag"]
    assert etag1.startswith('W/"')
    api.wait_status(tenant, job_id, "SUCCEEDED", timeout=90)
    api.wait_results(tenant, job_id)  # the last write to the row

    r = api.http.get(f"/jobs/{job_id}", headers=api.auth(tenant))
    etag2 = r.headers["ETag"]
    assert etag2 != etag1, "the ETag did not change when the job changed state"
    assert r.json()["status"] == "SUCCEEDED"

    again = api.http.get(f"/jobs/{job_id}", headers={**api.auth(tenant), "If-None-Match": etag2})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == etag2

    stale = api.http.get(f"/jobs/{job_id}", headers={**api.auth(tenant), "If-None-Match": etag1})
    assert stale.status_code == 200
    assert stale.json()["job_id"] == job_id


def test_etag_of_another_tenant_reveals_nothing(api, tenant):
    job_id = api.submit_ok(tenant, "square.zip")
    etag = api.http.get(f"/jobs/{job_id}", headers=api.auth(tenant)).headers["ETag"]
    other = api.register()
    r = api.http.get(f"/jobs/{job_id}", headers={**api.auth(other), "If-None-Match": etag})
    assert r.status_code == 404
    cancel(api, tenant, job_id)


# ----------------------------------------------------------------- queue position and dashboard


def test_queue_position_and_dashboard(api):
    t = api.register(max_cpu=4, max_memory_gi=8, max_concurrent_jobs=1)
    ids = [api.submit_ok(t, "bologna-acosta.zip", cpu=2, memory=3, scenario_id=f"b{i}") for i in range(3)]
    try:
        first = api.wait_status(t, ids[0], {"ADMITTED", "PENDING", "RUNNING"}, timeout=30)
        assert first["queue_position"] is None
        second, third = api.job(t, ids[1]), api.job(t, ids[2])
        assert (second["status"], second["queue_position"]) == ("QUEUED", 1)
        assert (third["status"], third["queue_position"]) == ("QUEUED", 2)
        assert first["admitted_at"] is not None and second["admitted_at"] is None

        dash = get(api, "/tenants/me/dashboard", api.auth(t))
        assert dash["tenant_id"] == t["tenant_id"]
        assert dash["namespace"] == f"sumo-{t['tenant_id']}"
        assert dash["limits"] == {"max_cpu": 4, "max_memory_gi": 8, "max_concurrent_jobs": 1}
        assert dash["usage"] == {"cpu": 2, "memory_gi": 3, "jobs": 1}
        assert dash["counts"]["QUEUED"] == 2
        assert sum(dash["counts"][s] for s in ("ADMITTED", "PENDING", "RUNNING")) == 1
        assert set(dash["counts"]) == set(STATUSES)
        assert [j["job_id"] for j in dash["recent_jobs"]] == ids[::-1]

        etag3 = api.http.get(f"/jobs/{ids[2]}", headers=api.auth(t)).headers["ETag"]
        cancel(api, t, ids[0])
        api.wait_status(t, ids[1], {"ADMITTED", "PENDING", "RUNNING"}, timeout=30)
        third = wait_until(lambda: (j := api.job(t, ids[2]))["queue_position"] == 1 and j, 10, "third job to move up")
        assert third["status"] == "QUEUED"
        r = api.http.get(f"/jobs/{ids[2]}", headers={**api.auth(t), "If-None-Match": etag3})
        assert r.status_code == 200, "ETag did not change when the queue position changed"

        cancelled = cancel(api, t, ids[2])
        assert cancelled["status"] == "CANCELLED" and cancelled["queue_position"] is None
        dash = get(api, "/tenants/me/dashboard", api.auth(t))
        assert dash["counts"]["CANCELLED"] == 2 and dash["counts"]["QUEUED"] == 0
    finally:
        for job_id in ids:
            api.http.delete(f"/jobs/{job_id}", headers=api.auth(t))
    dash = get(api, "/tenants/me/dashboard", api.auth(t))
    assert dash["usage"] == {"cpu": 0, "memory_gi": 0, "jobs": 0}
    assert dash["counts"]["CANCELLED"] == 3


def test_empty_dashboard(api, tenant):
    dash = get(api, "/tenants/me/dashboard", api.auth(tenant))
    assert dash["usage"] == {"cpu": 0, "memory_gi": 0, "jobs": 0}
    assert dash["counts"] == {s: 0 for s in STATUSES}
    assert dash["recent_jobs"] == []
    assert dash["limits"] == {"max_cpu": 8, "max_memory_gi": 16, "max_concurrent_jobs": 4}


# ----------------------------------------------------------------- admin views


def test_admin_jobs_lists_all_tenants(api, seven):
    t1, ids1 = seven
    t2 = api.register()
    j2 = api.submit_ok(t2, "square.zip")
    cancel(api, t2, j2)
    jobs = get(api, "/admin/jobs", api.admin, limit=500)["jobs"]
    owners = {j["job_id"]: j["tenant_id"] for j in jobs}
    assert owners[j2] == t2["tenant_id"]
    assert all(owners[i] == t1["tenant_id"] for i in ids1)
    stamps = [j["submitted_at"] for j in jobs]
    assert stamps == sorted(stamps, reverse=True)

    cancelled = get(api, "/admin/jobs", api.admin, status="CANCELLED", limit=500)["jobs"]
    assert all(j["status"] == "CANCELLED" for j in cancelled)
    assert {j2, *ids1[:4]} <= {j["job_id"] for j in cancelled}

    only_t2 = get(api, "/admin/jobs", api.admin, tenant_id=t2["tenant_id"])["jobs"]
    assert [(j["job_id"], j["tenant_id"]) for j in only_t2] == [(j2, t2["tenant_id"])]

    pages = all_pages(api, "/admin/jobs", api.admin, limit=2, tenant_id=t1["tenant_id"])
    assert [j["job_id"] for p in pages for j in p] == ids1[::-1]


def test_admin_queues(api):
    queues = get(api, "/admin/queues", api.admin)["queues"]
    by_name = {q["queue"]: q for q in queues}
    assert {"admission", "executor", "status", "results", "simulations"} <= set(by_name)
    for q in queues:
        for field in ("ready", "in_flight", "delayed", "dead_lettered"):
            assert isinstance(q[field], int) and q[field] >= 0, (q, field)
        assert "oldest_message_age_seconds" in q


def test_admin_activity(api, seven):
    data = get(api, "/admin/activity", api.admin)
    assert set(data["counts"]) == set(STATUSES)
    assert data["counts"]["CANCELLED"] >= 4
    assert sum(data["counts"].values()) >= 7
    assert data["last_hour"]["submitted"] >= 7
    assert data["last_hour"]["finished_total"] == sum(data["last_hour"]["finished"].values())
    assert data["last_hour"]["finished"].get("CANCELLED", 0) >= 4


def test_admin_cluster(api):
    data = get(api, "/admin/cluster", api.admin)
    assert data["executor"]
    assert data["nodes"] and all("capacity" in n and "allocatable" in n for n in data["nodes"])


def test_admin_tenant_list_pagination(api):
    made = sorted(api.register()["tenant_id"] for _ in range(3))
    seen, cursor = [], None
    for _ in range(500):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = get(api, "/auth/tenants", api.admin, **params)
        seen += [t["tenant_id"] for t in body["tenants"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert set(made) <= set(seen)


def test_listing_jobs_reaches_terminal_for_all(api, seven):
    """Leave nothing running behind: every job of the fixture ends."""
    t, ids = seven
    for job_id in ids[4:]:
        api.http.delete(f"/jobs/{job_id}", headers=api.auth(t))
    for job_id in ids:
        assert api.wait_status(t, job_id, TERMINAL, timeout=30)["status"] in TERMINAL
