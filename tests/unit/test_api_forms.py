"""The POST /jobs form reader (api.forms) on crafted bodies, delivered in chunks as a server would."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from api import forms

FIELDS = {"scenario_id": "s", "cpu_request": "2", "memory_gi": "3"}


def encoded(data: dict, files: dict | None = None) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/jobs", data=data, files=files)
    return request.read(), request.headers["content-type"]


def request_of(body: bytes, content_type: str, chunk: int = 1000) -> Request:
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]

    async def receive():
        piece = pieces.pop(0) if pieces else b""
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    scope = {"type": "http", "method": "POST", "path": "/jobs", "query_string": b"",
             "headers": [(b"content-type", content_type.encode())]}
    return Request(scope, receive)


def read(body: bytes, content_type: str, chunk: int = 1000):
    return asyncio.run(forms.read_job_form(request_of(body, content_type, chunk)))


def refusal(body: bytes, content_type: str):
    with pytest.raises((HTTPException, RequestValidationError)) as caught:
        read(body, content_type)
    return caught.value


def test_fields_and_archive():
    archive = bytes(range(256)) * 40
    form, spooled = read(*encoded({**FIELDS, "config_file": "a/b.sumocfg"}, {"sumo_files": ("s.zip", archive, "application/zip")}), chunk=97)
    with spooled:
        assert (form.scenario_id, form.cpu_request, form.memory_gi, form.config_file) == ("s", 2, 3, "a/b.sumocfg")
        assert spooled.read() == archive


def test_large_archive_goes_to_disk_intact():
    archive = bytes(range(256)) * 8192  # 2 MiB: over the in-memory spool
    form, spooled = read(*encoded(FIELDS, {"sumo_files": ("s.zip", archive, "application/zip")}), chunk=64 * 1024)
    with spooled:
        assert spooled._rolled
        assert spooled.read() == archive


def test_empty_config_file_means_not_given():
    form, spooled = read(*encoded({**FIELDS, "config_file": ""}, {"sumo_files": ("s.zip", b"PK", "application/zip")}))
    spooled.close()
    assert form.config_file is None


def test_repeated_field_last_one_counts():
    boundary = "b0undary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in [("scenario_id", "first"), ("scenario_id", "second"), ("cpu_request", "1"), ("memory_gi", "1")]
    ) + (f'--{boundary}\r\nContent-Disposition: form-data; name="sumo_files"; filename="s.zip"\r\n\r\nPK\r\n--{boundary}--\r\n').encode()
    form, spooled = read(body, f"multipart/form-data; boundary={boundary}")
    spooled.close()
    assert form.scenario_id == "second"


@pytest.mark.parametrize("field, value", [("cpu_request", "0"), ("cpu_request", "1.5"), ("cpu_request", ""),
                                          ("memory_gi", "10001"), ("scenario_id", ""), ("scenario_id", "a\x00b"),
                                          ("config_file", "x" * 501)])
def test_invalid_field_is_a_validation_error_naming_it(field, value):
    error = refusal(*encoded({**FIELDS, field: value}, {"sumo_files": ("s.zip", b"PK", "application/zip")}))
    assert isinstance(error, RequestValidationError)
    assert [e["loc"] for e in error.errors()] == [("body", field)]


def test_missing_fields_are_all_named():
    error = refusal(*encoded({"scenario_id": "s"}, {"other": ("x.txt", b"x", "text/plain")}))
    assert sorted(e["loc"][1] for e in error.errors()) == ["cpu_request", "memory_gi", "sumo_files"]


def test_archive_sent_as_text_is_refused():
    error = refusal(*encoded({**FIELDS, "sumo_files": "not a file"}, {"x": ("x", b"x", "text/plain")}))
    assert [(e["loc"], e["msg"]) for e in error.errors()] == [(("body", "sumo_files"), "Expected a file upload (a part with a filename)")]


def test_url_encoded_form_names_the_missing_archive():
    error = refusal(b"scenario_id=s&cpu_request=1&memory_gi=1&sumo_files=x", "application/x-www-form-urlencoded")
    assert [e["loc"] for e in error.errors()] == [("body", "sumo_files")]


def test_invalid_utf8_is_reported_once():
    body, content_type = encoded(FIELDS, {"sumo_files": ("s.zip", b"PK", "application/zip")})
    body = body.replace(b"\r\n\r\ns\r\n", b"\r\n\r\n\xff\xfe\r\n", 1)
    error = refusal(body, content_type)
    assert [(e["loc"], e["type"]) for e in error.errors()] == [(("body", "scenario_id"), "string_unicode")]


def test_other_content_type_is_415():
    error = refusal(b'{"scenario_id": "s"}', "application/json")
    assert error.status_code == 415 and "multipart/form-data" in error.detail


def test_truncated_body_is_400():
    body, content_type = encoded(FIELDS, {"sumo_files": ("s.zip", b"PK" * 100, "application/zip")})
    error = refusal(body[:-60], content_type)
    assert error.status_code == 400 and "not well-formed" in error.detail


def test_missing_boundary_is_400():
    assert refusal(b"x", "multipart/form-data").status_code == 400


def test_oversized_text_field_is_413():
    error = refusal(*encoded({**FIELDS, "scenario_id": "x" * (forms.MAX_TEXT_FIELD_BYTES + 1)}, {"sumo_files": ("s.zip", b"PK", "application/zip")}))
    assert error.status_code == 413 and "scenario_id" in error.detail


def test_a_flood_of_parts_is_413():
    files = [("f", (f"{i}.txt", b"x", "text/plain")) for i in range(forms.MAX_PARTS + 1)]
    error = refusal(*encoded(FIELDS, files))
    assert error.status_code == 413


def test_openapi_documents_every_field():
    schema = forms.OPENAPI["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(schema["properties"]) == {"scenario_id", "cpu_request", "memory_gi", "config_file", "sumo_files"}
    assert set(schema["required"]) == {"scenario_id", "cpu_request", "memory_gi", "sumo_files"}
    assert schema["properties"]["sumo_files"]["format"] == "binary"
    assert schema["properties"]["cpu_request"]["minimum"] == 1
