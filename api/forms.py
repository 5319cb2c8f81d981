"""The body of ``POST /jobs``: a multipart form, parsed as it streams in and validated by one model.

FastAPI's ``Form()`` / ``File()`` parameters cost about 0.35 ms more CPU per
submission than this module (Starlette's form parser, then one validation
per field; measured through the ASGI app with square.zip, 0.61 against 0.25
ms per request), close to a tenth of the API's work for a submission.  This
module reads the body with the push parser of the ``multipart`` package and
validates the text fields with one pydantic model, :class:`JobForm`.  The
endpoint's OpenAPI request body (:data:`OPENAPI`) is generated from the same
model, so what clients and the schema fuzzer see is what is enforced.

Refusals keep FastAPI's shape: a ``RequestValidationError`` (422, ``loc`` =
``("body", field)``) for a missing or invalid field, 400 for a body that is
not well-formed multipart, 415 for another content type.  The archive is
spooled as Starlette does (in memory up to 1 MiB, then a temporary file);
``MAX_FILE_SIZE_MB`` is enforced while it streams in by
:class:`api.limits.BodySizeLimit`.  Repeated fields: the last one counts, as
with Starlette's form data.
"""
from __future__ import annotations

import tempfile
import urllib.parse
from typing import BinaryIO

import multipart
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from api import threads

FILE_FIELD = "sumo_files"
#: In memory up to this size, then on disk (Starlette's UploadFile default).
SPOOL_BYTES = 1 << 20
#: A text field is a few bytes; a longer one is refused before it is buffered further.
MAX_TEXT_FIELD_BYTES = 64 * 1024
#: Five fields are defined; a few unknown ones are ignored, a flood of parts is refused.
MAX_PARTS = 64


class JobForm(BaseModel):
    """The text fields of a submission (the archive is the ``sumo_files`` part)."""

    scenario_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                             description="A name of yours; no control characters")
    cpu_request: int = Field(ge=1, le=1000)
    memory_gi: int = Field(ge=1, le=10_000)
    config_file: str | None = Field(None, max_length=500, description="Which .sumocfg to run when there are several")


def _request_body_schema() -> dict:
    schema = JobForm.model_json_schema()
    schema["title"] = "JobSubmission"
    schema["description"] = "The scenario archive and the resources to run it with."
    schema["properties"][FILE_FIELD] = {
        "type": "string", "format": "binary", "title": "Sumo Files",
        "description": "ZIP archive with the scenario and its .sumocfg",
    }
    schema["required"] = [*schema["required"], FILE_FIELD]
    return schema


#: ``openapi_extra`` of the endpoint: its request body, as FastAPI would have documented the fields.
OPENAPI = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _request_body_schema()}}}}


class _Parts:
    """Collects the parser's events: text fields as bytes, the archive in a spooled file."""

    def __init__(self) -> None:
        self.texts: dict[str, bytearray] = {}
        self.archive: tempfile.SpooledTemporaryFile | None = None
        self.archive_as_text = False
        self._sink: bytearray | tempfile.SpooledTemporaryFile | None = None
        self._name = ""

    async def feed(self, events) -> None:
        for event in events:
            if isinstance(event, multipart.MultipartSegment):
                self._start(event)
            elif event is None:
                self._sink = None
            elif isinstance(self._sink, bytearray):
                self._sink += event
                if len(self._sink) > MAX_TEXT_FIELD_BYTES:
                    raise HTTPException(413, f"form field {self._name!r} is longer than {MAX_TEXT_FIELD_BYTES} bytes")
            elif self._sink is not None:
                if getattr(self._sink, "_rolled", True):  # on disk by now: write off the event loop (as Starlette does)
                    await threads.run(self._sink.write, event)
                else:
                    self._sink.write(event)

    def _start(self, segment: multipart.MultipartSegment) -> None:
        self._name = segment.name or ""
        if segment.filename is None:
            self._sink = self.texts[self._name] = bytearray()
            self.archive_as_text = self.archive_as_text or self._name == FILE_FIELD
        elif self._name == FILE_FIELD:
            self.close()
            self._sink = self.archive = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        else:
            self._sink = None  # a file under another name: not ours, dropped

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()
            self.archive = None


async def read_job_form(request: Request) -> tuple[JobForm, BinaryIO]:
    """The validated fields and the archive (positioned at 0); the caller closes the archive."""
    media_type, options = multipart.parse_options_header(request.headers.get("content-type", ""))
    if media_type == "application/x-www-form-urlencoded":  # a form, but one that cannot carry the archive
        raise RequestValidationError(_checked(_url_encoded_parts(await request.body()))[1])
    if media_type != "multipart/form-data":
        raise HTTPException(415, f"the body must be multipart/form-data (fields {', '.join([*JobForm.model_fields, FILE_FIELD])}), not {media_type or 'untyped'}")
    if not options.get("boundary"):
        raise HTTPException(400, "the multipart/form-data Content-Type has no boundary")
    parts = _Parts()
    try:
        parser = multipart.PushMultipartParser(options["boundary"], max_segment_count=MAX_PARTS)
        async for chunk in request.stream():
            if chunk:
                await parts.feed(parser.parse(chunk))
        await parts.feed(parser.parse(b""))  # end of input: an incomplete body raises here
        form, errors = _checked(parts)
        if errors:
            raise RequestValidationError(errors)
        parts.archive.seek(0)
        return form, parts.archive
    except multipart.ParserLimitReached as exc:
        parts.close()
        raise HTTPException(413, f"the multipart body exceeds a limit ({exc})") from None
    except multipart.MultipartError as exc:
        parts.close()
        raise HTTPException(400, f"the multipart body is not well-formed ({exc})") from None
    except BaseException:
        parts.close()
        raise


def _url_encoded_parts(body: bytes) -> _Parts:
    parts = _Parts()
    for name, value in urllib.parse.parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
        parts.texts[name] = bytearray(value.encode("latin-1"))
        parts.archive_as_text = parts.archive_as_text or name == FILE_FIELD
    return parts


def _checked(parts: _Parts) -> tuple[JobForm | None, list[dict]]:
    """The form, and every refusal in FastAPI's shape (``loc`` = ``("body", field)``)."""
    errors: list[dict] = []
    values: dict[str, str] = {}
    for name in JobForm.model_fields:
        raw = parts.texts.get(name)
        if raw is None:
            continue
        try:
            values[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            errors.append({"type": "string_unicode", "loc": ("body", name), "msg": "Input should be valid UTF-8 text"})
    if values.get("config_file") == "":
        del values["config_file"]  # an empty optional field means "not given", as FastAPI reads forms
    undecodable = {e["loc"][1] for e in errors}
    form = None
    try:
        form = JobForm.model_validate(values)
    except ValidationError as exc:
        errors += [
            {**e, "loc": ("body", *e["loc"])}
            for e in exc.errors(include_url=False, include_context=False)
            if not (e["loc"] and e["loc"][0] in undecodable)  # already reported as not UTF-8
        ]
    if parts.archive is None:
        msg = "Expected a file upload (a part with a filename)" if parts.archive_as_text else "Field required"
        errors.append({"type": "missing", "loc": ("body", FILE_FIELD), "msg": msg})
    return form, errors
