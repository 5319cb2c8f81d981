"""Jobs of the calling tenant (``/jobs``): submit, poll, list, cancel, logs, results."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from sse_starlette.sse import EventSourceResponse

from api import forms, threads
from api.deps import Caller, context, submitting_tenant, tenant_only
from api.schemas import Job, JobAccepted, JobList, JobLogs, Results, job_json
from core.domain.states import JobStatus
from core.services import lifecycle, logs, queries, results, retention, submission
from core.services.context import Context
from core.unavailable import Unavailable

router = APIRouter(tags=["jobs"])
STREAM_POLL_SECONDS = 0.25
STATUS_VALUES = "|".join(s.value for s in JobStatus)


SUBMIT_REFUSALS = {
    413: {"description": "The upload exceeds MAX_FILE_SIZE_MB, or storing it would pass the tenant's max_stored_gb"},
    429: {"description": "The tenant submits faster than SUBMIT_RATE_PER_SECOND, or has MAX_QUEUED_JOBS_PER_TENANT "
                         "jobs QUEUED; repeat after Retry-After seconds"},
}


@router.post("/jobs", status_code=202, response_model=JobAccepted, openapi_extra=forms.OPENAPI, responses=SUBMIT_REFUSALS)
async def submit_job(
    request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
    caller: Caller = Depends(submitting_tenant),
    ctx: Context = Depends(context),
):
    # The form is read after authentication (an anonymous upload is never parsed); see api.forms.
    form, archive = await forms.read_job_form(request)
    with archive:  # spooled: in memory up to 1 MiB, else a temporary file
        wanted = submission.Submission(form.scenario_id, form.cpu_request, form.memory_gi, form.config_file or None, idempotency_key or None)
        row, created = await threads.run_submission(submission.submit, ctx, caller.tenant, archive, wanted)
    # A replayed Idempotency-Key answers with the existing job as it is now.
    body = {"job_id": str(row["job_id"]), "status": row["status"], "config_file": row["config_file"]}
    headers = {"Location": f"/jobs/{row['job_id']}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


@router.get("/jobs", response_model=JobList)
async def list_jobs(
    status: str | None = Query(None, pattern=f"^({STATUS_VALUES})$"),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, max_length=200, description="next_cursor of the previous page"),
    caller: Caller = Depends(tenant_only),
    ctx: Context = Depends(context),
):
    rows, next_cursor = await threads.run(queries.jobs_page, ctx, caller.tenant_id, status, limit, cursor)
    return {"jobs": [job_json(r) for r in rows], "next_cursor": next_cursor}


@router.get("/jobs/{job_id}", response_model=Job, responses={304: {"description": "Not modified (If-None-Match)"}})
async def get_job(
    job_id: uuid.UUID,
    request: Request,
    caller: Caller = Depends(tenant_only),
    ctx: Context = Depends(context),
):
    row = await threads.run(queries.job_view, ctx, str(job_id), caller.tenant_id)
    etag = f'W/"{row["version"]}-{row["queue_position"] or 0}"'
    presented = {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}
    if etag in presented or "*" in presented:
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(_jsonable(job_json(row)), headers={"ETag": etag, "Cache-Control": "no-cache"})


@router.delete("/jobs/{job_id}", response_model=Job)
async def cancel_job(job_id: uuid.UUID, caller: Caller = Depends(tenant_only), ctx: Context = Depends(context)):
    row = await threads.run(lifecycle.cancel_job, ctx, caller.tenant_id, str(job_id))
    return job_json(row)


_TAIL_MAX = f"{logs.TAIL_MAX_BYTES // 2**20} MiB"
GONE = {410: {"description": "The job's results and log were deleted (`DELETE /jobs/{id}/data`, or past "
                             "RESULT_RETENTION_DAYS); the detail says which and when"}}
LOGS_DOC = {**GONE, 200: {"description": (
    "The log as `{\"job_id\": ..., \"logs\": ...}`, streamed in pieces (chunked, no Content-Length): the "
    "server holds one read of the log at a time, whatever its size.  With `tail`, its last N lines (ended by "
    f"LF, CR or CR LF), read from the log's end; at most {_TAIL_MAX}: when the last N lines are longer, the "
    f"answer is the log's last {_TAIL_MAX} and starts inside its first line.  A body cut short (no closing "
    "`}`) means the log could not be read to its end.  With `format=text`, the log's own bytes (text/plain)."),
    "content": {"application/json": {}, "text/plain": {}}}}


@router.get("/jobs/{job_id}/logs", response_model=JobLogs, responses=LOGS_DOC)
async def get_logs(
    job_id: uuid.UUID,
    tail: int | None = Query(None, ge=1, le=100_000, description=f"Only the last N lines (at most {_TAIL_MAX})"),
    format: Literal["json", "text"] = Query("json", description="`text`: the log's own bytes as text/plain"),
    caller: Caller = Depends(tenant_only),
    ctx: Context = Depends(context),
):
    job, spec = await threads.run(queries.job_with_spec, ctx, str(job_id), caller.tenant_id)
    as_text = format == "text"
    pieces = await threads.run(logs.document, ctx, job, spec, tail, as_text=as_text)
    return StreamingResponse(_iterate_in_thread(pieces),
                             media_type="text/plain; charset=utf-8" if as_text else "application/json")


STREAM_DOC = {
    **GONE,
    200: {"content": {"text/event-stream": {}}},
    422: {"description": "Last-Event-ID is not the id of an event this stream sent"},
    429: {"description": "The tenant has MAX_LOG_STREAMS_PER_TENANT log streams open (Retry-After: seconds)"},
}


@router.get("/jobs/{job_id}/logs/stream", response_class=EventSourceResponse, responses=STREAM_DOC)
async def stream_logs(
    job_id: uuid.UUID,
    last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=200),
    caller: Caller = Depends(tenant_only),
    ctx: Context = Depends(context),
):
    """Server-sent events: ``log`` events (whole lines; id = the position after them, to send back as
    ``Last-Event-ID`` to resume there), then one ``status`` event when the job ends.  A tenant has at most
    MAX_LOG_STREAMS_PER_TENANT streams open at once."""
    job, spec = await threads.run(queries.job_with_spec, ctx, str(job_id), caller.tenant_id)
    follower = logs.Follower(spec, logs.resume_at(last_event_id))
    try:
        stream_id = await threads.run(logs.open_stream, ctx, caller.tenant_id)
    except logs.TooManyStreams as exc:
        return JSONResponse({"detail": exc.message}, status_code=429, headers={"Retry-After": str(exc.retry_after)})

    async def events():
        nonlocal job
        ended = asyncio.Event()
        _keep(asyncio.create_task(_hold_place(ctx, caller.tenant_id, stream_id, ended)))
        finished = False
        try:
            while True:
                piece = await _patiently(follower.next, ctx, job, final=finished)
                if piece is not None:
                    text, token = piece
                    if text:
                        yield {"event": "log", "id": token, "data": text}
                    continue
                if finished:
                    yield {"event": "status", "data": json.dumps(_jsonable(_status_payload(job)))}
                    return
                job = await _patiently(queries.job_view, ctx, str(job_id), caller.tenant_id)
                if JobStatus(job["status"]).is_terminal:
                    finished = True  # one more read drains what was written before the end
                    continue
                await asyncio.sleep(STREAM_POLL_SECONDS)
        finally:
            ended.set()  # no await here: a stream whose client went away is being cancelled

    return EventSourceResponse(events(), ping=15)


_holders: set[asyncio.Task] = set()


def _keep(task: asyncio.Task) -> None:
    """Hold a reference to a background task until it ends (the event loop keeps only weak ones)."""
    _holders.add(task)
    task.add_done_callback(_holders.discard)


async def _hold_place(ctx: Context, tenant_id: str, stream_id: str, ended: asyncio.Event) -> None:
    """A stream's place in its tenant's count: renewed while the stream is open (also while a slow client
    holds up its events), given back once it ended, after any renewal in flight (which would re-add it)."""
    try:
        while not ended.is_set():
            try:
                await asyncio.wait_for(ended.wait(), ctx.settings.log_stream_heartbeat_seconds)
            except asyncio.TimeoutError:
                await threads.run(logs.keep_stream, ctx, tenant_id, stream_id)
    finally:
        await threads.run(logs.close_stream, ctx, tenant_id, stream_id)


async def _patiently(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on the service's threads for a log stream: while something it needs is away
    (:class:`Unavailable`), wait and ask again, as the stream waits for new lines."""
    while True:
        try:
            return await threads.run(fn, *args, **kwargs)
        except Unavailable:
            await asyncio.sleep(STREAM_POLL_SECONDS)


@router.get("/jobs/{job_id}/results", response_model=Results)
async def list_results(job_id: uuid.UUID, request: Request, caller: Caller = Depends(tenant_only), ctx: Context = Depends(context)):
    body = await threads.run(results.listing, ctx, str(job_id), caller.tenant_id)
    for f in body["files"]:
        f["url"] = f["url"] or str(request.url_for("download_result", job_id=str(job_id), path=f["name"]))
    return body


@router.get("/jobs/{job_id}/results/{path:path}", name="download_result",
            responses={**GONE, 200: {"content": {"application/octet-stream": {}}}})
async def download_result(job_id: uuid.UUID, path: str, caller: Caller = Depends(tenant_only), ctx: Context = Depends(context)):
    entry, chunks = await threads.run(results.download, ctx, str(job_id), caller.tenant_id, path)
    filename = Path(path).name.replace('"', "")
    return StreamingResponse(
        _iterate_in_thread(chunks),
        media_type="application/octet-stream",
        headers={"Content-Length": str(entry["size"]), "Content-Disposition": f'attachment; filename="{filename}"', "Digest": f"sha-256={entry['sha256']}"},
    )


async def _iterate_in_thread(chunks):
    sentinel = object()
    while (chunk := await threads.run(next, chunks, sentinel)) is not sentinel:
        yield chunk


def _status_payload(job: dict) -> dict:
    return {k: job[k] for k in ("status", "exit_code", "error", "finished_at")} | {"job_id": str(job["job_id"])}


def _jsonable(data: dict) -> dict:
    return jsonable_encoder(data)


@router.delete("/jobs/{job_id}/data", response_model=Job, responses={
    409: {"description": "The job has not finished (the detail names its state)"}})
async def delete_job_data(job_id: uuid.UUID, caller: Caller = Depends(tenant_only), ctx: Context = Depends(context)):
    """Delete a finished job's input, results and log wherever they are kept; the job's row stays and says when
    (``data_deleted_at``).  Its log and result downloads then answer 410.  Repeating it is harmless."""
    row = await threads.run(retention.delete_job_data, ctx, caller.tenant_id, str(job_id))
    return job_json(row)
