"""The sweeper: re-sends messages that were lost, so no job is left stuck.

Redis may restart without persistence, or a worker may die holding a
message.  The database is the source of truth: a job that has not moved
since its last message for longer than ``SWEEP_GRACE_SECONDS`` gets that
message again, and again after twice as long each time (a job that merely
waits for a slot or for quota costs a few messages, not one per sweep; a
local run of hours, one every 64 × ``SWEEP_GRACE_SECONDS``, 16 min by default).  Which jobs still depend on their start message is the
executor's (:data:`core.messaging.AWAITING_START`).
Receivers are idempotent, so a re-send that crosses a slow original is
harmless.
"""
from __future__ import annotations

import logging

from core.messaging import AWAITING_START
from core.clock import utcnow
from core.services.context import Context

log = logging.getLogger(__name__)


def sweep(ctx: Context) -> dict[str, int]:
    now = utcnow()
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
    return counts
