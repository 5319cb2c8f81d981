"""The local executor's worker side: run one admitted job's simulation here.

A worker that consumes the simulations queue builds its runner when it boots (:class:`SandboxCheck`),
so a machine that cannot sandbox simulations stops the worker with one line saying why, before it
takes a message, instead of failing every job.
"""
from __future__ import annotations

import logging

import dramatiq

from core.bootstrap import get_context, local_runner
from core.domain.states import JobStatus
from core.executors.sandbox_host import SandboxUnavailable
from core.messaging import ROUTES
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


class SandboxCheck(dramatiq.Middleware):
    """Before a worker that runs local simulations boots: build the runner (which proves the sandbox
    works here), or exit naming LOCAL_SANDBOX=off as the way out."""

    def before_worker_boot(self, broker, worker) -> None:
        global _runner
        ctx = get_context()
        queues = worker.consumer_whitelist
        if ctx.settings.executor != "local" or (queues and ROUTES["run_simulation"].queue not in queues):
            return
        try:
            _runner = local_runner(ctx)
        except SandboxUnavailable as exc:
            log.critical("LOCAL_SANDBOX=on, but simulations cannot be sandboxed here: %s. Fix that, or set "
                         "LOCAL_SANDBOX=off to run them unconfined (a tenant's scenario can then read and write "
                         "what the worker can).", exc)
            raise SystemExit(1) from None
