"""Submitting a job: validate, store the input, record it, ask for admission.

The order matters for durability: the archive is stored before the row that
points to it exists, and the row exists before the message that announces
it.  A lost message is recovered by the sweeper (the row stays QUEUED); a
failed insert removes the stored archive, so a refusal leaves nothing behind.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from core.domain.admission import Limits, request_violation
from core.domain.states import JobStatus
from core.scenario import inspect_archive
from core.services.context import Context, utcnow
from core.services.errors import Invalid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    scenario_id: str
    cpu_request: int
    memory_gi: int
    config_file: str | None
    idempotency_key: str | None


def submit(ctx: Context, tenant: dict, archive: BinaryIO, request: Submission) -> tuple[dict, bool]:
    """Returns (job row, created); created is False when the idempotency key named an existing job.

    A created job's row holds the values inserted (the columns left to their
    defaults are absent); an existing job's row is read whole.

    ``archive`` is the upload as a seekable binary file (spooled by the web server).
    """
    tenant_id = tenant["tenant_id"]
    if request.idempotency_key:
        with ctx.statement() as one:
            existing = one.jobs.get_by_idempotency_key(tenant_id, request.idempotency_key)
        if existing:
            return existing, False

    limits = Limits(tenant["max_cpu"], tenant["max_memory_gi"], tenant["max_concurrent_jobs"])
    violation = request_violation(limits, request.cpu_request, request.memory_gi)
    if violation:
        raise Invalid(violation)
    scenario = inspect_archive(archive, request.config_file, ctx.limits)

    job_id = str(uuid.uuid4())
    input_key = f"inputs/{tenant_id}/{job_id}.zip"
    input_size = archive.seek(0, 2)
    archive.seek(0)
    ctx.store.put_stream(input_key, archive)
    now = utcnow()
    row = {
        "job_id": job_id,
        "tenant_id": tenant_id,
        "scenario_id": request.scenario_id,
        "status": JobStatus.QUEUED.value,
        "cpu_request": request.cpu_request,
        "memory_gi": request.memory_gi,
        "config_file": scenario.config_file,
        "input_key": input_key,
        "input_size": input_size,
        "idempotency_key": request.idempotency_key,
        "submitted_at": now,
        "last_dispatch_at": now,
        "updated_at": now,
    }
    try:
        with ctx.statement() as one:  # INSERT … ON CONFLICT DO NOTHING RETURNING: atomic alone
            inserted = one.jobs.add(row)
            if not inserted:  # a concurrent request with the same idempotency key won
                existing = one.jobs.get_by_idempotency_key(tenant_id, request.idempotency_key)
    except BaseException:
        ctx.store.delete_prefix(input_key)
        raise
    if not inserted:
        ctx.store.delete_prefix(input_key)
        return existing, False

    log.info("job %s submitted by %s (%s, %d cpu, %d Gi)", job_id, tenant_id, scenario.config_file, request.cpu_request, request.memory_gi)
    ctx.bus.best_effort(ctx.bus.request_admission, tenant_id)
    return row, True
