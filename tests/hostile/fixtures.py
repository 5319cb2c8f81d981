"""The corpus's fixtures, for every tier that runs it: raw in the sandbox (tests/hostile), through the
local service (tests/integration/test_sandbox_local.py) and on the dev cluster (tests/kube)."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.hostile.scenarios import corpus, listening_socket, secrets_in


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox gives each run a uid of its own, which needs root")


def corpus_fixtures(prefix: str):
    """``(token, listener, cases)`` for a test module: a token the cases' paths are named after (the host
    checks look for it), a listening socket nothing may connect to, and the cases by name (their sentinel
    files in /tmp removed afterwards).  Assign them to module globals of these names."""
    token = prefix + uuid.uuid4().hex[:10]

    @pytest.fixture(scope="module")
    def listener():
        sock = listening_socket()
        yield sock
        sock.close()

    @pytest.fixture(scope="module")
    def cases(listener):
        built = {c.name: c for c in corpus(token, sentinel_dir=Path("/tmp"), port=listener.getsockname()[1])}
        yield built
        for path in Path("/tmp").glob(f"{token}-sentinel.*"):
            path.unlink()

    return token, listener, cases


def assert_nothing_came_back(api, tenant: dict, job: dict, results: dict, secrets, case, listener) -> None:
    """Through the service: no secret of it in what the tenant gets back (the job's status, its log, its
    results' names and contents), and nothing connected to the listener."""
    texts = [json.dumps(job), api.http.get(f"/jobs/{job['job_id']}/logs", headers=api.auth(tenant)).text]
    for f in results["files"]:
        texts.append(f["name"])
        got = api.http.get(f"/jobs/{job['job_id']}/results/{f['name']}", headers=api.auth(tenant))
        assert got.status_code == 200, got.text
        texts.append(got.content.decode(errors="replace"))
    assert secrets_in(texts, secrets) == []
    if case.listener:
        with pytest.raises(BlockingIOError):
            listener.accept()
