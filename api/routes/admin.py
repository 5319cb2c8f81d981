"""Operator endpoints (``/admin``), behind ``X-Admin-Key``."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from api import threads
from api.deps import Caller, admin_only, context
from api.routes.jobs import STATUS_VALUES
from api.schemas import AdminJobList, job_json
from core.domain.tenants import TENANT_ID_PATTERN
from core.services import queries
from core.services.context import Context

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/jobs", response_model=AdminJobList)
async def all_jobs(
    status: str | None = Query(None, pattern=f"^({STATUS_VALUES})$"),
    tenant_id: str | None = Query(None, max_length=63, pattern=TENANT_ID_PATTERN),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, max_length=200),
    _: Caller = Depends(admin_only),
    ctx: Context = Depends(context),
):
    rows, next_cursor = await threads.run(queries.jobs_page, ctx, tenant_id, status, limit, cursor)
    return {"jobs": [job_json(r, admin=True) for r in rows], "next_cursor": next_cursor}


@router.get("/activity")
async def activity(_: Caller = Depends(admin_only), ctx: Context = Depends(context)) -> dict:
    return await threads.run(queries.activity, ctx)


@router.get("/cluster")
async def cluster(_: Caller = Depends(admin_only), ctx: Context = Depends(context)) -> dict:
    return await threads.run(queries.cluster, ctx)


@router.get("/queues")
async def queue_depths(_: Caller = Depends(admin_only), ctx: Context = Depends(context)) -> dict:
    return {"queues": await threads.run(queries.queues, ctx)}
