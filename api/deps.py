"""Authentication: tenants by ``Authorization: Bearer sk-…`` (or ``X-API-Key``), admins by ``X-Admin-Key``."""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute

from api import threads
from core.services import tenants
from core.bootstrap import get_context
from core.services.context import Context


async def context() -> Context:
    """The process's adapters.  ``async`` on purpose: FastAPI runs a plain ``def``
    dependency on the threadpool, a thread hand-off per request for a dict lookup."""
    return get_context()


@dataclass(frozen=True)
class Caller:
    tenant: dict | None  # None for the admin

    @property
    def is_admin(self) -> bool:
        return self.tenant is None

    @property
    def tenant_id(self) -> str | None:
        return self.tenant["tenant_id"] if self.tenant else None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _is_admin(ctx: Context, admin_key: str | None) -> bool:
    expected = ctx.settings.admin_key
    return bool(admin_key and expected and hmac.compare_digest(admin_key.encode(), expected.encode()))


def _presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


# Each dependency reads the headers from the request itself (no Header parameters, no
# sub-dependencies): FastAPI resolves every parameter and sub-dependency per request, which
# cost more than the authentication's database lookup.  The headers are documented as
# OpenAPI security schemes instead (:func:`document_security`).

async def admin_only(request: Request) -> Caller:
    ctx = get_context()
    admin_key = request.headers.get("x-admin-key")
    if not admin_key:
        raise _unauthorized("this endpoint needs the X-Admin-Key header")
    if not _is_admin(ctx, admin_key):
        raise HTTPException(status_code=403, detail="the X-Admin-Key is not valid")
    return Caller(tenant=None)


async def tenant_or_admin(request: Request) -> Caller:
    return await _caller(request, recent=False)


async def _caller(request: Request, *, recent: bool) -> Caller:
    """The admin, or the tenant whose key the request presents; ``recent``: a key this process
    verified lately is taken from memory (only where the database re-checks it, see submitting_tenant)."""
    ctx = get_context()
    headers = request.headers
    admin_key = headers.get("x-admin-key")
    if admin_key:
        if _is_admin(ctx, admin_key):
            return Caller(tenant=None)
        raise HTTPException(status_code=403, detail="the X-Admin-Key is not valid")
    key = _presented_key(headers.get("authorization"), headers.get("x-api-key"))
    if not key:
        raise _unauthorized("missing API key: send 'Authorization: Bearer sk-…'")
    tenant = (recent and tenants.recently_authenticated(ctx, key)) or await threads.run(tenants.authenticate, ctx, key)
    if tenant is None:
        raise _unauthorized("invalid API key")
    return Caller(tenant=tenant)


async def tenant_only(request: Request) -> Caller:
    return _tenant(await _caller(request, recent=False))


async def submitting_tenant(request: Request) -> Caller:
    """:func:`tenant_only` for ``POST /jobs``: a key verified in the last ``KEY_CACHE_SECONDS`` is not looked
    up again, since the job insert checks the key and the limits in PostgreSQL (core.services.recent_keys)."""
    return _tenant(await _caller(request, recent=True))


def _tenant(caller: Caller) -> Caller:
    if caller.is_admin:
        raise HTTPException(status_code=403, detail="this endpoint acts for a tenant: use the tenant's API key")
    return caller


SECURITY_SCHEMES = {
    "TenantBearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer sk-… (a tenant's API key)"},
    "TenantKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "A tenant's API key (alternative to Authorization)"},
    "AdminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-Key", "description": "The operator key (ADMIN_KEY)"},
}
_REQUIREMENTS = {
    admin_only: [{"AdminKey": []}],
    tenant_only: [{"TenantBearer": []}, {"TenantKey": []}],
    submitting_tenant: [{"TenantBearer": []}, {"TenantKey": []}],
    tenant_or_admin: [{"TenantBearer": []}, {"TenantKey": []}, {"AdminKey": []}],
}


def document_security(app: FastAPI, routers: list[APIRouter]) -> None:
    """Publish who may call each operation of ``routers`` (included without prefix) in the OpenAPI schema."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        for route in (r for router in routers for r in router.routes):
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            calls = {d.call for d in route.dependant.dependencies}
            requirement = next((r for dep, r in _REQUIREMENTS.items() if dep in calls), None)
            if requirement is None:
                continue
            path = schema["paths"].get(route.path_format, {})
            for method in route.methods:
                if method.lower() in path:
                    path[method.lower()]["security"] = requirement
        return schema

    app.openapi = openapi
