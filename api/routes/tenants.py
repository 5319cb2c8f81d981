"""The calling tenant's own overview (``/tenants/me``)."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.encoders import jsonable_encoder

from api import threads
from api.deps import Caller, context, tenant_only
from api.schemas import job_json
from core.services import queries
from core.services.context import Context

router = APIRouter(prefix="/tenants", tags=["tenants"])


@router.get("/me/dashboard")
async def dashboard(caller: Caller = Depends(tenant_only), ctx: Context = Depends(context)) -> dict:
    data = await threads.run(queries.dashboard, ctx, caller.tenant)
    data["recent_jobs"] = [job_json(r) for r in data["recent_jobs"]]
    return jsonable_encoder(data)
