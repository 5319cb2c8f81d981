"""A job's log, wherever it currently is, read in bounded pieces.

While the job runs (and until its results are collected) the executor has
it: a file in the work directory (local) or the pod's log (kubernetes).
Once collected it is read from the result store, so it outlives the run.

Nothing here holds a whole log: a tail is read backwards from the log's end
(:func:`core.log_text.tail`, at most TAIL_MAX_BYTES), the whole log goes out
as JSON pieces of one read each (:func:`document`), and a stream resumes at
its position without reading again what it sent (:class:`Follower`).  A
tenant's open streams are counted over every API worker
(:func:`open_stream`, MAX_LOG_STREAMS_PER_TENANT).
"""
from __future__ import annotations

import logging
import uuid
from typing import Iterator

from core import log_text
from core.executors.base import JobSpec, LogPosition
from core.services.context import Context
from core.services.errors import Invalid, ServiceError
from core.services.queries import job_with_spec
from core.storage.base import ObjectNotFound
from core.unavailable import Unavailable

log = logging.getLogger(__name__)

#: Bytes per read of a log, per JSON piece and per stream event.
CHUNK = 256 * 1024
#: The most ``?tail=N`` returns: when the last N lines are longer, the log's last TAIL_MAX_BYTES bytes
#: (the answer then starts inside its first line).
TAIL_MAX_BYTES = 16 * 1024 * 1024


def whole_lines(chunk: bytes, *, final: bool) -> bytes:
    """What of a read of CHUNK bytes a stream sends now (see :func:`core.log_text.whole_lines`)."""
    return log_text.whole_lines(chunk, final=final, full=len(chunk) >= CHUNK)


# -- reading ----------------------------------------------------------------------------------------
def read_from(ctx: Context, job: dict, spec: JobSpec, position: LogPosition, limit: int) -> tuple[bytes, LogPosition]:
    """Up to ``limit`` bytes of the log after ``position`` and the position after them (b"" when there is
    nothing new); one ranged read of the archived log, or the executor's read of the live one."""
    if job["log_archived"]:
        try:
            data = ctx.store.read_range(spec.log_key, position.offset, limit)
        except ObjectNotFound:
            data = b""
        return data, LogPosition(position.offset + len(data))
    got = ctx.executor.read_live_log_from(spec, position, limit)
    return (b"", position) if got is None else got


def _reloaded(ctx: Context, job: dict) -> dict:
    """The job's row as it is now (its log may have been archived since ``job`` was read)."""
    return job_with_spec(ctx, str(job["job_id"]), job["tenant_id"])[0]


def tail(ctx: Context, job: dict, spec: JobSpec, lines: int) -> bytes:
    """The last ``lines`` lines (ended by LF, CR or CR LF), read from the log's end; at most TAIL_MAX_BYTES."""
    if not job["log_archived"]:
        try:
            data = ctx.executor.tail_live_log(spec, lines, TAIL_MAX_BYTES)
        except NotImplementedError:
            data = _tail_reading_forward(ctx, job, spec, lines)
        if data is not None:
            return data
        job = _reloaded(ctx, job)  # no live log: collected meanwhile, or not started yet
        if not job["log_archived"]:
            return b""
    key = spec.log_key
    try:
        size = ctx.store.size(key)
    except ObjectNotFound:
        return b""
    return log_text.tail(lambda start, length: ctx.store.read_range(key, start, length), size, lines, TAIL_MAX_BYTES)


def _tail_reading_forward(ctx: Context, job: dict, spec: JobSpec, lines: int) -> bytes | None:
    """For an executor that cannot read its live log from the end: the whole log read once, keeping only
    its last TAIL_MAX_BYTES (and a read more, to tell where a line begins)."""
    kept, position = bytearray(), LogPosition()
    while True:
        got = ctx.executor.read_live_log_from(spec, position, CHUNK)
        if got is None:  # no live log (any more): the caller looks for the archived one
            return None
        data, position = got
        if not data:
            return log_text.tail(_reader(kept), len(kept), lines, TAIL_MAX_BYTES)
        kept += data
        del kept[:max(0, len(kept) - TAIL_MAX_BYTES - CHUNK)]


def _reader(data: bytes | bytearray):
    return lambda start, length: bytes(data[start:start + length])


def chunks(ctx: Context, job: dict, spec: JobSpec) -> Iterator[bytes]:
    """The whole log as it is now, in pieces of at most CHUNK bytes.  What cannot be read at all (the store
    away) raises here, before any piece is sent, not halfway through."""
    if job["log_archived"]:
        return _archived(ctx, spec, 0)
    got = ctx.executor.read_live_log_from(spec, LogPosition(), CHUNK)
    if got is None:
        job = _reloaded(ctx, job)
        return _archived(ctx, spec, 0) if job["log_archived"] else iter(())
    return _live_then_archived(ctx, job, spec, *got)


def _archived(ctx: Context, spec: JobSpec, start: int) -> Iterator[bytes]:
    try:
        return ctx.store.iter_bytes(spec.log_key, chunk_size=CHUNK, start=start)
    except ObjectNotFound:
        return iter(())


def _live_then_archived(ctx: Context, job: dict, spec: JobSpec, data: bytes, position: LogPosition) -> Iterator[bytes]:
    """The live log up to its current end; the rest from the store if it was collected while being read."""
    while data:
        yield data
        got = ctx.executor.read_live_log_from(spec, position, CHUNK)
        if got is None:  # collected and released meanwhile: the archived copy holds the same bytes
            if _reloaded(ctx, job)["log_archived"]:
                yield from _archived(ctx, spec, position.offset)
            return
        data, position = got


def document(ctx: Context, job: dict, spec: JobSpec, tail_lines: int | None = None, *,
             as_text: bool = False) -> Iterator[bytes]:
    """``{"job_id": ..., "logs": ...}`` (the whole log, or its last ``tail_lines`` lines) as JSON pieces
    of one read each, or with ``as_text`` the log's own bytes; the log is opened (and a tail read) before
    this returns."""
    if tail_lines:
        data = tail(ctx, job, spec, tail_lines)
        pieces: Iterator[bytes] = (data[i:i + CHUNK] for i in range(0, len(data), CHUNK))
    else:
        pieces = chunks(ctx, job, spec)
    return pieces if as_text else log_text.json_document({"job_id": spec.job_id}, "logs", pieces)


# -- following ---------------------------------------------------------------------------------------
def resume_at(last_event_id: str | None) -> LogPosition:
    """Where a stream starts: the position a ``Last-Event-ID`` names, or the log's beginning."""
    if not last_event_id:
        return LogPosition()
    try:
        return LogPosition.parse(last_event_id)
    except ValueError:
        raise Invalid("Last-Event-ID must be the id of an event this stream sent (\"<offset>\" or "
                      "\"<offset>@<mark>\")") from None


class Follower:
    """One log stream's place in the log: each :meth:`next` reads on from where the last one ended."""

    def __init__(self, spec: JobSpec, position: LogPosition) -> None:
        self.spec = spec
        self.position = position
        self._after_cr = False  # the last piece ended with a CR (a CR LF may be cut between two reads)

    def next(self, ctx: Context, job: dict, *, final: bool) -> tuple[str, str] | None:
        """The next piece (whole lines, as text) and the token of the position after it; None when there is
        nothing new.  ``final``: the job ended, so a last line without its end goes too."""
        data, after = read_from(ctx, job, self.spec, self.position, CHUNK)
        if after.mark is None:
            data = whole_lines(data, final=final)
            after = LogPosition(self.position.offset + len(data))
        # else: an executor that positions by its own mark sends the pieces it read (its lines are whole)
        if not data:
            return None
        text = data.decode("utf-8", errors="replace")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CR LF whose CR ended the last piece: one line end, not two
        self._after_cr = data.endswith(b"\r")
        self.position = after
        return text, after.token()


# -- open streams per tenant -------------------------------------------------------------------------
class TooManyStreams(ServiceError):
    """The tenant has as many log streams open as MAX_LOG_STREAMS_PER_TENANT allows."""

    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def open_stream(ctx: Context, tenant_id: str) -> str:
    """Count a new log stream of ``tenant_id`` and return its id; TooManyStreams when the tenant already has
    MAX_LOG_STREAMS_PER_TENANT open (over every API worker)."""
    limit = ctx.settings.max_log_streams_per_tenant
    stream_id = uuid.uuid4().hex
    if not ctx.streams.acquire(tenant_id, stream_id, limit):
        raise TooManyStreams(
            f"tenant {tenant_id} already has {limit} log streams open, the most MAX_LOG_STREAMS_PER_TENANT "
            "allows; close one (or read the log with GET /jobs/{id}/logs) and try again",
            retry_after=max(1, round(ctx.settings.log_stream_heartbeat_seconds)),
        )
    return stream_id


def keep_stream(ctx: Context, tenant_id: str, stream_id: str) -> None:
    """Renew an open stream's place (every LOG_STREAM_HEARTBEAT_SECONDS).  Redis away is logged, not
    raised: the stream goes on, and counts again at the next renewal that reaches Redis."""
    try:
        ctx.streams.renew(tenant_id, stream_id)
    except Unavailable as exc:
        log.warning("log stream %s of %s not renewed: %s", stream_id, tenant_id, exc)


def close_stream(ctx: Context, tenant_id: str, stream_id: str) -> None:
    """Give an ended stream's place back; when Redis is away it expires on its own."""
    try:
        ctx.streams.release(tenant_id, stream_id)
    except Unavailable as exc:
        log.warning("log stream %s of %s not released (it expires): %s", stream_id, tenant_id, exc)
