"""The command-line client against the running service."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.integration.harness import ZIPS, log_lines, long_square, wait_until


def run_cli(stack, tenant, *args, cwd=None, url=None):
    env = {"SUMO_K8_URL": url or stack.url, "SUMO_K8_API_KEY": tenant["api_key"], "PATH": "/usr/bin:/bin", "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True, timeout=180, cwd=cwd)


def test_submit_wait_logs_and_download(stack, tenant, tmp_path):
    r = run_cli(stack, tenant, "submit", str(ZIPS / "square.zip"), "--wait", cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().splitlines()[0]
    assert "SUCCEEDED" in r.stderr and "uploading square.zip" in r.stderr

    logs = run_cli(stack, tenant, "logs", job_id, "--tail", "5")
    assert logs.returncode == 0 and logs.stdout.strip()

    # Results are collected just after the end; retry the download until they are.
    from tests.integration.harness import Api

    Api(stack.url, stack.env["ADMIN_KEY"]).wait_results(tenant, job_id)
    dl = run_cli(stack, tenant, "results", job_id, "--dest", str(tmp_path))
    assert dl.returncode == 0, dl.stderr
    assert (tmp_path / job_id / "sumo.log").is_file()
    assert (tmp_path / job_id / "sumo-statistics.xml").read_bytes().startswith(b"<?xml")


def test_cli_reports_refusals_by_name(stack, tenant, tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    r = run_cli(stack, tenant, "submit", str(bad))
    assert r.returncode == 1
    assert "400" in r.stderr and "ZIP" in r.stderr


def test_jobs_lists_newest_first_with_filter_and_pages(stack, tenant, tmp_path):
    ids = [run_cli(stack, tenant, "submit", str(ZIPS / "square.zip"), "--scenario-id", f"listed-{n}").stdout.strip()
           for n in range(3)]
    assert all(ids), ids
    listing = run_cli(stack, tenant, "jobs", "--all", "--limit", "1")  # one per page: the pages are followed
    assert listing.returncode == 0, listing.stderr
    positions = [listing.stdout.index(job_id) for job_id in ids]  # full ids, never cut by the table
    assert positions == sorted(positions, reverse=True)
    first_page = run_cli(stack, tenant, "jobs", "--limit", "1")
    assert ids[-1] in first_page.stdout and ids[0] not in first_page.stdout
    none = run_cli(stack, tenant, "jobs", "--status", "CANCELLED")
    assert none.returncode == 0 and not any(job_id in none.stdout for job_id in ids)
    bad = run_cli(stack, tenant, "jobs", "--status", "DONE")
    assert bad.returncode == 1 and "422" in bad.stderr and "status" in bad.stderr


def test_the_key_stays_out_of_help_and_an_unreachable_service_is_one_line(stack, tenant):
    shown = run_cli(stack, tenant, "--help")
    assert shown.returncode == 0 and "SUMO_K8_API_KEY" in shown.stdout
    assert tenant["api_key"] not in shown.stdout + shown.stderr
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        down = run_cli(stack, tenant, "jobs", url=f"http://127.0.0.1:{s.getsockname()[1]}")
    assert down.returncode == 2
    assert "cannot reach http://127.0.0.1:" in down.stderr and "Traceback" not in down.stderr


def test_follow_and_wait_ride_out_an_api_restart(make_stack, tmp_path):
    """The API killed and started again while a job runs: ``logs --follow`` resumes where its stream broke
    (every line printed once) and ``status --wait`` keeps waiting; both report the end."""
    from tests.integration.harness import Api

    stack = make_stack("cli-api-restart")
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register()
    job_id = api.submit_ok(tenant, long_square(end=40000))
    api.wait_status(tenant, job_id, "RUNNING", timeout=60)
    env = {"SUMO_K8_URL": stack.url, "SUMO_K8_API_KEY": tenant["api_key"], "PATH": "/usr/bin:/bin", "COLUMNS": "120"}
    followed = tmp_path / "followed.log"
    with open(followed, "wb") as out:
        follower = subprocess.Popen([sys.executable, "-m", "cli.main", "logs", job_id, "--follow"], env=env,
                                    stdout=out, stderr=subprocess.PIPE, text=True)
    waiter = subprocess.Popen([sys.executable, "-m", "cli.main", "status", job_id, "--wait"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: followed.stat().st_size > 0, 60, "the first lines of the followed log")
        stack.procs["api"].kill()
        stack.start_api(1)
        _, follow_err = follower.communicate(timeout=180)
        wait_out, wait_err = waiter.communicate(timeout=60)
    finally:
        for proc in (follower, waiter):
            proc.kill()
    assert follower.returncode == 0 and "job ended: SUCCEEDED" in follow_err, follow_err
    assert waiter.returncode == 0 and f"{job_id}: SUCCEEDED" in wait_err, wait_err
    api.wait_results(tenant, job_id)
    whole = api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).json()["logs"]
    assert log_lines(followed.read_text()) == log_lines(whole)
