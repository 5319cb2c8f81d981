"""The local executor's limits: the run deadline and the machine-wide simulation cap."""
from __future__ import annotations

from tests.integration.harness import Api, wait_until


def test_deadline_and_machine_wide_slot_cap(make_stack):
    # One simulation slot for the whole machine, a 3.6 s deadline (bologna-acosta needs longer).
    stack = make_stack("local-limits", LOCAL_MAX_PARALLEL="1", MAX_JOB_DURATION_HOURS="0.001")
    stack.start_simulation_workers(name="simulations-2", threads=1)  # a second process shares the same slot pool
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    a, b = api.register(), api.register()

    long_job = api.submit_ok(a, "bologna-acosta.zip")
    api.wait_status(a, long_job, "RUNNING", timeout=60)
    short_job = api.submit_ok(b, "square.zip")
    pending = api.wait_status(b, short_job, {"PENDING", "SUCCEEDED"}, timeout=60)
    assert pending["status"] == "PENDING", "the second process must wait for the single slot"
    assert "waiting for a free simulation slot" in pending["pending_reason"]

    failed = api.wait_status(a, long_job, "FAILED", timeout=120)
    assert failed["error"].startswith("DeadlineExceeded"), failed["error"]
    done = api.wait_status(b, short_job, "SUCCEEDED", timeout=120)
    assert done["pending_reason"] is None and done["started_at"] >= failed["finished_at"][:19]
    # The cut-short run still has its log archived.
    results = api.wait_results(a, long_job)
    assert "sumo.log" in {f["name"] for f in results["files"]}
    assert wait_until(lambda: api.http.get("/admin/cluster", headers=api.admin).json()["nodes"][0]["running_simulations"] == 0, 30, "slots to be free")
