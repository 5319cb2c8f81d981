"""Refuse oversized uploads while they stream in, before anything is buffered.

An ASGI middleware rather than a check in the handler: by the time a
FastAPI handler runs, the multipart body has already been read.  A declared
``Content-Length`` over the limit is refused at once; otherwise bytes are
counted as they arrive and reading stops with 413 at the limit (FastAPI
passes an HTTPException raised while reading the body through unchanged).
"""
from __future__ import annotations

import json

from fastapi import HTTPException

MULTIPART_SLACK = 64 * 1024  # form fields and boundaries around the file
#: Paths whose bodies another limit bounds: a collector pod's result uploads (MAX_OUTPUT_MB, MAX_LOG_MB;
#: core.services.collect_uploads).
EXEMPT_PREFIXES = ("/internal/",)


class BodySizeLimit:
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limit = max_bytes + MULTIPART_SLACK
        self.message = f"upload exceeds MAX_FILE_SIZE_MB ({max_bytes // (1024 * 1024)} MB)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH") \
                or scope["path"].startswith(EXEMPT_PREFIXES):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            body = json.dumps({"detail": self.message}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(status_code=413, detail=self.message)
            return message

        await self.app(scope, counting_receive, send)
