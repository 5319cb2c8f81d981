"""bench.heavy_run still runs end to end through each executor and reports complete figures (small sizes, no
target compared; see test_benchmarks_run.py for why this tier exists)."""
from __future__ import annotations

import json

import pytest

from bench import common
from tests.conftest import require_kube

MIB = 1024 * 1024
SERVICE = {"api", "workers", "sweeper"}


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUT", tmp_path)
    return tmp_path


def measured(results_in_tmp, executor: str) -> dict:
    from bench import heavy_run

    result = heavy_run.main(["--executor", executor, "--output-mb", "20", "--log-mb", "10"])

    run = result["runs"][executor]
    assert "error" not in run, run["error"]
    assert json.loads((results_in_tmp / "heavy_run.json").read_text())["runs"][executor]["job_id"] == run["job_id"]
    assert run["output_bytes"] >= 20 * MIB and run["log_bytes"] >= 10 * MIB
    assert run["seconds"]["run"] > 0 and run["seconds"]["download"] > 0 and run["download_mib_per_s"] > 0
    assert run["verdict"] in ("met", "missed")
    procs = run["processes"]
    assert SERVICE <= set(procs), procs.keys()
    for label in SERVICE:
        assert set(procs[label]["peak_mib"]) >= {"run", "download"}
        assert all(mb > 0 for mb in procs[label]["peak_mib"].values())
        assert procs[label]["kind"] == "service" and procs[label]["verdict"] in ("met", "missed")
    assert any(p["kind"] == "tenant" for p in procs.values()), procs.keys()  # the simulation itself was followed
    return run


def test_heavy_run_through_the_local_executor(results_in_tmp):
    run = measured(results_in_tmp, "local")

    assert run["output_bytes"] == 20 * MIB and run["log_bytes"] == 10 * MIB  # fake_sumo writes exactly that
    assert "simulations" in run["processes"]
    assert any(p["kind"] == "sandbox" for p in run["processes"].values()), run["processes"].keys()


@pytest.mark.kube
@pytest.mark.timeout(900)
def test_heavy_run_through_the_kubernetes_executor(results_in_tmp):
    require_kube()
    run = measured(results_in_tmp, "kubernetes")

    procs = run["processes"]
    assert "watcher" in procs and "fcd.xml" in run["files"]
    assert procs["collector pod"]["peak_mib_overall"] > 0
    assert procs["simulation pod: run script (main container)"]["peak_mib_overall"] > 0
    assert run["scenario"]["end_s"] > 0 and run["output_bytes"] < 2 * 20 * MIB and run["log_bytes"] < 2 * 10 * MIB
