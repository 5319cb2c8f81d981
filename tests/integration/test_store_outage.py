"""The object store away: what needs it answers 503 naming it, and a run ending meanwhile keeps its results.

The stack keeps its archives and results in S3: moto's server, a real process, stopped and then started again
on its port.  moto keeps everything in memory, so the restarted server has lost the bucket and what was in it;
the test creates the bucket again, as S3 coming back would still have it (a job's input is not needed again
once its run has started).
"""
from __future__ import annotations

import hashlib
import uuid

import boto3

from devstack import emulators
from tests.integration.harness import Api, long_square, wait_until


def _s3_env(emu: emulators.Emulator, bucket: str) -> dict:
    return {"RESULT_STORAGE_TYPE": "s3", "S3_ENDPOINT_URL": emu.endpoint, "S3_BUCKET": bucket,
            "AWS_ACCESS_KEY_ID": emulators.S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": emulators.S3_SECRET_KEY}


def _create_bucket(emu: emulators.Emulator, bucket: str) -> None:
    boto3.session.Session().client(
        "s3", endpoint_url=emu.endpoint, region_name="us-east-1",
        aws_access_key_id=emulators.S3_ACCESS_KEY, aws_secret_access_key=emulators.S3_SECRET_KEY,
    ).create_bucket(Bucket=bucket)


def test_store_away_refuses_what_needs_it_and_loses_no_results(make_stack):
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    emu = emulators.start_s3()
    stack = make_stack("store-outage", **_s3_env(emu, bucket))
    try:
        api = Api(stack.url, stack.env["ADMIN_KEY"])
        tenant = api.register()
        done = api.submit_ok(tenant, "square.zip")
        api.wait_status(tenant, done, "SUCCEEDED", timeout=120)
        api.wait_results(tenant, done)
        running = api.submit_ok(tenant, long_square(end=40000))  # runs for a few seconds
        api.wait_status(tenant, running, "RUNNING", timeout=60)  # its input is fetched: the run needs no store

        port = emu.port
        emu.stop()

        # A submission stores its archive first: refused with 503, and nothing of it is left behind.
        newcomer = api.register()
        refused = api.submit(newcomer, "square.zip", idempotency_key="during-the-outage")
        assert refused.status_code == 503, refused.text
        assert "the S3 result store cannot be reached" in refused.json()["detail"]
        assert refused.headers["Retry-After"].isdigit()
        assert api.http.get("/jobs", headers=api.auth(newcomer)).json()["jobs"] == []
        # Reads of what is in the store: 503 too.
        for path in (f"/jobs/{done}/results/sumo.log", f"/jobs/{done}/logs"):
            read = api.http.get(path, headers=api.auth(tenant))
            assert read.status_code == 503 and "S3" in read.json()["detail"], (path, read.text)
            assert read.headers["Retry-After"].isdigit()

        # The run ends while the store is away: its collection fails, and is retried.  Until its results are
        # stored the job says it is collecting, not SUCCEEDED.
        collecting = api.wait_status(tenant, running, "COLLECTING", timeout=120)
        assert collecting["outcome"] == "SUCCEEDED" and collecting["exit_code"] == 0
        workers_log = stack.data_dir / "logs" / "workers.log"
        wait_until(lambda: "the S3 result store cannot be reached" in workers_log.read_text(errors="replace"),
                   60, "a collection of the results meeting the outage")
        listed = api.http.get(f"/jobs/{running}/results", headers=api.auth(tenant)).json()
        assert not listed["collected"] and listed["files"] == []
        assert api.job(tenant, running)["status"] == "COLLECTING"

        emu = emulators.start_s3(port=port)
        _create_bucket(emu, bucket)

        results = api.wait_results(tenant, running, timeout=120)
        assert {"sumo.log", "sumo-statistics.xml"} <= {f["name"] for f in results["files"]}
        assert api.job(tenant, running)["status"] == "SUCCEEDED"
        for f in results["files"]:
            got = api.http.get(f"/jobs/{running}/results/{f['name']}", headers=api.auth(tenant))
            assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == f["sha256"], f["name"]
        assert api.job(tenant, running)["kpis"]["vehicles_loaded"] > 0
        # The refused submission, repeated with its Idempotency-Key, now goes through.
        again = api.submit(newcomer, "square.zip", idempotency_key="during-the-outage")
        assert again.status_code == 202, again.text
        assert [j["job_id"] for j in api.http.get("/jobs", headers=api.auth(newcomer)).json()["jobs"]] == [
            again.json()["job_id"]]
    finally:
        stack.stop()
        emu.stop()
