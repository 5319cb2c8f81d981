"""Internal: a collector pod's uploads of a finished job's files (``PUT /internal/jobs/{id}/files/{name}``).

Not for tenants: the caller presents the job's collect token (core.collect_tokens), which only the worker that
starts the job's collector pod hands out.  Left out of the OpenAPI schema.  The body streams into the result
store (core.services.collect_uploads) on the upload threads of api.request_body.
"""
from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.convertors import PathConvertor, register_url_convertor

from api.deps import context
from api.request_body import run_with_body
from core.services import collect_uploads
from core.services.context import Context

class AnyName(PathConvertor):
    """Any rest of the path, line breaks included, so that every name reaches the check (and its 422)."""

    regex = "(?s:.*)"


register_url_convertor("anyname", AnyName())
router = APIRouter(tags=["internal"], include_in_schema=False)


@router.put("/internal/jobs/{job_id}/files/{name:anyname}")
async def upload_file(job_id: uuid.UUID, name: str, request: Request, ctx: Context = Depends(context)):
    authorization = request.headers.get("authorization") or ""
    token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise HTTPException(status_code=400, detail="Content-Length must be a number of bytes")
    length = int(declared) if declared is not None else None
    return await run_with_body(request, collect_uploads.receive, ctx, str(job_id), name, token, length)
