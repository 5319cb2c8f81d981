"""The whole flow with results in S3, GCS and Azure Blob — each a real emulator server process."""
from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest

from devstack import emulators
from tests.integration.harness import Api


def _env(backend: str, emu) -> dict:
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    if backend == "s3":
        return {"RESULT_STORAGE_TYPE": "s3", "S3_ENDPOINT_URL": emu.endpoint, "S3_BUCKET": bucket,
                "AWS_ACCESS_KEY_ID": emulators.S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": emulators.S3_SECRET_KEY}
    if backend == "gcs":
        return {"RESULT_STORAGE_TYPE": "gcs", "GCS_ENDPOINT_URL": emu.endpoint, "GCS_BUCKET": bucket}
    return {"RESULT_STORAGE_TYPE": "azure", "AZURE_CONNECTION_STRING": emu.connection_string, "AZURE_CONTAINER": bucket}


@pytest.mark.parametrize("backend", ["s3", "gcs", "azure"])
def test_results_in_object_storage(make_stack, backend):
    start = {"s3": emulators.start_s3, "gcs": emulators.start_gcs, "azure": emulators.start_azurite}[backend]
    with start() as emu:
        stack = make_stack(f"store-{backend}", **_env(backend, emu))
        try:
            api = Api(stack.url, stack.env["ADMIN_KEY"])
            tenant = api.register()
            job_id = api.submit_ok(tenant, "square.zip")
            api.wait_status(tenant, job_id, "SUCCEEDED", timeout=120)
            results = api.wait_results(tenant, job_id)
            assert api.job(tenant, job_id)["kpis"]["vehicles_loaded"] == 80
            assert results["storage_type"] == backend
            assert {"sumo.log", "sumo-statistics.xml"} <= {f["name"] for f in results["files"]}
            for f in results["files"]:
                # Through the API, and through the listed URL (a presigned one where the store can sign).
                via_api = api.http.get(f"/jobs/{job_id}/results/{f['name']}", headers=api.auth(tenant))
                assert via_api.status_code == 200 and hashlib.sha256(via_api.content).hexdigest() == f["sha256"]
                if not f["url"].startswith(stack.url):
                    direct = httpx.get(f["url"], timeout=30)
                    assert direct.status_code == 200 and hashlib.sha256(direct.content).hexdigest() == f["sha256"]
            # The log outlives the work directory: it is read back from the object store.
            assert "Simulation ended" in api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).json()["logs"]
        finally:
            stack.stop()
