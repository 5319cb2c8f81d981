"""The sweeper's stall rule on the real database: grace × 2^attempts since the last message; what it is
left to re-send."""
from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace

import sqlalchemy as sa

from core.db.tables import jobs
from core.domain.states import JobStatus
from core.executors.base import CannotCollectYet
from core.services import lifecycle
from core.clock import utcnow
from core.bootstrap import bootstrap
from core.settings import Settings


def test_resends_back_off_exponentially(stack, api, tenant):
    # A finished job whose row the test moves by hand (and puts back); RUNNING, which the live
    # sweeper of the shared stack never re-sends, so it cannot interfere.
    ctx = bootstrap(Settings(database_url=stack.env["DATABASE_URL"], redis_url=stack.env["REDIS_URL"]))
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


class _CollectorCannotStart:
    """The Kubernetes executor's answer while the collector pod cannot start (no room, an image it cannot pull)."""

    def __init__(self):
        self.collects = 0

    def collect(self, spec, store):
        self.collects += 1
        raise CannotCollectYet("the collector pod ns/sumo-collect-x cannot start: ImagePullBackOff: Back-off pulling image")


def test_a_collection_that_cannot_run_yet_is_left_to_the_sweeper(stack, api, tenant, caplog):
    """A collection that cannot run now returns at once (no worker thread waits it out), records nothing and
    sends nothing of its own; the job stays where the sweeper's re-sends find it."""
    executor = _CollectorCannotStart()
    ctx = bootstrap(Settings(database_url=stack.env["DATABASE_URL"], redis_url=stack.env["REDIS_URL"]), executor=executor)
    sent: list = []
    ctx.bus = SimpleNamespace(collect_results=lambda *args, **kw: sent.append((args, kw)))
    job_id = api.submit_ok(tenant, "square.zip")
    api.wait_status(tenant, job_id, "SUCCEEDED", timeout=120)
    api.wait_results(tenant, job_id)
    now = utcnow()

    def row() -> dict:
        with ctx.uow() as uow:
            return uow.jobs.get(job_id)

    collected_at = row()["results_collected_at"]
    # Uncollected again, its last re-send just now and ten before it: the live sweeper leaves it alone for 192 s.
    with ctx.engine.begin() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(
            results_collected_at=None, last_dispatch_at=now, dispatch_attempts=10))
    try:
        with caplog.at_level(logging.WARNING, logger="core.services.lifecycle"):
            lifecycle.collect_results(ctx, job_id)
        assert executor.collects == 1 and sent == []
        assert row()["results_collected_at"] is None
        assert any("ImagePullBackOff" in r.getMessage() and "sweeper" in r.getMessage() for r in caplog.records)
        with ctx.uow() as uow:
            assert job_id in uow.jobs.uncollected(now + timedelta(seconds=3 * 64 + 1), 3.0)
    finally:
        with ctx.engine.begin() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(
                results_collected_at=collected_at, dispatch_attempts=0))
        ctx.engine.dispose()
