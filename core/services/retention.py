"""Deleting a finished job's data: on the tenant's request (``DELETE /jobs/{id}/data``) and by retention.

What a job keeps: its input archive (``input_key``), and once collected its
results and log (under its result prefix); until then the executor keeps its
outputs (a work directory, the tenant's PVC), which it drops
(``Executor.release``) once they are collected.  Each deletion is recorded on
the job row (``input_deleted_at``, ``results_deleted_at``, and
``data_deleted_at`` for the tenant's own request) and the bytes freed leave
the tenant's stored-bytes count in the same transaction.

The tenant's request marks the row first, then deletes from the store.  A job
not collected yet (a cancelled job's log is collected after its CANCELLED) is
collected as usual, by a worker: the collection finds the mark, removes what
it stored and releases what the executor kept (core.services.lifecycle), so
the API, whose Kubernetes account may only read, never changes the cluster.
A store that fails half way answers 503, and the request, repeated, deletes
the rest.  Retention deletes first, then marks:
its jobs are collected already, and a failure leaves the mark unwritten, so
the next pass tries again.  Either way a repeat is harmless.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from core.domain.states import JobStatus
from core.clock import utcnow
from core.services.context import Context
from core.services.errors import Conflict, NotFound

log = logging.getLogger(__name__)
DAY_SECONDS = 86400


def delete_job_data(ctx: Context, tenant_id: str, job_id: str) -> dict:
    """Delete a finished job's input, results and log everywhere they are kept; returns the job row.

    Conflict (409, naming its state) for a job that has not finished; idempotent after that.
    """
    now = utcnow()
    with ctx.uow() as uow:
        job = uow.locked_job(job_id, tenant_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        if not JobStatus(job["status"]).is_terminal:
            raise Conflict(f"job {job_id} is {job['status']}: only a finished job's data can be deleted "
                           f"(cancel it first with DELETE /jobs/{job_id}, or wait for its end)")
        if job["data_deleted_at"] is None:
            freed = (job["input_size"] if job["input_deleted_at"] is None else 0) + \
                (job["result_size"] if job["results_deleted_at"] is None else 0)
            changes = {"data_deleted_at": now, "input_deleted_at": job["input_deleted_at"] or now,
                       "results_deleted_at": job["results_deleted_at"] or now, "result_files": []}
            uow.jobs.update(job_id, changes, now)
            uow.usage.change(tenant_id, stored_bytes=-freed)
            log.info("job %s: data deleted by %s (%d bytes freed)", job_id, tenant_id, freed)
        job = uow.jobs.get_with_namespace(job_id)
    spec = ctx.job_spec(job, job.pop("tenant_namespace"))
    ctx.store.delete_prefix(job["input_key"])
    ctx.store.delete_prefix(spec.result_prefix)
    if job["results_collected_at"] is None:  # the executor still keeps its outputs: its collection releases them
        ctx.bus.best_effort(ctx.bus.collect_results, job_id)
    return job


def gone(job: dict) -> str | None:
    """Why a job's results and log are no longer there (for a 410), or None while they are."""
    if job.get("results_deleted_at") is None:
        return None
    at = job["results_deleted_at"].isoformat(timespec="seconds")
    if job.get("data_deleted_at") is not None:
        return f"the results and log of job {job['job_id']} were deleted at {at} (DELETE /jobs/{job['job_id']}/data)"
    return f"the results and log of job {job['job_id']} were deleted at {at}, after RESULT_RETENTION_DAYS"


def note_collect_error(ctx: Context, job_id: str, exc: Exception) -> None:
    """Remember why a collection failed, for the COLLECT_TIMEOUT_SECONDS refusal (best effort: the collection's
    own failure is what the caller reports)."""
    try:
        with ctx.uow() as uow:
            uow.jobs.update(job_id, {"collect_error": f"{type(exc).__name__}: {exc}"[:2000]}, utcnow())
    except Exception:  # noqa: BLE001 — e.g. PostgreSQL away too; the next attempt notes it
        log.debug("job %s: collection error not recorded", job_id, exc_info=True)


def sweep_expired(ctx: Context, now: datetime | None = None) -> dict[str, int]:
    """One bounded pass of retention: expired inputs, then expired results and logs, of finished jobs."""
    now = now or utcnow()
    settings, batch = ctx.settings, ctx.settings.retention_batch
    counts = {"inputs_deleted": 0, "results_deleted": 0}
    if settings.input_retention_days > 0:
        cutoff = now - timedelta(seconds=settings.input_retention_days * DAY_SECONDS)
        with ctx.statement() as one:
            rows = one.sweeps.inputs_expired(cutoff, batch)
        for job in rows:
            ctx.store.delete_prefix(job["input_key"])
        counts["inputs_deleted"] = _mark(ctx, rows, now, inputs=True)
    if settings.result_retention_days > 0:
        cutoff = now - timedelta(seconds=settings.result_retention_days * DAY_SECONDS)
        with ctx.statement() as one:
            rows = one.sweeps.results_expired(cutoff, batch)
        for job in rows:
            ctx.store.delete_prefix(ctx.job_spec(job, job["tenant_namespace"]).result_prefix)
        counts["results_deleted"] = _mark(ctx, rows, now, inputs=False)
    if any(counts.values()):
        log.info("retention: %s", counts)
    return counts


def _mark(ctx: Context, rows: list[dict], now: datetime, *, inputs: bool) -> int:
    if not rows:
        return 0
    ids = [str(r["job_id"]) for r in rows]
    with ctx.uow() as uow:
        uow.usage.lock(*(r["tenant_id"] for r in rows))  # before the job rows (core.db.usage: lock order)
        mark = uow.sweeps.mark_inputs_deleted if inputs else uow.sweeps.mark_results_deleted
        freed = mark(ids, now)
        for tenant_id, n_bytes in sorted(freed.items()):  # sorted: concurrent sweepers lock tenants in one order
            uow.usage.change(tenant_id, stored_bytes=-n_bytes)
    return len(ids)
