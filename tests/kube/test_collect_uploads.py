"""``PUT /internal/jobs/{id}/files/{name}``, the collector pods' upload endpoint, on a running service (the
receiver stack): what it takes, and every refusal with a 4xx naming why and nothing stored on the host or
recorded in the database."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from core.collect_tokens import job_token, token_key
from core.executors.base import JobSpec
from tests.integration.harness import wait_until
from tests.kube.conftest import RECEIVER_MAX_LOG_MB, RECEIVER_MAX_OUTPUT_MB

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]
MB = 1024 * 1024


def new_spec() -> JobSpec:
    suffix = uuid.uuid4().hex[:8]
    return JobSpec(job_id=str(uuid.uuid4()), tenant_id=f"up{suffix}", namespace=f"sumo-up{suffix}", cpu_request=1,
                   memory_gi=1, config_file="a.sumocfg", input_key="inputs/x.zip", deadline_seconds=60)


def token(receiver, job_id: str) -> str:
    return job_token(token_key("", receiver.admin_key), job_id)


def files_on_disk(receiver) -> set[Path]:
    root = Path(receiver.ctx.settings.storage_root)
    return {p for p in root.rglob("*") if p.is_file()}


def put_raw(receiver, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict]:
    """A PUT as the collector sends it (Expect: 100-continue, the body only once the server asks for it), with the
    path as given (no client normalises ``..`` away) and any Content-Length, true or not."""
    url = urlsplit(receiver.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": url.netloc, "Expect": "100-continue",
                                                     "Connection": "close", **headers}.items())
        sock.sendall(f"PUT {path} HTTP/1.1\r\n{head}\r\n".encode())
        f = sock.makefile("rb")
        status = int(f.readline().split()[1])
        while f.readline() not in (b"\r\n", b""):
            pass
        if status == 100:
            sock.sendall(body)
            status = int(f.readline().split()[1])
            while f.readline() not in (b"\r\n", b""):
                pass
        data = f.read()
    return status, json.loads(data or b"{}")


def upload(receiver, spec: JobSpec, name: str, body: bytes, tok: str | None = "own") -> httpx.Response:
    headers = {} if tok is None else {"Authorization": f"Bearer {token(receiver, spec.job_id) if tok == 'own' else tok}"}
    return httpx.put(f"{receiver.url}/internal/jobs/{spec.job_id}/files/{name}", content=body, headers=headers,
                     timeout=60)


def test_a_collecting_job_takes_its_files_and_a_reupload_replaces(receiver):
    spec = new_spec()
    receiver.expect(spec)
    first = os.urandom(3 * MB)
    r = upload(receiver, spec, "out/trips.xml", first)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "out/trips.xml", "size": len(first), "sha256": hashlib.sha256(first).hexdigest()}
    assert receiver.store.get_bytes(spec.result_prefix + "out/trips.xml") == first
    again = b"<trips/>"
    assert upload(receiver, spec, "out/trips.xml", again).status_code == 200  # idempotent: the collector may retry
    assert receiver.store.get_bytes(spec.result_prefix + "out/trips.xml") == again
    assert receiver.uploads(spec.job_id) == {"out/trips.xml": {"size": 8, "sha256": hashlib.sha256(again).hexdigest()}}
    # a name with spaces and escapes arrives as it was on the volume
    assert upload(receiver, spec, "a%20b%25c.xml", b"x").json()["name"] == "a b%c.xml"

    cancelled = new_spec()  # a cancelled job's log and outputs follow its CANCELLED
    receiver.expect(cancelled, status="CANCELLED")
    assert upload(receiver, cancelled, "sumo.log", b"log\n").status_code == 200


@pytest.mark.parametrize("tok, status, says", [
    (None, 401, "needs 'Authorization: Bearer"),
    ("0" * 64, 403, "not valid for job"),
    ("another job's", 403, "not valid for job"),
])
def test_an_upload_without_the_jobs_own_token_is_refused(receiver, tok, status, says):
    spec = new_spec()
    receiver.expect(spec)
    if tok == "another job's":
        other = new_spec()
        receiver.expect(other)
        tok = token(receiver, other.job_id)
    before = files_on_disk(receiver)
    r = upload(receiver, spec, "out.xml", b"<x/>", tok=tok)
    assert r.status_code == status and says in r.json()["detail"], r.text
    assert files_on_disk(receiver) == before and receiver.uploads(spec.job_id) == {}


@pytest.mark.parametrize("raw_name", ["../escaped.xml", "%2E%2E/escaped.xml", "sub/%2E%2E/%2E%2E/escaped.xml",
                                      "/etc/passwd", "a%5Cb.xml", "dir/", "bad%00name", "line%0Abreak"])
def test_an_unsafe_name_is_refused(receiver, raw_name):
    spec = new_spec()
    receiver.expect(spec)
    before = files_on_disk(receiver)
    status, body = put_raw(receiver, f"/internal/jobs/{spec.job_id}/files/{raw_name}",
                           {"Authorization": f"Bearer {token(receiver, spec.job_id)}", "Content-Length": "4"}, b"evil")
    assert status == 422 and "is not a plain relative file name" in body["detail"], body
    assert files_on_disk(receiver) == before and receiver.uploads(spec.job_id) == {}
    root = Path(receiver.ctx.settings.storage_root)
    assert not (root / "results" / spec.tenant_id / "escaped.xml").exists() and not (root / "escaped.xml").exists()


@pytest.mark.parametrize("status, collected, code, says", [
    ("RUNNING", False, 409, "its run is not over"),
    ("SUCCEEDED", True, 409, "its results are recorded already"),
    ("CANCELLED", True, 409, "its results are recorded already"),
    (None, False, 404, "not found"),
])
def test_a_job_that_is_not_collecting_takes_no_upload(receiver, status, collected, code, says):
    spec = new_spec()
    if status is not None:
        receiver.expect(spec, status=status, collected=collected)
    before = files_on_disk(receiver)
    r = upload(receiver, spec, "sumo.log", b"late\n")
    assert r.status_code == code and says in r.json()["detail"], r.text
    assert files_on_disk(receiver) == before


def test_bodies_past_the_caps_are_refused_before_they_are_sent(receiver):
    spec = new_spec()
    receiver.expect(spec)
    auth = {"Authorization": f"Bearer {token(receiver, spec.job_id)}"}
    path = f"/internal/jobs/{spec.job_id}/files/"
    before = files_on_disk(receiver)

    status, body = put_raw(receiver, path + "fcd.xml", {**auth, "Content-Length": str(RECEIVER_MAX_OUTPUT_MB * MB + 1)})
    assert status == 413 and "MAX_OUTPUT_MB" in body["detail"], body
    status, body = put_raw(receiver, path + "sumo.log", {**auth, "Content-Length": str(RECEIVER_MAX_LOG_MB * MB + 1)})
    assert status == 413 and "MAX_LOG_MB" in body["detail"], body
    assert files_on_disk(receiver) == before and receiver.uploads(spec.job_id) == {}

    # the cap holds for all of a run's outputs together, the log apart
    most = os.urandom((RECEIVER_MAX_OUTPUT_MB - 1) * MB)
    assert upload(receiver, spec, "most.bin", most).status_code == 200
    assert upload(receiver, spec, "sumo.log", b"x" * MB).status_code == 200
    status, body = put_raw(receiver, path + "more.bin", {**auth, "Content-Length": str(2 * MB)})
    assert status == 413 and "MAX_OUTPUT_MB" in body["detail"] and f"{len(most)} bytes received already" in body["detail"]
    assert not receiver.store.exists(spec.result_prefix + "more.bin") and set(receiver.uploads(spec.job_id)) == \
        {"most.bin", "sumo.log"}
    # replacing a file counts its new size, not both
    assert upload(receiver, spec, "most.bin", most[:MB]).status_code == 200


def test_a_body_without_a_length_or_shorter_than_it_is_refused(receiver):
    spec = new_spec()
    receiver.expect(spec)
    before = files_on_disk(receiver)
    chunked = httpx.put(f"{receiver.url}/internal/jobs/{spec.job_id}/files/out.xml", content=iter([b"a", b"b"]),
                        headers={"Authorization": f"Bearer {token(receiver, spec.job_id)}"}, timeout=30)
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["detail"]

    # a collector that dies halfway: the body ends before its Content-Length
    url = urlsplit(receiver.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(f"PUT /internal/jobs/{spec.job_id}/files/cut.xml HTTP/1.1\r\nHost: {url.netloc}\r\n"
                     f"Authorization: Bearer {token(receiver, spec.job_id)}\r\nContent-Length: {MB}\r\n\r\n".encode()
                     + b"x" * 1000)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(65536)  # whatever it answers, if anything, once it has seen the end
    # the server may close the connection before its upload thread has dropped the partial object
    wait_until(lambda: files_on_disk(receiver) == before, 30, "the cut upload's partial object removed")
    assert receiver.uploads(spec.job_id) == {}
