"""The whole flow against real SUMO: submit, run, log, stream, results, KPIs."""
from __future__ import annotations

import hashlib
import json
import zipfile

import httpx
import pytest

from tests.integration.harness import ZIPS, log_lines, wait_until


def read_sse(api, tenant, job_id, last_event_id=None, timeout=180):
    """All events of the log stream until the server closes it."""
    headers = api.auth(tenant)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events, current = [], {}
    with api.http.stream("GET", f"/jobs/{job_id}/logs/stream", headers=headers, timeout=httpx.Timeout(timeout)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            current[key] = current[key] + "\n" + value if key == "data" and key in current else value
    if current:
        events.append(current)
    return events


@pytest.mark.parametrize("archive,config,vehicles", [("square.zip", "square.sumocfg", 80), ("bologna-acosta.zip", "run.sumocfg", 8779)])
def test_scenario_runs_end_to_end(api, tenant, archive, config, vehicles):
    r = api.submit(tenant, archive, scenario_id=archive)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "QUEUED" and body["config_file"] == config
    job_id = body["job_id"]

    # The stream follows the run live and ends with the terminal status.
    events = read_sse(api, tenant, job_id)
    assert events[-1]["event"] == "status"
    final = json.loads(events[-1]["data"])
    assert final["status"] == "SUCCEEDED" and final["exit_code"] == 0
    streamed = "\n".join(e["data"] for e in events if e.get("event") == "log")
    assert "Simulation ended at time" in streamed or "Step #" in streamed

    job = api.wait_status(tenant, job_id, "SUCCEEDED")
    assert job["exit_code"] == 0 and job["error"] is None
    assert job["submitted_at"] <= job["admitted_at"] <= job["started_at"] <= job["finished_at"]

    results = api.wait_results(tenant, job_id)
    assert results["storage_type"] == "local"
    names = {f["name"] for f in results["files"]}
    assert {"sumo.log", "sumo-statistics.xml"} <= names
    if archive == "bologna-acosta.zip":
        # Outputs the config names, written next to it, and the config's own log file.
        assert {"tripinfos.xml", "e1_output.xml", "sumo_log.txt"} <= names
    inputs = set(zipfile.ZipFile(ZIPS / archive).namelist())
    assert not names & inputs, "unchanged inputs are not results"

    # Every listed file downloads with the advertised size and digest.
    for f in results["files"]:
        d = api.http.get(f["url"], headers=api.auth(tenant))
        assert d.status_code == 200, f["name"]
        assert len(d.content) == f["size"]
        assert hashlib.sha256(d.content).hexdigest() == f["sha256"]

    job = api.job(tenant, job_id)
    kpis = job["kpis"]
    assert kpis["vehicles_loaded"] == vehicles
    assert kpis["vehicles_arrived"] > 0
    for key in ("mean_travel_time", "mean_waiting_time", "mean_time_loss"):
        assert kpis[key] >= 0

    # The log is kept after the job ended, whole and as a tail.
    whole = api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).json()
    assert whole["job_id"] == job_id
    assert "Simulation ended at time" in whole["logs"]
    tail = api.http.get(f"/jobs/{job_id}/logs", params={"tail": 3}, headers=api.auth(tenant)).json()["logs"]
    assert 0 < len(tail.splitlines()) <= 3
    assert whole["logs"].rstrip("\n").endswith(tail.rstrip("\n"))

    # Replaying the stream after the end gives the whole log again, and resuming skips what was seen.
    replay = read_sse(api, tenant, job_id)
    replayed = "".join(e["data"] for e in replay if e.get("event") == "log")
    assert log_lines(replayed) == log_lines(whole["logs"])
    resumed = read_sse(api, tenant, job_id, last_event_id=replay[0]["id"])
    assert [e["event"] for e in resumed] == [e["event"] for e in replay[1:]]


def test_failing_simulation_reports_exit_code_and_log_tail(api, tenant):
    # A route file referring to an edge the network lacks: SUMO starts and then exits with an error.
    src = zipfile.ZipFile(ZIPS / "square.zip")
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith(".rou.xml"):
                data = b'<routes><vehicle id="v0" depart="0"><route edges="no_such_edge"/></vehicle></routes>'
            out.writestr(name, data)
    job_id = api.submit_ok(tenant, buf.getvalue())
    job = api.wait_status(tenant, job_id, "FAILED")
    assert job["exit_code"] not in (None, 0)
    assert f"exited with code {job['exit_code']}" in job["error"]
    assert "no_such_edge" in job["error"], "the error carries the log's last lines"
    results = api.wait_results(tenant, job_id)
    assert "sumo.log" in {f["name"] for f in results["files"]}


@pytest.mark.parametrize("archive", ["square.zip", "bologna-acosta.zip"])
def test_a_finished_job_shows_its_results_at_once(api, tenant, archive):
    """A poller that sees the run's outcome can download at once: every observation of a final status comes
    with the results and the log already listed (the job says COLLECTING until then)."""
    job_id = api.submit_ok(tenant, archive)
    seen: list[str] = []

    def finished():
        job = api.job(tenant, job_id)
        seen.append(job["status"])
        if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            listed = api.http.get(f"/jobs/{job_id}/results", headers=api.auth(tenant)).json()
            assert listed["collected"] and "sumo.log" in {f["name"] for f in listed["files"]}, (job, listed)
            return job
        return None

    assert wait_until(finished, 180, f"{archive} to finish", interval=0.01)["status"] == "SUCCEEDED"
    assert "RUNNING" in seen


def test_a_long_log_streams_whole_in_bounded_events(api, tenant):
    """~1 MB of step log: the stream sends it in bounded chunks and ends; nothing is lost."""
    import io

    src = zipfile.ZipFile(ZIPS / "square.zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith(".sumocfg"):
                data = data.replace(b"<time>", b'<time><step-length value="0.01"/>')
                data = data.replace(b"</configuration>", b'<report><step-log.period value="1"/></report></configuration>')
            out.writestr(name, data)
    job_id = api.submit_ok(tenant, buf.getvalue())
    events = read_sse(api, tenant, job_id)
    assert json.loads(events[-1]["data"])["status"] == "SUCCEEDED"
    log_events = [e for e in events if e.get("event") == "log"]
    assert len(log_events) >= 3, "the log came in several bounded events"
    assert int(log_events[-1]["id"]) > 500_000
    whole = api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).json()["logs"]
    assert log_lines("".join(e["data"] for e in log_events)) == log_lines(whole)
