"""Authentication: tenants by ``Authorization: Bearer sk-…`` (or ``X-API-Key``), admins by ``X-Admin-Key``."""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Depends, Header, HTTPException
from fastapi.concurrency import run_in_threadpool

from core.services import tenants
from core.services.context import Context, get_context


def context() -> Context:
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


async def admin_only(
    x_admin_key: str | None = Header(None, description="The operator key (ADMIN_KEY)"),
    ctx: Context = Depends(context),
) -> Caller:
    if not x_admin_key:
        raise _unauthorized("this endpoint needs the X-Admin-Key header")
    if not _is_admin(ctx, x_admin_key):
        raise HTTPException(status_code=403, detail="the X-Admin-Key is not valid")
    return Caller(tenant=None)


async def tenant_or_admin(
    authorization: str | None = Header(None, description="Bearer sk-… (a tenant's API key)"),
    x_api_key: str | None = Header(None, description="A tenant's API key (alternative to Authorization)"),
    x_admin_key: str | None = Header(None, description="The operator key (ADMIN_KEY)"),
    ctx: Context = Depends(context),
) -> Caller:
    if x_admin_key:
        if _is_admin(ctx, x_admin_key):
            return Caller(tenant=None)
        raise HTTPException(status_code=403, detail="the X-Admin-Key is not valid")
    key = _presented_key(authorization, x_api_key)
    if not key:
        raise _unauthorized("missing API key: send 'Authorization: Bearer sk-…'")
    tenant = await run_in_threadpool(tenants.authenticate, ctx, key)
    if tenant is None:
        raise _unauthorized("invalid API key")
    return Caller(tenant=tenant)


async def tenant_only(caller: Caller = Depends(tenant_or_admin)) -> Caller:
    if caller.is_admin:
        raise HTTPException(status_code=403, detail="this endpoint acts for a tenant: use the tenant's API key")
    return caller
