"""Tenant registration and keys (``/auth``)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from api import threads
from api.deps import Caller, admin_only, context, tenant_or_admin
from api.schemas import RegenerateKey, Tenant, TenantCreate, TenantList, TenantPatch, TenantWithKey, tenant_json
from core.domain.tenants import TENANT_ID_PATTERN
from core.services import tenants
from core.services.context import Context

TenantIdPath = Path(..., max_length=63, pattern=TENANT_ID_PATTERN)

router = APIRouter(prefix="/auth", tags=["tenants"])


@router.post("/register", status_code=201, response_model=TenantWithKey)
async def register(body: TenantCreate, _: Caller = Depends(admin_only), ctx: Context = Depends(context)):
    row, api_key = await threads.run(
        tenants.register, ctx, body.tenant_id, body.max_cpu, body.max_memory_gi, body.max_concurrent_jobs,
        body.max_stored_gb,
    )
    return {**tenant_json(row), "api_key": api_key}


@router.post("/regenerate-key", response_model=TenantWithKey)
async def regenerate_key(body: RegenerateKey, caller: Caller = Depends(tenant_or_admin), ctx: Context = Depends(context)):
    _own_or_admin(caller, body.tenant_id)
    row, api_key = await threads.run(tenants.regenerate_key, ctx, body.tenant_id)
    return {**tenant_json(row), "api_key": api_key}


@router.get("/tenants", response_model=TenantList)
async def list_tenants(
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=63, pattern=TENANT_ID_PATTERN, description="next_cursor of the previous page"),
    _: Caller = Depends(admin_only),
    ctx: Context = Depends(context),
):
    rows = await threads.run(tenants.list_page, ctx, limit, cursor)
    return {"tenants": [tenant_json(r) for r in rows], "next_cursor": rows[-1]["tenant_id"] if len(rows) == limit else None}


@router.get("/tenants/{tenant_id}", response_model=Tenant)
async def get_tenant(tenant_id: str = TenantIdPath, caller: Caller = Depends(tenant_or_admin), ctx: Context = Depends(context)):
    _own_or_admin(caller, tenant_id)
    return tenant_json(await threads.run(tenants.get, ctx, tenant_id))


@router.patch("/tenants/{tenant_id}", response_model=Tenant)
async def patch_tenant(body: TenantPatch, tenant_id: str = TenantIdPath, _: Caller = Depends(admin_only), ctx: Context = Depends(context)):
    changes = body.model_dump(exclude_none=True)
    return tenant_json(await threads.run(tenants.update_limits, ctx, tenant_id, changes))


def _own_or_admin(caller: Caller, tenant_id: str) -> None:
    # Another tenant's id answers 404, like a missing one: existence is not revealed.
    if not caller.is_admin and caller.tenant_id != tenant_id:
        raise HTTPException(status_code=404, detail=f"tenant {tenant_id!r} not found")
