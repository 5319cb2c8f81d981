"""A job's life after admission: start, status events, cancel, results.

Every status change goes through :mod:`core.domain.states`; this module only
loads the row under a lock, asks the state machine, and writes what it says.
"""
from __future__ import annotations

import logging

from core.domain.states import JobState, JobStatus, StatusEvent, apply_event, cancel, collected
from core.executors.base import CannotCollectYet, StillRunning
from core.results import parse_statistics
from core.clock import utcnow
from core.services.context import Context
from core.services import retention
from core.services.errors import NotFound
from core.services.queries import job_and_spec, jobs_and_specs

log = logging.getLogger(__name__)
COLLECT_RETRY_MS = 500


def job_state(row: dict) -> JobState:
    """The part of a job row the state machine reads."""
    return JobState(
        status=JobStatus(row["status"]),
        admitted_at=row["admitted_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        exit_code=row["exit_code"],
        error=row["error"],
        pending_reason=row["pending_reason"],
        outcome=JobStatus(row["outcome"]) if row.get("outcome") else None,
        status_since=row.get("status_since"),
    )


class StartFailed(RuntimeError):
    """Some jobs of a start message could not be handed to the executor (the message is retried)."""


def start_jobs(ctx: Context, job_ids: list[str]) -> None:
    """Hand admitted jobs to the executor, one after the other (idempotent: the executor dedupes by job id).

    One statement reads them all.  A job cancelled meanwhile, or already further
    along, is skipped.  One failure does not hold up the rest: every job is
    tried, then :class:`StartFailed` names those that did not start, and the
    message's retry starts whatever is still ADMITTED (the executor finds the
    objects of those that did start and leaves them be).
    """
    failed: list[str] = []
    for job, spec in jobs_and_specs(ctx, job_ids):
        if job["status"] != JobStatus.ADMITTED.value:
            continue  # cancelled meanwhile, or already further along: nothing to start
        try:
            ctx.executor.start(spec)
        except Exception as exc:  # noqa: BLE001 — reported below; the retry decides
            log.warning("job %s: start failed (%s: %s); retrying with the message", spec.job_id,
                        type(exc).__name__, exc)
            failed.append(f"{spec.job_id} ({type(exc).__name__}: {exc})")
    if failed:
        raise StartFailed(f"{len(failed)} of {len(job_ids)} job(s) not started: " + "; ".join(failed))


def apply_status(ctx: Context, event: StatusEvent) -> bool:
    """Apply an executor's event; returns True when it changed the job."""
    with ctx.uow() as uow:
        job = uow.jobs.get(event.job_id, lock=True)
        now = utcnow()
        if job is None:
            log.warning("status event for unknown job %s ignored", event.job_id)
            return False
        new = apply_event(job_state(job), event)
        if new is None:
            log.debug("job %s: %s event ignored (job is %s)", event.job_id, event.status.value, job["status"])
            return False
        changes = dict(new.changes)
        if new.status.run_over:
            changes["last_dispatch_at"] = now
        uow.jobs.update(event.job_id, changes, now)
    log.info("job %s: %s -> %s%s", event.job_id, job["status"], new.status.value,
             f" ({event.status.value}{': ' + event.reason if event.reason else ''})" if new.status.run_over
             else f" ({event.reason})" if event.reason else "")
    if new.status.run_over:
        _after_finish(ctx, event.job_id, job["tenant_id"])
    return True


def _after_finish(ctx: Context, job_id: str, tenant_id: str) -> None:
    """Results and the tenant's next admission; the sweeper re-sends either if lost."""
    ctx.bus.best_effort(ctx.bus.collect_results, job_id)
    ctx.bus.best_effort(ctx.bus.request_admission, tenant_id)


def cancel_job(ctx: Context, tenant_id: str, job_id: str) -> dict:
    """Cancel a job of ``tenant_id``: a queued one never starts, a running one is stopped."""
    now = utcnow()
    with ctx.uow() as uow:
        job = uow.locked_job(job_id, tenant_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        new = cancel(job_state(job), now)
        if new is not None:
            uow.jobs.update(job_id, {**new.changes, "last_dispatch_at": now}, now)
            if job["status"] == JobStatus.QUEUED.value:
                uow.usage.change(job["tenant_id"], queued=-1)
            job = uow.jobs.get(job_id)
    if new is not None:
        log.info("job %s cancelled by %s", job_id, tenant_id)
        ctx.bus.best_effort(ctx.bus.cancel_job, job_id)
        _after_finish(ctx, job_id, tenant_id)
    return job


def stop_in_executor(ctx: Context, job_id: str) -> None:
    """The cancel message's handler: make the executor stop (or never start) the job."""
    job, spec = job_and_spec(ctx, job_id)
    if spec is not None:
        ctx.executor.cancel(spec)


def collect_results(ctx: Context, job_id: str) -> None:
    """Copy a finished job's outputs to the result store and record them (idempotent)."""
    job, spec = job_and_spec(ctx, job_id)
    if job is None or not JobStatus(job["status"]).run_over or job["results_collected_at"] is not None:
        return
    if job["status"] == JobStatus.CANCELLED.value:
        # The cancel message is best effort (lost while Redis is down); collection is re-sent by the
        # sweeper until it succeeds, so stopping the run again here means a cancel is never lost.
        ctx.executor.cancel(spec)
    try:
        stored = ctx.executor.collect(spec, ctx.store)
    except StillRunning as exc:
        log.info("job %s: %s; collecting again shortly", job_id, exc)
        ctx.bus.collect_results(job_id, delay_ms=COLLECT_RETRY_MS)
        return
    except CannotCollectYet as exc:
        log.warning("job %s: results not collected yet: %s; the sweeper tries again", job_id, exc)
        retention.note_collect_error(ctx, job_id, exc)
        return
    except Exception as exc:
        retention.note_collect_error(ctx, job_id, exc)  # named if COLLECT_TIMEOUT_SECONDS ends the job
        raise
    kpis = parse_statistics(stored.statistics) if stored.statistics else None
    now = utcnow()
    with ctx.uow() as uow:
        uow.usage.lock(job["tenant_id"])  # before the job row (core.db.usage: lock order)
        current = uow.jobs.get(job_id, lock=True)
        done = None
        if current is None or current["results_collected_at"] is not None:
            pass  # collected meanwhile, or given up (COLLECT_TIMEOUT_SECONDS): the row stays
        elif current["results_deleted_at"] is not None:  # the tenant deleted the job's data first: nothing is kept
            uow.jobs.update(job_id, {"results_collected_at": now}, now)
        else:
            done = collected(job_state(current))
            size = sum(int(f.get("size") or 0) for f in stored.files)
            uow.jobs.update(
                job_id,
                {
                    "result_files": stored.files,
                    "result_size": size,
                    "kpis": kpis,
                    "log_archived": stored.log_archived,
                    "results_collected_at": now,
                    **(done.changes if done is not None else {}),
                },
                now,
            )
            uow.usage.change(current["tenant_id"], stored_bytes=size)
    if current is not None and not current["result_files"] and (current["results_collected_at"] or current["results_deleted_at"]):
        ctx.store.delete_prefix(spec.result_prefix)  # what this collection stored is listed nowhere
    log.info("job %s: %d result files collected%s", job_id, len(stored.files),
             f"; {done.status.value}" if done is not None else "")
    ctx.executor.release(spec)

