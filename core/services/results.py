"""A finished job's results as its tenant sees them: the listing and the download of one file."""
from __future__ import annotations

from typing import Iterator

from core.services.context import Context
from core.services.errors import NotFound
from core.services.queries import job_with_spec
from core.storage.base import ObjectNotFound


def listing(ctx: Context, job_id: str, tenant_id: str) -> dict:
    """The job's collected files, each with a presigned URL where the store gives one (else ``url`` is None);
    none once they were deleted (``results_deleted_at`` says when)."""
    job, spec = job_with_spec(ctx, job_id, tenant_id, deleted_ok=True)
    files = [{**f, "url": ctx.store.presigned_url(spec.result_prefix + f["name"])} for f in job["result_files"] or []]
    return {
        "job_id": job_id,
        "status": job["status"],
        "storage_type": ctx.store.kind,
        "collected": job["results_collected_at"] is not None,
        "results_deleted_at": job.get("results_deleted_at"),
        "files": files,
    }


def download(ctx: Context, job_id: str, tenant_id: str, name: str) -> tuple[dict, Iterator[bytes]]:
    """The file's entry ({name, size, sha256}) and its bytes in chunks; NotFound naming what is missing, Gone
    once the job's results were deleted."""
    job, spec = job_with_spec(ctx, job_id, tenant_id)
    entry = next((f for f in job["result_files"] or [] if f["name"] == name), None)
    if entry is None:
        raise NotFound(f"job {job_id} has no result file {name!r}")
    try:
        return entry, ctx.store.iter_bytes(spec.result_prefix + name)
    except ObjectNotFound:
        raise NotFound(f"result file {name!r} is no longer in the store") from None
