"""Read-only questions: job views, dashboards, admin overviews, queue depths."""
from __future__ import annotations

import json
import time
from datetime import timedelta

from core.db.repository import InvalidCursor
from core.executors.base import JobSpec
from core.messaging import QUEUES
from core.clock import utcnow
from core.services.context import Context
from core.domain.admission import gigabytes
from core.services import retention
from core.services.errors import Gone, Invalid, NotFound


def job_view(ctx: Context, job_id: str, tenant_id: str | None) -> dict:
    with ctx.statement() as one:
        row = one.jobs.get_view(job_id, tenant_id)
    if row is None:
        raise NotFound(f"job {job_id} not found")
    return row


def job_and_spec(ctx: Context, job_id: str, tenant_id: str | None = None) -> tuple[dict | None, JobSpec | None]:
    """A job row and the executor's view of it, in one statement; (None, None) if there is no such job
    (of ``tenant_id``, when given)."""
    with ctx.statement() as one:
        job = one.jobs.get_with_namespace(job_id, tenant_id)
    if job is None:
        return None, None
    return job, ctx.job_spec(job, job.pop("tenant_namespace"))


def jobs_and_specs(ctx: Context, job_ids: list[str]) -> list[tuple[dict, JobSpec]]:
    """:func:`job_and_spec` for several jobs in one statement, in the order given; jobs that do not exist are left out."""
    with ctx.statement() as one:
        rows = one.jobs.get_many_with_namespace(job_ids)
    return [(job, ctx.job_spec(job, job.pop("tenant_namespace"))) for job in rows]


def job_with_spec(ctx: Context, job_id: str, tenant_id: str, *, deleted_ok: bool = False) -> tuple[dict, JobSpec]:
    """:func:`job_and_spec` for a tenant's request: NotFound when it is not one of its jobs; Gone (410, naming
    the deletion) when its results and log were deleted, unless ``deleted_ok``."""
    job, spec = job_and_spec(ctx, job_id, tenant_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    why = None if deleted_ok else retention.gone(job)
    if why:
        raise Gone(why)
    return job, spec


def jobs_page(ctx: Context, tenant_id: str | None, status: str | None, limit: int, cursor: str | None):
    """Jobs newest first and the next page's cursor; Invalid (422) for a cursor this service did not give."""
    try:
        with ctx.uow() as uow:
            return uow.jobs.page(tenant_id, status, limit, cursor)
    except InvalidCursor as exc:
        raise Invalid(str(exc)) from None


def dashboard(ctx: Context, tenant: dict, recent: int = 10) -> dict:
    """The tenant's limits, what it uses of each (``usage_against_limits``), its jobs by status, its latest jobs.

    ``tenant`` is the caller's row as authentication just read it."""
    with ctx.uow() as uow:
        usage = uow.jobs.usage(tenant["tenant_id"])
        counters = uow.usage.get(tenant["tenant_id"])
        counts = uow.jobs.counts_by_status(tenant["tenant_id"])
        rows, _ = uow.jobs.page(tenant["tenant_id"], None, recent, None)
    settings = ctx.settings
    against = {
        "cpu": {"used": usage.cpu, "limit": tenant["max_cpu"], "limit_name": "max_cpu"},
        "memory_gi": {"used": usage.memory_gi, "limit": tenant["max_memory_gi"], "limit_name": "max_memory_gi"},
        "concurrent_jobs": {"used": usage.jobs, "limit": tenant["max_concurrent_jobs"], "limit_name": "max_concurrent_jobs"},
        "queued_jobs": {"used": counters["queued_jobs"], "limit": settings.max_queued_jobs_per_tenant,
                        "limit_name": "MAX_QUEUED_JOBS_PER_TENANT"},
        "stored_bytes": {"used": counters["stored_bytes"], "limit": tenant["max_stored_bytes"],
                         "limit_name": "max_stored_gb", "limit_gb": gigabytes(tenant["max_stored_bytes"])},
        "submissions_per_second": {"limit": settings.submit_rate_per_second or None, "burst": settings.submit_burst,
                                   "limit_name": "SUBMIT_RATE_PER_SECOND"},
    }
    return {
        "tenant_id": tenant["tenant_id"],
        "namespace": tenant["namespace"],
        "limits": {
            "max_cpu": tenant["max_cpu"],
            "max_memory_gi": tenant["max_memory_gi"],
            "max_concurrent_jobs": tenant["max_concurrent_jobs"],
        },
        "usage": {"cpu": usage.cpu, "memory_gi": usage.memory_gi, "jobs": usage.jobs},
        "usage_against_limits": against,
        "counts": counts,
        "recent_jobs": rows,
    }


def cluster(ctx: Context) -> dict:
    """What the executor runs on: the machine (local) or the nodes (kubernetes)."""
    return ctx.executor.capacity()


def activity(ctx: Context) -> dict:
    now = utcnow()
    with ctx.uow() as uow:
        counts = uow.jobs.counts_by_status()
        last_hour = uow.jobs.finished_since(now - timedelta(hours=1))
        submitted = uow.jobs.submitted_since(now - timedelta(hours=1))
    return {
        "counts": counts,
        "last_hour": {"submitted": submitted, "finished": last_hour, "finished_total": sum(last_hour.values())},
    }


def metrics_snapshot(ctx: Context) -> dict:
    """What /metrics reports at scrape time: jobs by status, the last hour's admission latency (p50, p99),
    the queues.  Nothing per tenant."""
    with ctx.uow() as uow:
        counts = uow.jobs.counts_by_status()
        p50, p99 = uow.jobs.admission_latency_quantiles(utcnow() - timedelta(hours=1), (0.5, 0.99))
    return {"jobs_by_status": counts, "admission_latency": {"0.5": p50, "0.99": p99}, "queues": queues(ctx)}


def queues(ctx: Context) -> list[dict]:
    """Depth, in-flight, delayed and dead-lettered messages of each Dramatiq queue, read from Redis."""
    client = ctx.bus.broker.client
    ns = "dramatiq"
    now_ms = int(time.time() * 1000)
    out = []
    for queue in QUEUES:
        key = f"{ns}:{queue}"
        pipe = client.pipeline()
        pipe.llen(key)
        pipe.hlen(key + ".msgs")
        pipe.llen(f"{key}.DQ")
        pipe.zcard(f"{key}.XQ")
        pipe.lindex(key, 0)
        ready, stored, delayed, dead, head = pipe.execute()
        oldest_age = None
        if head is not None:
            raw = client.hget(key + ".msgs", head)
            if raw:
                oldest_age = max(0.0, (now_ms - json.loads(raw)["message_timestamp"]) / 1000)
        out.append(
            {
                "queue": queue,
                "ready": ready,
                "in_flight": max(0, stored - ready),
                "delayed": delayed,
                "dead_lettered": dead,
                "oldest_message_age_seconds": oldest_age,
            }
        )
    return out
