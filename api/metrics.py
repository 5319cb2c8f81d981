"""Prometheus metrics.

HTTP latency is observed per request (aggregated across uvicorn workers
when ``PROMETHEUS_MULTIPROC_DIR`` is set).  Job counts, queue depths and
admission latency are read from PostgreSQL and Redis at scrape time, so
every API process reports the same truth without shared state.
"""
from __future__ import annotations

import os
import time
import uuid

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from core.services import queries

HTTP_LATENCY = Histogram(
    "sumo_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class AccessMetrics:
    """Times every request by route template and tags it with an X-Request-ID.

    A plain ASGI middleware (not BaseHTTPMiddleware): it adds no task group
    around the app, so exceptions raised while the body streams in (a 413)
    reach FastAPI unwrapped, and it costs little on the submission hot path.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = (headers.get(b"x-request-id") or uuid.uuid4().hex[:12].encode())[:64]
        scope.setdefault("state", {})["request_id"] = request_id.decode("latin-1")
        status = 500

        async def tagged_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id)]}
            await send(message)

        try:
            await self.app(scope, receive, tagged_send)
        finally:
            route = scope.get("route")
            HTTP_LATENCY.labels(scope["method"], getattr(route, "path", "unmatched"), str(status)).observe(
                time.perf_counter() - started
            )


def _state_metrics(ctx) -> list:
    snapshot = queries.metrics_snapshot(ctx)
    by_status = GaugeMetricFamily("sumo_jobs", "Jobs by status", labels=["status"])
    for status, n in snapshot["jobs_by_status"].items():
        by_status.add_metric([status], n)
    latency = GaugeMetricFamily(
        "sumo_admission_latency_seconds", "Submission to admission over the last hour", labels=["quantile"]
    )
    for q, value in snapshot["admission_latency"].items():
        if value is not None:
            latency.add_metric([q], value)
    depth = GaugeMetricFamily("sumo_queue_depth", "Messages waiting in each Dramatiq queue", labels=["queue", "kind"])
    for q in snapshot["queues"]:
        for kind in ("ready", "in_flight", "delayed", "dead_lettered"):
            depth.add_metric([q["queue"], kind], q[kind])
    return [by_status, latency, depth]


class _StateCollector:
    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def collect(self):
        yield from _state_metrics(self.ctx)


def render_metrics(ctx) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(HTTP_LATENCY)
    registry.register(_StateCollector(ctx))
    return generate_latest(registry), CONTENT_TYPE_LATEST
