"""Admitting a tenant's queued jobs: the quota decision, race-free.

The tenant row is locked (``FOR NO KEY UPDATE``) for the length of the decision, so
two workers admitting for the same tenant take turns and each sees what the
other admitted (never count-then-insert).  Different tenants do not contend.
Starting the admitted jobs happens after the commit, by message (a few jobs
each); a crash in between leaves them ADMITTED and the sweeper re-sends the start.
"""
from __future__ import annotations

import logging

from core.domain.admission import Limits, select_admissible
from core.domain.states import JobState, JobStatus, admit
from core.clock import utcnow
from core.services.context import Context

log = logging.getLogger(__name__)


def admit_tenant(ctx: Context, tenant_id: str) -> list[str]:
    """Admit what fits of ``tenant_id``'s queue; returns the admitted job ids."""
    ctx.bus.admission_started(tenant_id)
    with ctx.uow() as uow:
        tenant = uow.tenants.get(tenant_id, lock=True)
        if tenant is None:
            return []
        uow.usage.lock(tenant_id)  # before any job row (core.db.usage: lock order)
        now = utcnow()  # after the lock: admitted_at is when the decision was made
        limits = Limits(tenant["max_cpu"], tenant["max_memory_gi"], tenant["max_concurrent_jobs"])
        usage = uow.jobs.usage(tenant_id)
        room = limits.max_concurrent_jobs - usage.jobs
        if room <= 0:
            return []
        queue = uow.jobs.queue_head(tenant_id, room)
        admitted = select_admissible(limits, usage, queue)
        if admitted:  # every candidate is QUEUED (locked above): one transition, one statement for all
            state = admit(JobState(JobStatus.QUEUED), now)
            uow.jobs.update_many(admitted, {**state.changes, "last_dispatch_at": now}, now)
            uow.usage.change(tenant_id, queued=-len(admitted))  # they left the queue (MAX_QUEUED_JOBS_PER_TENANT)
    if admitted:  # one line per pass: under load a pass admits several jobs
        log.info("admitted %d job(s) for %s: %s", len(admitted), tenant_id, " ".join(admitted))
        ctx.bus.best_effort(ctx.bus.start_jobs, admitted)
    return admitted
