"""Test-side helpers: an API client bound to a running stack, and bounded waits."""
from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import httpx

from devstack.services import wait_for as wait_until  # noqa: F401 — the one bounded poll, re-exported for tests

ZIPS = Path(__file__).resolve().parents[2] / "test_networks" / "zips"


def long_square(end: int = 1_000_000_000) -> bytes:
    """square.zip simulating ``end`` seconds; by default (10⁹ s) far longer than any test waits, its
    vehicles keep coming: 40000 s run for a few seconds."""
    buf = io.BytesIO()
    with zipfile.ZipFile(ZIPS / "square.zip") as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".sumocfg"):
                data = data.replace(b'<end value="100"/>', f'<end value="{end}"/>'.encode())
                assert str(end).encode() in data
            dst.writestr(info.filename, data)
    return buf.getvalue()


def log_lines(text: str) -> list[str]:
    """A log's non-blank lines, to compare logs that travelled by SSE (which carries a CR as a line break)."""
    return [line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line.strip()]


TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


class Api:
    def __init__(self, base_url: str, admin_key: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=60)
        self.admin_key = admin_key

    @property
    def admin(self) -> dict:
        return {"X-Admin-Key": self.admin_key}

    def register(self, tenant_id: str | None = None, **limits) -> dict:
        tenant_id = tenant_id or f"t-{uuid.uuid4().hex[:10]}"
        body = {"tenant_id": tenant_id, "max_cpu": 8, "max_memory_gi": 16, "max_concurrent_jobs": 4, **limits}
        r = self.http.post("/auth/register", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()

    @staticmethod
    def auth(tenant: dict) -> dict:
        return {"Authorization": f"Bearer {tenant['api_key']}"}

    def submit(self, tenant: dict, archive: bytes | Path | str = "square.zip", *, cpu: int = 1, memory: int = 1,
               config_file: str | None = None, idempotency_key: str | None = None, scenario_id: str = "test") -> httpx.Response:
        if isinstance(archive, str):
            archive = ZIPS / archive
        data = archive.read_bytes() if isinstance(archive, Path) else archive
        form = {"scenario_id": scenario_id, "cpu_request": str(cpu), "memory_gi": str(memory)}
        if config_file:
            form["config_file"] = config_file
        headers = self.auth(tenant)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self.http.post("/jobs", data=form, files={"sumo_files": ("scenario.zip", io.BytesIO(data), "application/zip")}, headers=headers)

    def submit_ok(self, tenant: dict, archive="square.zip", **kw) -> str:
        r = self.submit(tenant, archive, **kw)
        assert r.status_code == 202, r.text
        return r.json()["job_id"]

    def job(self, tenant: dict, job_id: str) -> dict:
        r = self.http.get(f"/jobs/{job_id}", headers=self.auth(tenant))
        assert r.status_code == 200, r.text
        return r.json()

    def wait_status(self, tenant: dict, job_id: str, statuses=TERMINAL, timeout: float = 120) -> dict:
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        return wait_until(lambda: (j := self.job(tenant, job_id))["status"] in statuses and j, timeout, f"job {job_id} in {statuses}")

    def wait_results(self, tenant: dict, job_id: str, timeout: float = 60) -> dict:
        def collected():
            r = self.http.get(f"/jobs/{job_id}/results", headers=self.auth(tenant))
            assert r.status_code == 200, r.text
            return r.json()["collected"] and r.json()

        return wait_until(collected, timeout, f"results of {job_id}")
