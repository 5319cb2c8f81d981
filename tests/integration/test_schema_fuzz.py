"""Property-based fuzzing of every operation of the OpenAPI schema: no input may cause a 5xx.

Schemathesis (v4) loads the schema the running service publishes at
``/openapi.json`` and generates requests for each operation (one subtest per
operation).  Each request carries real credentials so the fuzzer gets past
authentication and reaches the handlers and the database:

* admin-only operations (``/admin/*``, ``POST /auth/register``,
  ``GET /auth/tenants``, ``PATCH /auth/tenants/{id}``) and the operations a
  tenant or the admin may call (``GET /auth/tenants/{id}``,
  ``POST /auth/regenerate-key``) get the admin key — as the admin they query
  the database with the generated tenant ids instead of stopping at the
  ownership check;
* tenant operations (``/jobs…``, ``/tenants/me/dashboard``) get a real
  tenant's Bearer key (the generated X-Admin-Key / X-API-Key / Authorization
  values are dropped, they would only produce 401/403).

Nothing is excluded.  ``GET /jobs/{job_id}/logs/stream`` is kept: the
generated job ids never name an existing job, so it answers 404 at once
instead of holding an event stream open; every call has a bounded timeout
anyway.
"""
from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.integration

ADMIN_ONLY = {("POST", "/auth/register"), ("GET", "/auth/tenants"), ("PATCH", "/auth/tenants/{tenant_id}")}
TENANT_OR_ADMIN = {("GET", "/auth/tenants/{tenant_id}"), ("POST", "/auth/regenerate-key")}
AUTH_HEADERS = ("authorization", "x-api-key", "x-admin-key")


@pytest.fixture(scope="module")
def fuzz_schema(stack):
    return schemathesis.openapi.from_url(f"{stack.url}/openapi.json", timeout=30)


@pytest.fixture(scope="module")
def fuzz_tenant(api):
    # a long random id that generated tenant ids will not hit (regenerate-key would revoke its key)
    return api.register(tenant_id=f"fuzz-{uuid.uuid4().hex}", max_cpu=8, max_memory_gi=16, max_concurrent_jobs=2)


schema = schemathesis.pytest.from_fixture("fuzz_schema")


def credentials(method: str, path: str, api, tenant: dict) -> dict:
    if path.startswith("/admin/") or (method, path) in ADMIN_ONLY | TENANT_OR_ADMIN:
        return api.admin
    if path.startswith(("/jobs", "/tenants/")):
        return api.auth(tenant)
    return {}


def test_schema_covers_the_api(fuzz_schema):
    """Guard: the fuzzing below only means something if the schema lists the whole API."""
    ops = {(op.ok().method.upper(), op.ok().path) for op in fuzz_schema.get_all_operations()}
    expected = {
        ("POST", "/jobs"), ("GET", "/jobs"), ("GET", "/jobs/{job_id}"), ("DELETE", "/jobs/{job_id}"),
        ("GET", "/jobs/{job_id}/logs"), ("GET", "/jobs/{job_id}/logs/stream"), ("GET", "/jobs/{job_id}/results"),
        ("GET", "/jobs/{job_id}/results/{path}"), ("GET", "/tenants/me/dashboard"),
        ("POST", "/auth/register"), ("POST", "/auth/regenerate-key"), ("GET", "/auth/tenants"),
        ("GET", "/auth/tenants/{tenant_id}"), ("PATCH", "/auth/tenants/{tenant_id}"),
        ("GET", "/admin/jobs"), ("GET", "/admin/activity"), ("GET", "/admin/cluster"), ("GET", "/admin/queues"),
        ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"),
    }
    assert expected <= ops, expected - ops


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the tree
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case, api, fuzz_tenant):
    method, path = case.operation.method.upper(), case.operation.path
    if case.headers:
        for name in [h for h in case.headers if h.lower() in AUTH_HEADERS]:
            del case.headers[name]
    headers = credentials(method, path, api, fuzz_tenant)
    response = case.call(headers=headers, timeout=20)
    case.validate_response(response, checks=[not_a_server_error], headers=headers)
