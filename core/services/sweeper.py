"""The sweeper: re-sends messages that were lost, ends jobs that cannot go on, applies retention.

Redis may restart without persistence, or a worker may die holding a
message.  The database is the source of truth: a job that has not moved
since its last message for longer than ``SWEEP_GRACE_SECONDS`` gets that
message again, and again after twice as long each time (a job that merely
waits for a slot or for quota costs a few messages, not one per sweep; a
local run of hours, one every 64 × ``SWEEP_GRACE_SECONDS``, 16 min by default).  Which jobs still depend on their start message is the
executor's (:data:`core.messaging.AWAITING_START`).
Receivers are idempotent, so a re-send that crosses a slow original is
harmless.

A status event can be lost too (dead-lettered while PostgreSQL was away).
Jobs PENDING or RUNNING on an executor whose start message does not cover
that (Kubernetes) are asked about on the same backoff:
``Executor.observe`` says what the executor sees now, and it goes through
the state machine like any event.  ADMITTED jobs whose start was re-sent are
asked too (their PENDING and RUNNING may both have been lost), except that a
job the executor does not know yet is left to the start.

Jobs that cannot go on end: PENDING past ``PENDING_TIMEOUT_SECONDS`` where
the wait does not resolve by itself (:data:`PENDING_TIMES_OUT`), and
waiting for a collection past ``COLLECT_TIMEOUT_SECONDS``.  Then retention
(:mod:`core.services.retention`).  Each part runs on its own: one that cannot
run now (the API server away) does not hold up the others.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from core.domain.states import JobStatus, expire_collecting, expire_pending
from core.executors.base import LOST
from core.messaging import AWAITING_START
from core.clock import utcnow
from core.services import lifecycle, retention
from core.services.context import Context
from core.services.queries import jobs_and_specs
from core.unavailable import Unavailable

log = logging.getLogger(__name__)
#: Whether a PENDING job times out, per executor.  A local job is PENDING only while it waits for a free
#: simulation slot, which the end of another run gives it; on Kubernetes a wait that long (unschedulable,
#: an image that cannot be pulled, refused by quota) does not resolve by itself.
PENDING_TIMES_OUT = {"local": False, "kubernetes": True}
#: Most jobs asked about (observe), and most ended by a timeout, per pass.
BATCH = 100


def sweep(ctx: Context) -> dict[str, int]:
    now = utcnow()
    counts, admitted_resent = _resend(ctx, now)
    for part in (lambda: _observe(ctx, now, admitted_resent), lambda: expire(ctx, now),
                 lambda: retention.sweep_expired(ctx, now)):
        try:
            counts.update(part())
        except Unavailable as exc:
            log.warning("sweep: part skipped: %s", exc)
        except Exception:  # noqa: BLE001 — the other parts still run; the next pass tries again
            log.exception("sweep: part failed; retrying at the next pass")
    return counts


def _resend(ctx: Context, now: datetime) -> tuple[dict[str, int], list[str]]:
    grace = ctx.settings.sweep_grace_seconds
    with ctx.uow() as uow:
        tenants = uow.jobs.tenants_with_stalled_queue(now, grace)
        to_start = uow.jobs.stalled(list(AWAITING_START[ctx.settings.executor]), now, grace)
        to_collect = uow.jobs.uncollected(now, grace)
        uow.jobs.mark_dispatched(to_start + to_collect, now)
        uow.jobs.mark_queue_dispatched(tenants, now)
    with ctx.bus.burst():
        for tenant_id in tenants:
            ctx.bus.request_admission(tenant_id)
        ctx.bus.start_jobs(to_start)
        for job_id in to_collect:
            ctx.bus.collect_results(job_id)
    counts = {"admission": len(tenants), "start": len(to_start), "collect": len(to_collect)}
    if any(counts.values()):
        log.info("sweeper re-sent messages: %s", counts)
    return counts, to_start


def _observe(ctx: Context, now: datetime, admitted_resent: list[str]) -> dict[str, int]:
    """Apply what the executor sees now of jobs whose status stalled (a status event may have been lost)."""
    awaiting = AWAITING_START[ctx.settings.executor]
    statuses = [s for s in (JobStatus.PENDING, JobStatus.RUNNING) if s not in awaiting]
    if not statuses:
        return {}
    with ctx.uow() as uow:
        stalled = uow.jobs.stalled(statuses, now, ctx.settings.sweep_grace_seconds, limit=BATCH)
        uow.jobs.mark_dispatched(stalled, now)
    admitted = [] if JobStatus.ADMITTED not in awaiting else admitted_resent[:BATCH]
    applied = 0
    for job, spec in jobs_and_specs(ctx, stalled + admitted):
        event = ctx.executor.observe(spec)  # ExecutorUnavailable: the rest waits for the next pass
        if event is None:
            continue
        if job["status"] == JobStatus.ADMITTED.value and (event.reason or "").startswith(LOST):
            continue  # not started yet: the start message re-sent above does that
        if lifecycle.apply_status(ctx, event):
            applied += 1
            log.info("job %s: %s applied from what the executor sees (its status had not moved)", spec.job_id,
                     event.status.value)
    return {"observed": len(stalled) + len(admitted), "observed_applied": applied}


def expire(ctx: Context, now: datetime | None = None) -> dict[str, int]:
    """End jobs PENDING past PENDING_TIMEOUT_SECONDS (where that times out) and collections that did not
    succeed within COLLECT_TIMEOUT_SECONDS."""
    now = now or utcnow()
    settings = ctx.settings
    pending_timeout, collect_timeout = settings.pending_timeout_seconds, settings.collect_timeout_seconds
    timed_out: list[dict] = []
    given_up: list[dict] = []
    with ctx.uow() as uow:
        if PENDING_TIMES_OUT[settings.executor]:
            for job in uow.sweeps.pending_since_before(now - timedelta(seconds=pending_timeout), BATCH):
                new = expire_pending(lifecycle.job_state(job), now, pending_timeout)
                if new is not None:  # nothing ran: nothing to collect
                    uow.jobs.update(str(job["job_id"]), {**new.changes, "results_collected_at": now,
                                                         "result_files": [], "last_dispatch_at": now}, now)
                    timed_out.append(job)
        for job in uow.sweeps.uncollected_since_before(now - timedelta(seconds=collect_timeout), BATCH):
            new = expire_collecting(lifecycle.job_state(job), now, collect_timeout, job["collect_error"])
            if new is not None:
                uow.jobs.update(str(job["job_id"]), {**new.changes, "results_collected_at": now,
                                                     "result_files": [], "last_dispatch_at": now}, now)
                given_up.append(job)
    for job in timed_out:
        log.warning("job %s FAILED: PENDING for more than %g s (%s)", job["job_id"], pending_timeout, job["pending_reason"])
        ctx.bus.best_effort(ctx.bus.cancel_job, str(job["job_id"]))  # the executor stops it
        ctx.bus.best_effort(ctx.bus.request_admission, job["tenant_id"])  # its quota is free again
        # Nothing is collected, but its pod may have unpacked the inputs (an image that cannot be pulled
        # fails after the init container): the executor's copy goes.
        _drop_leftovers(ctx, job, "of the job that never ran", store=False)
    for job in given_up:
        log.warning("job %s: results not stored within %g s (%s); collection given up", job["job_id"],
                    collect_timeout, job["collect_error"])
        # whatever a failed attempt stored is listed nowhere; the executor's copy goes too
        _drop_leftovers(ctx, job, "of the failed collection", store=True)
    return {"pending_timed_out": len(timed_out), "collect_timed_out": len(given_up)}


def _drop_leftovers(ctx: Context, job: dict, what: str, *, store: bool) -> None:
    """Remove a job's copy in the executor (and with ``store`` what the store holds under its results); the
    job's end is recorded already, so a failure here is logged, not raised."""
    spec = ctx.job_spec(job, job["tenant_namespace"])
    try:
        if store:
            ctx.store.delete_prefix(spec.result_prefix)
        ctx.executor.release(spec)
    except Exception as exc:  # noqa: BLE001
        log.warning("job %s: leftovers %s not removed: %s", job["job_id"], what, exc)
