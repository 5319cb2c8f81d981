"""The OpenAPI schema says who may call each operation (security schemes), matching the dependencies, and
what a deleted job's data answers."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def schema():
    from api.app import create_app  # builds no connection: adapters are created on first use

    return create_app().openapi()


def test_security_schemes_are_published(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["TenantBearer"] == {**schemes["TenantBearer"], "type": "http", "scheme": "bearer"}
    assert (schemes["TenantKey"]["in"], schemes["TenantKey"]["name"]) == ("header", "X-API-Key")
    assert (schemes["AdminKey"]["in"], schemes["AdminKey"]["name"]) == ("header", "X-Admin-Key")


@pytest.mark.parametrize("method, path, expected", [
    ("post", "/jobs", {"TenantBearer", "TenantKey"}),
    ("get", "/jobs/{job_id}", {"TenantBearer", "TenantKey"}),
    ("get", "/tenants/me/dashboard", {"TenantBearer", "TenantKey"}),
    ("get", "/admin/queues", {"AdminKey"}),
    ("post", "/auth/register", {"AdminKey"}),
    ("post", "/auth/regenerate-key", {"TenantBearer", "TenantKey", "AdminKey"}),
    ("get", "/auth/tenants/{tenant_id}", {"TenantBearer", "TenantKey", "AdminKey"}),
])
def test_each_operation_names_who_may_call_it(schema, method, path, expected):
    assert {name for requirement in schema["paths"][path][method]["security"] for name in requirement} == expected


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_public_operations_need_no_credentials(schema, path):
    assert "security" not in schema["paths"][path]["get"]


@pytest.mark.parametrize("path", ["/jobs/{job_id}/logs", "/jobs/{job_id}/logs/stream", "/jobs/{job_id}/results/{path}"])
def test_what_deleted_data_answers_is_documented(schema, path):
    """After DELETE /jobs/{id}/data or the retention, these answer 410; a client reading the schema knows it."""
    assert "deleted" in schema["paths"][path]["get"]["responses"]["410"]["description"]
