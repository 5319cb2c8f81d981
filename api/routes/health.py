"""Liveness, readiness and Prometheus metrics (public)."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from api import threads
from api.deps import context
from api.metrics import render_metrics
from core.services import health as dependencies
from core.services.context import Context

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready")
async def ready(ctx: Context = Depends(context)):
    checks = await threads.run(dependencies.readiness, ctx)
    ok = dependencies.is_ready(checks)
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(ctx: Context = Depends(context)):
    body, content_type = await threads.run(render_metrics, ctx)
    return Response(body, media_type=content_type)
