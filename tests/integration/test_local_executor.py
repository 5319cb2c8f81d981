"""The local executor's limits: the run deadline and the machine-wide simulation cap."""
from __future__ import annotations

from tests.integration.harness import Api, long_square, wait_until


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


def test_one_worker_process_runs_as_many_simulations_as_slots(make_stack):
    """A simulation worker with two threads and two slots runs two simulations at once (it held one
    message at a time, so the second waited, QUEUED to the simulations queue, for the first)."""
    stack = make_stack("two-at-once", LOCAL_MAX_PARALLEL="2")
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register(max_concurrent_jobs=2)
    jobs = [api.submit_ok(tenant, long_square(end=100_000_000)) for _ in range(2)]
    wait_until(lambda: all(api.job(tenant, j)["status"] == "RUNNING" for j in jobs), 120, "both jobs RUNNING at once")
    for j in jobs:
        api.http.delete(f"/jobs/{j}", headers=api.auth(tenant))
    for j in jobs:
        api.wait_results(tenant, j)


def test_simulation_worker_killed_mid_run(make_stack):
    """The run's message comes back to another worker, the orphaned SUMO is stopped, the job ends once."""
    import os

    stack = make_stack("killed-sim")
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register()
    job_id = api.submit_ok(tenant, "bologna-acosta.zip")
    api.wait_status(tenant, job_id, "RUNNING", timeout=60)
    pid_file = stack.data_dir / "work" / job_id / "sumo.pid"
    first_pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the run's pid"))

    stack.procs["simulations"].kill()
    stack.start_simulation_workers(name="simulations-2")
    wait_until(lambda: pid_file.exists() and int(pid_file.read_text()) != first_pid, 120, "the run to restart elsewhere")
    assert not os.path.exists(f"/proc/{first_pid}") or open(f"/proc/{first_pid}/stat").read().split()[2] == "Z", \
        "the orphaned SUMO was stopped"
    job = api.wait_status(tenant, job_id, "SUCCEEDED", timeout=240)
    assert job["exit_code"] == 0
    results = api.wait_results(tenant, job_id)
    assert "tripinfos.xml" in {f["name"] for f in results["files"]}
