"""A start message for several admitted jobs, on the real database: one read, every job tried, failures named."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from core.db.tables import jobs
from core.services import lifecycle
from core.clock import utcnow
from core.bootstrap import bootstrap
from core.settings import Settings


class RecordingExecutor:
    """Records the specs it is asked to start; raises for the job ids in ``failing``."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.started: list = []

    def start(self, spec) -> None:
        if spec.job_id in self.failing:
            raise ConnectionError("the API server did not answer")
        self.started.append(spec)


def test_a_batch_starts_every_admitted_job_and_names_those_that_failed(stack, tenant):
    executor = RecordingExecutor(failing=set())
    ctx = bootstrap(Settings(database_url=stack.env["DATABASE_URL"], redis_url=stack.env["REDIS_URL"]), executor=executor)
    statuses = ["ADMITTED", "ADMITTED", "CANCELLED", "ADMITTED", "PENDING"]
    ids = [str(uuid.uuid4()) for _ in statuses]
    now = utcnow()
    rows = [dict(job_id=job_id, tenant_id=tenant["tenant_id"], scenario_id="batch", status=status, cpu_request=1,
                 memory_gi=1, config_file="square.sumocfg", input_key=f"inputs/none/{job_id}.zip", input_size=1,
                 submitted_at=now, admitted_at=now, last_dispatch_at=now)
            for job_id, status in zip(ids, statuses)]
    with ctx.engine.begin() as conn:
        conn.execute(sa.insert(jobs), rows)
    try:
        executor.failing = {ids[1]}
        missing = str(uuid.uuid4())
        with pytest.raises(lifecycle.StartFailed) as refused:
            lifecycle.start_jobs(ctx, [ids[3], missing, *ids[:3], ids[4]])
        assert [s.job_id for s in executor.started] == [ids[3], ids[0]], "ADMITTED ones, in the message's order"
        assert str(refused.value).startswith("1 of 6 job(s) not started: ")
        assert ids[1] in str(refused.value) and "the API server did not answer" in str(refused.value)
        assert {s.namespace for s in executor.started} == {tenant["namespace"]}
        assert {s.input_key for s in executor.started} == {f"inputs/none/{ids[3]}.zip", f"inputs/none/{ids[0]}.zip"}

        executor.failing, executor.started = set(), []
        lifecycle.start_jobs(ctx, ids)  # the retry: whatever is still ADMITTED, again (the executor dedupes)
        assert [s.job_id for s in executor.started] == [ids[0], ids[1], ids[3]]
    finally:
        with ctx.engine.begin() as conn:
            conn.execute(sa.delete(jobs).where(jobs.c.job_id.in_(ids)))
        ctx.engine.dispose()
