"""Property-based fuzzing of every operation of the OpenAPI schema: no input may cause a 5xx.

Schemathesis (v4) loads the schema the running service publishes at
``/openapi.json`` and generates requests (valid and invalid ones) for each
operation.  The operations are driven one by one with Hypothesis
(``APIOperation.as_strategy``) rather than through ``schemathesis.pytest.
from_fixture``: the lazy loader of schemathesis 4.32 sets
``request.node._nodeid``, which pytest 9 no longer has (AttributeError).  The
failures of all operations are collected and reported together.

Each request carries real credentials so the fuzzer gets past
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
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
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


def credentials(method: str, path: str, api, tenant: dict) -> dict:
    if path.startswith("/admin/") or (method, path) in ADMIN_ONLY | TENANT_OR_ADMIN:
        return api.admin
    if path.startswith(("/jobs", "/tenants/")):
        return api.auth(tenant)
    return {}


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_covers_the_api(fuzz_schema):
    """Guard: the fuzzing below only means something if the schema lists the whole API."""
    ops = {(op.method.upper(), op.path) for op in operations(fuzz_schema)}
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


def test_no_server_errors(fuzz_schema, api, fuzz_tenant):
    failures: list[str] = []
    calls = 0
    statuses: dict[str, Counter] = {}
    for op in operations(fuzz_schema):
        method, path = op.method.upper(), op.path
        headers = credentials(method, path, api, fuzz_tenant)
        seen = statuses.setdefault(f"{method} {path}", Counter())
        strategy = op.as_strategy(GenerationMode.POSITIVE) | op.as_strategy(GenerationMode.NEGATIVE)

        @settings(
            max_examples=30,
            deadline=None,
            database=None,  # no .hypothesis/ directory in the tree
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # same examples every run: a failure here is reproducible, not flaky
        )
        @given(case=strategy)
        def run(case):
            nonlocal calls
            if case.headers:
                for name in [h for h in case.headers if h.lower() in AUTH_HEADERS]:
                    del case.headers[name]
            response = case.call(headers=headers, timeout=20)
            calls += 1
            seen[response.status_code] += 1
            case.validate_response(response, checks=[not_a_server_error], headers=headers)

        try:
            run()
        # schemathesis' FailureGroup is a BaseExceptionGroup, not an Exception
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{method} {path}: {type(exc).__name__}: {exc}")
    summary = "\n".join(f"  {op}: {dict(c)}" for op, c in statuses.items())
    print(f"{calls} requests:\n{summary}")
    assert not failures, "\n\n".join(failures) + f"\n\n{summary}"
    assert calls > 100, f"only {calls} requests were made"
    # the credentials work: every operation answered something other than 401/403 at least once
    locked_out = [op for op, c in statuses.items() if not set(c) - {401, 403}]
    assert not locked_out, f"operations that never got past authentication: {locked_out}\n{summary}"
