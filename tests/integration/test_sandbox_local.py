"""The local executor's sandbox through the real service: hostile scenarios submitted as a tenant would,
the host checked afterwards; one uid per slot; LOCAL_SANDBOX=off reported; a worker that cannot
sandbox refuses to start.

Validation is tightened elsewhere, so a hostile case may be refused up front: then the answer is a 4xx
naming the option.  Otherwise the job ends, and on the host nothing was created or read outside the
run, no secret of the service reached the tenant, and nothing of the run is left running.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from core.executors.local_process import pids_of_uid
from core.executors.local_slots import UID_POOL_SIZE
from tests.hostile.fixtures import assert_nothing_came_back, corpus_fixtures, require_root
from tests.hostile.scenarios import describe, leaked_paths, names_an_option, secrets_in
from tests.integration.harness import Api, long_square, wait_until

TOKEN, listener, cases = corpus_fixtures("hs")
UID_BASE = 1_900_000_000   # LOCAL_SANDBOX_UID_BASE's default


@pytest.fixture(scope="module")
def hostile_stack(make_stack):
    """The caps small enough for the disk-fill and log-flood cases to reach them in seconds."""
    require_root()
    return make_stack("hostile", **describe()[1])


SANDBOX_UIDS = range(UID_BASE, UID_BASE + UID_POOL_SIZE)   # the uids runs lease


def _run_processes(stack) -> list[int]:
    return pids_of_uid(SANDBOX_UIDS)


@pytest.mark.parametrize("name", describe()[0])
def test_a_hostile_scenario_through_the_service(name, hostile_stack, cases, listener):
    stack, case = hostile_stack, cases[name]
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register()
    secrets = [stack.env["ADMIN_KEY"], stack.env["DATABASE_URL"], stack.env["REDIS_URL"]]
    r = api.submit(tenant, case.archive, config_file=case.config_file, memory=case.memory_gi)
    if 400 <= r.status_code < 500:
        assert names_an_option(r.json()["detail"] if isinstance(r.json().get("detail"), str) else r.text,
                               case.options), r.text
        assert secrets_in([r.text], secrets) == []
        return
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    job = api.wait_status(tenant, job_id, timeout=case.timeout)
    if case.must_fail:
        assert job["status"] == "FAILED" and case.must_fail in job["error"], job
    if case.sentinels:  # a valid network or additional file on the host: read, the run would have succeeded
        assert job["status"] == "FAILED", job
    results = api.wait_results(tenant, job_id)

    # Nothing of the run is left running.
    assert wait_until(lambda: not _run_processes(stack), 30, "the run's processes to end")

    # Nothing named after the token outside the runs and the result store.
    work = stack.data_dir / "work"
    allowed = [stack.data_dir / "storage", *work.glob("*/run"), *work.glob("*/stats")]
    assert leaked_paths(TOKEN, roots=[Path("/"), Path("/tmp"), Path.home()], deep=[stack.data_dir],
                        allowed=allowed) == []

    assert_nothing_came_back(api, tenant, job, results, secrets, case, listener)


def test_each_slot_runs_as_its_own_uid_and_a_cancel_leaves_nothing(make_stack):
    """Two runs at once (two slots, two simulation worker processes) run under two different uids of
    the sandbox range, not as the worker's user; cancelled, no process of either uid remains."""
    require_root()
    stack = make_stack("slot-uids", LOCAL_MAX_PARALLEL="2")
    stack.start_simulation_workers(name="simulations-2", threads=1)
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register()
    jobs = [api.submit_ok(tenant, long_square()) for _ in range(2)]
    for job_id in jobs:
        api.wait_status(tenant, job_id, "RUNNING", timeout=60)

    def sumo_uids():
        uids = set()
        for pid in pids_of_uid(SANDBOX_UIDS):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sumo":
                    uids.add(os.stat(f"/proc/{pid}").st_uid)
            except OSError:
                continue
        return len(uids) == 2 and uids

    uids = wait_until(sumo_uids, 60, "two sumo processes under two sandbox uids")
    for job_id in jobs:
        assert api.http.delete(f"/jobs/{job_id}", headers=api.auth(tenant)).status_code == 200
    for job_id in jobs:
        assert api.wait_status(tenant, job_id, "CANCELLED", timeout=60)["status"] == "CANCELLED"
        api.wait_results(tenant, job_id)
    assert wait_until(lambda: not pids_of_uid(range(min(uids), max(uids) + 1)), 30, "the runs' processes to end")


def test_ready_says_whether_simulations_are_sandboxed(stack, make_stack):
    on = Api(stack.url, stack.env["ADMIN_KEY"]).http.get("/ready")
    assert on.status_code == 200 and on.json()["checks"]["sandbox"] == "ok", on.text

    off_stack = make_stack("sandbox-off", LOCAL_SANDBOX="off")
    api = Api(off_stack.url, off_stack.env["ADMIN_KEY"])
    off = api.http.get("/ready")
    assert off.status_code == 200, "a deliberate choice, not a failure"
    assert off.json()["checks"]["sandbox"] == "off (LOCAL_SANDBOX=off): simulations are not confined"
    tenant = api.register()
    job = api.wait_status(tenant, api.submit_ok(tenant, "square.zip"), timeout=120)
    assert job["status"] == "SUCCEEDED", job


def test_a_simulation_worker_that_cannot_sandbox_refuses_to_start(stack):
    """bwrap missing (PATH without it): the worker exits at boot with one line naming the way out."""
    proc = stack.proc("simulations-no-bwrap", [sys.executable, "-m", "dramatiq", "workers.actors", "--processes", "1",
                                               "--threads", "1", "--queues", "simulations"], PATH="/nonexistent")
    proc.start()
    wait_until(lambda: proc.process.poll() is not None, 120, "the worker without bwrap to exit")
    assert proc.process.returncode != 0
    lines = [line for line in proc.log_path.read_text().splitlines() if "cannot be sandboxed" in line]
    assert len(lines) == 1, lines
    assert "bwrap" in lines[0] and "LOCAL_SANDBOX=off" in lines[0]
