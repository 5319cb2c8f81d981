"""The sweeper's stall rule on the real database: grace × 2^attempts since the last message."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from core.db.tables import jobs
from core.domain.states import JobStatus
from core.services.context import Context, utcnow
from core.settings import Settings


def test_resends_back_off_exponentially(stack, api, tenant):
    # A finished job whose row the test moves by hand (and puts back); RUNNING, which the live
    # sweeper of the shared stack never re-sends, so it cannot interfere.
    ctx = Context(Settings(database_url=stack.env["DATABASE_URL"], redis_url=stack.env["REDIS_URL"]))
    job_id = api.submit_ok(tenant, "square.zip")
    api.wait_status(tenant, job_id, "SUCCEEDED", timeout=120)
    api.wait_results(tenant, job_id)
    now = utcnow()

    def set_row(age_s: float, attempts: int, status: str = "RUNNING") -> None:
        with ctx.engine.begin() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(
                status=status, last_dispatch_at=now - timedelta(seconds=age_s), dispatch_attempts=attempts))

    def stalled() -> bool:
        with ctx.uow() as uow:
            return job_id in uow.jobs.stalled([JobStatus.RUNNING], now, 3.0)

    try:
        set_row(10, 0)
        assert stalled()            # 10 s > 3 s
        set_row(10, 2)
        assert not stalled()        # 10 s < 12 s
        set_row(13, 2)
        assert stalled()
        set_row(3 * 64 + 1, 50)
        assert stalled(), "the backoff is capped at 64 × grace"
        with ctx.uow() as uow:
            uow.jobs.mark_dispatched([job_id], now)
            assert uow.jobs.get(job_id)["dispatch_attempts"] == 51
            uow.jobs.update(job_id, {"status": JobStatus.PENDING}, now)
            assert uow.jobs.get(job_id)["dispatch_attempts"] == 0, "moving on resets the backoff"
    finally:
        set_row(0, 0, status="SUCCEEDED")
        ctx.engine.dispose()
