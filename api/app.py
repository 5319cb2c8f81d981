"""The FastAPI application: routers, middleware and the error contract.

Every refusal is a JSON ``{"detail": ...}`` with a 4xx status naming the
problem; a dependency that cannot serve now (PostgreSQL, the object store,
the Kubernetes API server: :mod:`core.unavailable`) is a 503 with ``Retry-After``; unexpected
errors are logged with a request id and answered 500 without internals.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api import threads
from api.deps import document_security
from api.limits import BodySizeLimit
from api.metrics import AccessMetrics
from api.routes import admin, auth, collect, health, jobs, tenants
from core import gc_policy
from core.scenario import ScenarioError
from core.services.errors import ServiceError
from core.settings import get_settings
from core.unavailable import Unavailable
from workers.logging_setup import configure_logging

log = logging.getLogger("api")
RETRY_AFTER_SECONDS = 5
#: Every operation but the health checks may answer this (core.unavailable).
UNAVAILABLE = {"description": "Something the service depends on (PostgreSQL, the object store; with "
                              "EXECUTOR=kubernetes, the Kubernetes API server) cannot serve now; repeat after "
                              "Retry-After seconds"}


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # The service's blocking calls run on api.threads' pool; anyio's threads only serve
        # Starlette itself (uploads spooled to disk).  Both get API_THREADS: anyio's default
        # (40) lets every in-flight request hold a thread, and they then fight for the GIL.
        threads.start(settings.api_threads)
        gc_policy.settle()
        to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        try:
            yield
        finally:
            threads.stop()

    app = FastAPI(
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry hooks look the providers up on every request;
        # this service reports through /metrics and its logs instead.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        title="sumo-k8",
        version="0.1.0",
        description="Runs Eclipse SUMO scenarios for tenants, on this machine or as Kubernetes Jobs.",
    )
    routers = [auth.router, jobs.router, tenants.router, admin.router, health.router, collect.router]
    for router in routers:
        app.include_router(router, responses={} if router is health.router else {503: UNAVAILABLE})
    document_security(app, routers)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if getattr(exc, "retry_after", None):  # TooManyRequests: when waiting lifts the limit
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(ScenarioError)
    async def scenario_error(_: Request, exc: ScenarioError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable):
        log.warning("request %s %s %s: %s (%s)", getattr(request.state, "request_id", "-"), request.method,
                    request.url.path, exc, exc.__cause__ or "")
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc']}: {e['msg']}" for e in errors)
        return JSONResponse({"detail": f"invalid request: {summary}", "errors": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        request_id = getattr(request.state, "request_id", "-")
        log.exception("request %s %s %s failed", request_id, request.method, request.url.path)
        return JSONResponse({"detail": "internal error", "request_id": request_id}, status_code=500)

    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_file_size_mb * 1024 * 1024)
    app.add_middleware(AccessMetrics)
    return app


app = create_app()
