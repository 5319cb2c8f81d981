"""Liveness, readiness and Prometheus metrics (public)."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from api import threads
from api.deps import context
from api.metrics import render_metrics
from core.services.context import Context

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready")
async def ready(ctx: Context = Depends(context)):
    def check() -> dict:
        checks = {}
        try:
            with ctx.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            checks["postgres"] = "ok"
        except Exception as exc:  # noqa: BLE001 — any failure means not ready
            checks["postgres"] = f"unreachable: {type(exc).__name__}"
        try:
            ctx.bus.broker.client.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        return checks

    checks = await threads.run(check)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(ctx: Context = Depends(context)):
    body, content_type = await threads.run(render_metrics, ctx)
    return Response(body, media_type=content_type)
