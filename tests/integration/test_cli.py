"""The command-line client against the running service."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.harness import ZIPS


def run_cli(stack, tenant, *args, cwd=None):
    env = {"SUMO_K8_URL": stack.url, "SUMO_K8_API_KEY": tenant["api_key"], "PATH": "/usr/bin:/bin", "COLUMNS": "120"}
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
