"""Submitting a job: check the tenant's rate, validate, store the input, record it, ask for admission.

The order matters for durability: the archive is stored before the row that
points to it exists, and the row exists before the message that announces
it.  A lost message is recovered by the sweeper (the row stays QUEUED); a
failed insert removes the stored archive, so a refusal leaves nothing behind.

The tenant's limits cost no round trip of their own but the rate check (one
Redis script): the insert itself checks the key, the per-job limits, the
queue (MAX_QUEUED_JOBS_PER_TENANT) and the stored bytes, and counts the job
in (core.db.repository).  Only a refused insert reads the tenant again, to
say which limit refused it.
"""
from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from core.domain.admission import Limits, queue_violation, request_violation, storage_violation
from core.domain.states import JobStatus
from core.scenario import ScenarioError, inspect_archive
from core.clock import utcnow
from core.services.context import Context
from core.services.errors import Conflict, Invalid, PayloadTooLarge, TooManyRequests, Unauthenticated

log = logging.getLogger(__name__)
#: Retry-After of a full queue: jobs leave it as the tenant's running ones end, which takes a while.
QUEUE_FULL_RETRY_AFTER = 30


@dataclass(frozen=True)
class Submission:
    scenario_id: str
    cpu_request: int
    memory_gi: int
    config_file: str | None
    idempotency_key: str | None


def submit(ctx: Context, tenant: dict, archive: BinaryIO, request: Submission) -> tuple[dict, bool]:
    """Returns (job row, created); created is False when the idempotency key named an existing job.

    ``tenant`` is the caller's row as authentication found it, possibly remembered
    from a moment ago (core.services.recent_keys): whatever it allows is checked
    again by the insert, and a refusal reads the current row first.  A created
    job's row holds the values inserted (the columns left to their defaults are
    absent); an existing job's row is read whole.

    ``archive`` is the upload as a seekable binary file (spooled by the web server).
    """
    tenant_id = tenant["tenant_id"]
    wait = ctx.submission_rate.acquire(tenant_id)
    if wait:
        rate, burst = ctx.settings.submit_rate_per_second, ctx.settings.submit_burst
        raise TooManyRequests(
            f"tenant {tenant_id} submits faster than SUBMIT_RATE_PER_SECOND allows ({rate:g} per second, bursts of "
            f"up to SUBMIT_BURST={burst}); retry after {math.ceil(wait)} s", math.ceil(wait))
    if request.idempotency_key:
        with ctx.statement() as one:
            existing = one.jobs.get_by_idempotency_key(tenant_id, request.idempotency_key)
            if existing:
                _current(ctx, one, tenant)  # a replay answers only to the tenant's current key
                return existing, False

    if request_violation(_limits(tenant), request.cpu_request, request.memory_gi):
        with ctx.statement() as one:
            tenant = _within_current_limits(ctx, one, tenant, request)  # refuse on the current limits, not remembered ones
    try:
        scenario = inspect_archive(archive, request.config_file, ctx.limits, max_threads=request.cpu_request)
    except ScenarioError:
        with ctx.statement() as one:
            _current(ctx, one, tenant)  # a key revoked meanwhile is told so, not what is wrong with its upload
        raise

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
        "status_since": now,
    }
    existing = None
    try:
        with ctx.statement() as one:  # WITH gate AS (UPDATE usage … WHERE <key and limits hold>) INSERT …: atomic alone
            outcome = one.jobs.add(row, tenant["api_key_hash"], ctx.settings.max_queued_jobs_per_tenant)
            if outcome == "refused":
                # The key was regenerated, a limit lowered or reached (each raises), or the tenant's row
                # changed between the insert and this read.
                _within_current_limits(ctx, one, tenant, request, input_size)
            elif outcome == "duplicate":  # a concurrent request with the same idempotency key won
                existing = one.jobs.get_by_idempotency_key(tenant_id, request.idempotency_key)
                if existing is not None:
                    _current(ctx, one, tenant)
    except BaseException:
        ctx.store.delete_prefix(input_key)
        raise
    inserted = outcome == "inserted"
    if not inserted:
        ctx.store.delete_prefix(input_key)
        if existing is None:  # the tenant's row changed again between the insert and the read
            raise Conflict("the tenant's key or limits changed during the submission; submit again")
        return existing, False

    log.info("job %s submitted by %s (%s, %d cpu, %d Gi)", job_id, tenant_id, scenario.config_file, request.cpu_request, request.memory_gi)
    ctx.bus.best_effort(ctx.bus.request_admission, tenant_id)
    return row, True


def _limits(tenant: dict) -> Limits:
    return Limits(tenant["max_cpu"], tenant["max_memory_gi"], tenant["max_concurrent_jobs"])


def _within_current_limits(ctx: Context, one, tenant: dict, request: Submission, input_size: int | None = None) -> dict:
    """The tenant's current row; Unauthenticated, or a refusal naming the limit when the job may not go in:
    Invalid (a per-job limit), and with ``input_size`` PayloadTooLarge (the stored bytes, which waiting does
    not lift) or TooManyRequests (a full queue)."""
    current = _current(ctx, one, tenant)
    violation = request_violation(_limits(current), request.cpu_request, request.memory_gi)
    if violation:
        raise Invalid(violation)
    if input_size is not None:
        usage = one.usage.get(current["tenant_id"])
        violation = storage_violation(usage["stored_bytes"], input_size, current["max_stored_bytes"])
        if violation:
            raise PayloadTooLarge(violation)
        violation = queue_violation(usage["queued_jobs"], ctx.settings.max_queued_jobs_per_tenant)
        if violation:
            raise TooManyRequests(violation, QUEUE_FULL_RETRY_AFTER)
    return current


def _current(ctx: Context, one, tenant: dict) -> dict:
    """The tenant's row as it is now; Unauthenticated when the key ``tenant`` was found by is no longer its key."""
    current = one.tenants.get(tenant["tenant_id"])
    if current is None or current["api_key_hash"] != tenant["api_key_hash"]:
        ctx.recent_keys.forget_tenant(tenant["tenant_id"])
        raise Unauthenticated("invalid API key")
    return current
