"""The benchmarks behind the README's figures still run end to end and report complete figures.

Small sizes, no figure compared with a target: this tier keeps the commands the
README gives for its numbers working as the code under them changes (a
benchmark nobody runs between campaigns breaks silently otherwise).  Results go
to a temporary directory instead of ``bench/out/``, which keeps a campaign's.
Not here: ``bench.overhead`` (two bologna-acosta runs of ~25 s each; the
integration tier runs bologna-acosta through the service) and ``bench.run_all``
(it only calls the others).
"""
from __future__ import annotations

import json

import pytest

from bench import common
from tests.conftest import require_kube, unavailable


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUT", tmp_path)
    return tmp_path


def written(out, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_status_latency_sees_every_event(results_in_tmp):
    from bench import status_latency

    result = status_latency.main(["--jobs", "5", "--polls", "20"])

    assert result["timeouts"] == 0
    assert result["visibility"]["n"] == 5 and result["visibility"]["p99_ms"] > 0
    assert result["poll_cost"]["get_200"]["n"] == 20 and result["poll_cost"]["get_304"]["n"] == 20
    assert written(results_in_tmp, "status_latency")["visibility"] == result["visibility"]


def test_submit_throughput_accepts_every_request(results_in_tmp):
    from bench import submit_throughput

    try:
        submit_throughput.bombardier()
    except SystemExit as missing:  # make test installs it (bench-tools)
        unavailable(str(missing))
    result = submit_throughput.main(["--api-workers", "1", "--runs", "1", "--requests", "60", "--warmup", "10",
                                     "--concurrency", "4"])

    [run] = result["runs"]
    assert run["errors"] == 0 and run["ok"] == 60
    assert run["submissions_per_s"] > 0 and run["server_cpu_ms_per_submission"]["api"] > 0
    assert written(results_in_tmp, "submit_throughput")["runs"][0]["ok"] == 60


def test_thread_hop_times_both_mechanisms(results_in_tmp):
    from bench import thread_hop

    result = thread_hop.main(["--calls", "500", "--rounds", "1"])

    assert result["median"]["anyio_us"] > 0 and result["median"]["pool_us"] > 0
    assert written(results_in_tmp, "thread_hop")["median"] == result["median"]


@pytest.mark.kube
def test_kube_admission_creates_every_job_and_sees_every_completion(results_in_tmp):
    from bench import kube_admission

    require_kube()
    result = kube_admission.main(["--jobs", "5", "--burst-cpu", "8", "--runs", "2", "--run-concurrency", "2",
                                  "--probe", "0"])

    admission, completion = result["admission"], result["completion"]
    assert admission["jobs"] == 5 and admission["rate_from_patch_per_s"] > 0
    assert admission["failed_create_events"] == {}
    assert completion["final_statuses"] == {"SUCCEEDED": 2}
    assert completion["latency_vs_watch"]["n"] == 2
    assert result["service_identity"].startswith("its ServiceAccounts")
    assert written(results_in_tmp, "kube_admission")["admission"]["jobs"] == 5
