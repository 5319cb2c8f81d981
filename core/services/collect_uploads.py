"""A collector pod's uploads: each result file of a finished job, streamed into the result store.

``PUT /internal/jobs/{id}/files/{name}`` lands here.  The collector (a pod in the tenant's namespace, see
core.executors.kubernetes.collection) sends one file per request with the job's token; the file goes to the
store as it arrives, hashed on the way, in bounded memory whatever its size, and its {name, size, sha256} is
recorded for the worker's collection to check against the collector's own manifest.

Refused, each naming why: a missing (401) or wrong (403) token, a name that is not a plain relative path
(422), a job whose run is not over or whose results are recorded already (409), a body without a length
(411), and a body past the run's caps (413): MAX_LOG_MB for ``sumo.log``, MAX_OUTPUT_MB for every other
file together.  A refused body is never stored.
"""
from __future__ import annotations

import hashlib
from typing import BinaryIO

from core.clock import utcnow
from core.collect_tokens import NoTokenKey, token_key, token_matches
from core.domain.states import JobStatus
from core.executors.base import LOG_NAME
from core.scenario.paths import normalize_entry_name
from core.services.context import Context
from core.services.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError, Unauthenticated

MB = 1024 * 1024


class IncompleteBody(ServiceError):
    """The body ended before its Content-Length."""


def receive(ctx: Context, job_id: str, name: str, token: str | None, length: int | None, body: BinaryIO) -> dict:
    """Store one uploaded file of ``job_id`` under its result prefix and record it; returns {name, size, sha256}."""
    _authenticate(ctx, job_id, token)
    if normalize_entry_name(name) != name or name.endswith("/"):
        raise Invalid(f"{name!r} is not a plain relative file name (no '..', no leading '/', no '\\', no control "
                      "characters)")
    with ctx.statement() as one:
        job = one.jobs.get(job_id)
        _check_collecting(job_id, job)
        if length is None:
            raise ServiceError(f"{name}: the upload needs a Content-Length", 411)
        _check_room(one, job_id, name, length, ctx.settings)
    received = _Hashing(body, length, name)
    ctx.store.put_stream(f"results/{job['tenant_id']}/{job_id}/{name}", received)
    digest = received.finish()
    with ctx.uow() as uow:  # again under the job's lock: its state and the caps may have changed meanwhile
        _check_collecting(job_id, uow.jobs.get(job_id, lock=True))
        _check_room(uow, job_id, name, length, ctx.settings)
        uow.uploads.record(job_id, name, length, digest, utcnow())
    return {"name": name, "size": length, "sha256": digest}


def recorded(ctx: Context, job_id: str) -> dict[str, dict]:
    """``{name: {"size", "sha256"}}`` of every file received for ``job_id``."""
    with ctx.statement() as one:
        return one.uploads.of_job(job_id)


def _authenticate(ctx: Context, job_id: str, token: str | None) -> None:
    if not token:
        raise Unauthenticated("this endpoint needs 'Authorization: Bearer <the job's collect token>'")
    try:
        key = token_key(ctx.settings.collect_token_secret, ctx.settings.admin_key)
    except NoTokenKey as exc:
        raise ServiceError(str(exc), 503) from None
    if not token_matches(key, job_id, token):
        raise Forbidden(f"the collect token is not valid for job {job_id}")


def _check_collecting(job_id: str, job: dict | None) -> None:
    """Uploads are taken while the job's run is over and its results are not recorded yet."""
    if job is None:
        raise NotFound(f"job {job_id} not found")
    status = JobStatus(job["status"])
    if job["results_collected_at"] is not None or status not in (JobStatus.COLLECTING, JobStatus.CANCELLED):
        state = "its results are recorded already" if job["results_collected_at"] is not None else \
            "its run is not over"
        raise Conflict(f"job {job_id} is {status.value} and {state}: it takes uploads only while its results "
                       "are being collected")


def _check_room(repos, job_id: str, name: str, length: int, settings) -> None:
    if name == LOG_NAME:
        cap = settings.max_log_mb * MB
        if length > cap:
            raise ServiceError(f"{name}: {length} bytes exceed MAX_LOG_MB ({settings.max_log_mb} MB)", 413)
        return
    used = repos.uploads.total_size(job_id, excluding=(LOG_NAME, name))
    if used + length > settings.max_output_mb * MB:
        raise ServiceError(f"{name}: {length} bytes do not fit MAX_OUTPUT_MB ({settings.max_output_mb} MB for all "
                           f"of a run's outputs; {used} bytes received already)", 413)


class _Hashing:
    """A file-like over the request body that reads exactly ``length`` bytes and hashes them on the way."""

    def __init__(self, body: BinaryIO, length: int, name: str) -> None:
        self.body, self.remaining, self.name = body, length, name
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        """Exactly ``size`` bytes (fewer only at the declared end), as a buffered file gives: a store's upload
        may take a short read for the end of the stream."""
        want = self.remaining if size is None or size < 0 else min(size, self.remaining)
        parts, got = [], 0
        while got < want:
            data = self.body.read(want - got)
            if not data:
                raise IncompleteBody(f"{self.name}: the body ended {self.remaining - got} bytes before its "
                                     "Content-Length")
            parts.append(data)
            got += len(data)
        out = b"".join(parts)
        self.remaining -= got
        self.digest.update(out)
        return out

    def readable(self) -> bool:
        return True

    def finish(self) -> str:
        if self.remaining:
            raise IncompleteBody(f"{self.name}: the body ended {self.remaining} bytes before its Content-Length")
        return self.digest.hexdigest()
