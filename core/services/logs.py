"""A job's log, wherever it currently is.

While the job runs (and until its results are collected) the executor has
it: a file in the work directory (local) or the pod's log (kubernetes).
Once collected it is read from the result store, so it outlives the run.
"""
from __future__ import annotations

from collections import deque

from core.executors.base import JobSpec
from core.services.context import Context
from core.storage.base import ObjectNotFound

CHUNK = 256 * 1024


def read(ctx: Context, job: dict, spec: JobSpec, start: int, limit: int = CHUNK) -> bytes:
    """Up to ``limit`` bytes of the log from byte offset ``start`` (b"" when there is nothing new)."""
    if job["log_archived"]:
        out = bytearray()
        try:
            for chunk in ctx.store.iter_bytes(spec.log_key, chunk_size=limit, start=start):
                out += chunk
                if len(out) >= limit:
                    break
        except ObjectNotFound:
            return b""
        return bytes(out[:limit])
    return ctx.executor.read_live_log(spec, start, limit) or b""


def whole_lines(chunk: bytes, *, final: bool) -> bytes:
    """The part of ``chunk`` (read at the log's current end) to send now: up to its last line break (LF or
    CR), so each piece is whole lines, which a client can print as they come; a line still being written
    waits for its end.  All of it when the log is ``final`` (nothing more will be written) or when one line
    fills a whole read."""
    end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
    if end:
        return chunk[:end]  # the rest comes with the next read
    return chunk if final or len(chunk) >= CHUNK else b""


def whole(ctx: Context, job: dict, spec: JobSpec, tail: int | None = None) -> str:
    """The log as text; with ``tail``, only its last lines (read in chunks, never all in memory twice)."""
    offset = 0
    lines: deque[str] | list[str] = deque(maxlen=tail) if tail else []
    pending = b""
    while True:
        chunk = read(ctx, job, spec, offset)
        if not chunk:
            break
        offset += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        lines.extend(line.decode("utf-8", errors="replace") for line in complete)
    if pending:
        lines.append(pending.decode("utf-8", errors="replace"))
    return "\n".join(lines) + ("\n" if lines and not pending else "")
