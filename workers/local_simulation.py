"""The local executor's worker side: run one admitted job's simulation here."""
from __future__ import annotations

import logging

from core.domain.states import JobStatus
from core.bootstrap import local_runner
from core.services.context import Context
from core.services.queries import job_and_spec

log = logging.getLogger(__name__)
_runner = None


def run(ctx: Context, job_id: str) -> None:
    global _runner
    job, spec = job_and_spec(ctx, job_id)
    if job is None or JobStatus(job["status"]).run_over:
        log.info("job %s: not running it, it is %s", job_id, job["status"] if job else "gone")
        return
    if _runner is None:
        _runner = local_runner(ctx)
    _runner.run(spec)
