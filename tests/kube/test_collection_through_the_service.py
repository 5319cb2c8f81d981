"""Results and live logs of Kubernetes jobs through the whole service (EXECUTOR=kubernetes, its REST API only):
a run whose log passes the kubelet's rotation size is collected whole, a log stream resumed with Last-Event-ID
gives every line once, and collecting a large output keeps every process's memory bounded.

The memory figures come from the kernel (VmHWM, each process's peak resident set; reset through clear_refs
before the collection): the collector pod (a process of the dev node), the API and the workers.  The run's size
is 200 MB of outputs by default; ``SUMO_K8_COLLECT_OUTPUT_MB`` and ``SUMO_K8_COLLECT_LOG_MB`` make it larger
(e.g. 2048 and 1024: the figures of a full-size run; its caps are raised to fit).
"""
from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from pathlib import Path

import httpx
import pytest

from core.waits import free_port
from devcluster.containerlog import parse_size
from tests.integration.harness import Api, log_lines
from tests.kube.conftest import SQUARE, square_variant

pytestmark = [pytest.mark.kube, pytest.mark.timeout(600)]
MIB = 1024 * 1024
OUTPUT_MB = int(os.environ.get("SUMO_K8_COLLECT_OUTPUT_MB", "200"))
LOG_MB = int(os.environ.get("SUMO_K8_COLLECT_LOG_MB", "0"))
#: What square.zip writes per simulation step: fcd-output (~50 vehicles on the road) and the step log (period 1).
FCD_PER_STEP, STEP_LOG_PER_STEP = 6755, 91


@pytest.fixture(scope="module")
def cstack(make_stack, cluster):
    port = free_port()  # known before the start: the collector pods upload to it
    stack = make_stack("kube-collect", EXECUTOR="kubernetes", KUBECONFIG=str(cluster.kubeconfig),
                       JOB_TTL_SECONDS="5", RESULT_STORAGE_SIZE_GI="2", WATCH_RESYNC_SECONDS="5",
                       CONTROLLER_NAMESPACE="sumo-k8-collect-test", PORT=str(port),
                       COLLECT_URL=f"http://127.0.0.1:{port}", MAX_OUTPUT_MB=str(max(2048, OUTPUT_MB + 512)),
                       MAX_LOG_MB=str(max(256, LOG_MB + 64)))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def client(cstack):
    return Api(cstack.url, cstack.env["ADMIN_KEY"])


@pytest.fixture(scope="module")
def tenant(client):
    return client.register(max_cpu=2, max_memory_gi=4, max_concurrent_jobs=2)


def scenario(tmp_path: Path, name: str, end: int, report: str = "", output: str = "") -> bytes:
    with zipfile.ZipFile(SQUARE) as zf:
        config = zf.read("square.sumocfg").decode()
    sections = (f"<report>{report}</report>" if report else "") + (f"<output>{output}</output>" if output else "")
    config = config.replace('<end value="100"/>', f'<end value="{end}"/>').replace(
        "</configuration>", f"{sections}</configuration>")
    return square_variant(tmp_path, name, extra={"square.sumocfg": config.encode()}).read_bytes()


def downloaded(client, tenant, job_id: str) -> dict[str, dict]:
    """Every result file, downloaded, checked against its listed size and sha256."""
    results = client.wait_results(tenant, job_id, timeout=300)
    by_name = {}
    for f in results["files"]:
        digest, size = hashlib.sha256(), 0
        with client.http.stream("GET", f["url"], headers=client.auth(tenant), timeout=120) as r:
            assert r.status_code == 200, f["name"]
            for block in r.iter_bytes():
                digest.update(block)
                size += len(block)
        assert (size, digest.hexdigest()) == (f["size"], f["sha256"]), f["name"]
        by_name[f["name"]] = f
    return by_name


def test_a_log_past_the_rotation_size_and_its_outputs_are_collected_whole(client, tenant, cluster, tmp_path):
    # ~90 bytes of step log per step: 130000 steps print about 11.8 MB, past the node's 10 MiB containerLogMaxSize
    rotation = parse_size(cluster.node.container_log_max_size)
    job_id = client.submit_ok(tenant, scenario(tmp_path, "rotating.zip", 130_000, report='<step-log.period value="1"/>',
                                               output='<tripinfo-output value="trips.xml"/>'))
    job = client.wait_status(tenant, job_id, "SUCCEEDED", timeout=400)
    assert job["exit_code"] == 0
    files = downloaded(client, tenant, job_id)
    assert files["sumo.log"]["size"] > rotation  # whole: from the PVC, not from the pod log the kubelet rotated
    assert files["trips.xml"]["size"] > 1 * MIB and "sumo-statistics.xml" in files
    log = client.http.get(f"/jobs/{job_id}/logs", params={"tail": 40}, headers=client.auth(tenant)).json()["logs"]
    assert "Simulation ended at time: 130000" in log and "Step #129999.00" in log  # the end, after the rotations
    assert client.job(tenant, job_id)["kpis"]["vehicles_loaded"] > 0


def read_sse(client, tenant, job_id: str, last_event_id: str | None = None, stop_after: int | None = None):
    """The stream's events until it ends, or until ``stop_after`` log events (the client goes away)."""
    headers = client.auth(tenant)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    events, current = [], {}
    with client.http.stream("GET", f"/jobs/{job_id}/logs/stream", headers=headers, timeout=httpx.Timeout(300)) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line:
                if current:
                    events.append(current)
                    if stop_after and sum(e.get("event") == "log" for e in events) >= stop_after:
                        return events
                current = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            current[key] = current[key] + "\n" + value if key == "data" and key in current else value
    return events + ([current] if current else [])


def test_a_log_stream_resumed_with_last_event_id_gives_every_line_once(client, tenant, tmp_path):
    job_id = client.submit_ok(tenant, scenario(tmp_path, "steady.zip", 120_000, report='<step-log.period value="50"/>'))
    client.wait_status(tenant, job_id, "RUNNING", timeout=300)
    first = read_sse(client, tenant, job_id, stop_after=3)
    assert client.job(tenant, job_id)["status"] == "RUNNING", "the job ended before the client went away: lengthen it"
    rest = read_sse(client, tenant, job_id, last_event_id=[e for e in first if e.get("event") == "log"][-1]["id"])
    assert rest[-1]["event"] == "status" and '"SUCCEEDED"' in rest[-1]["data"]
    streamed = "\n".join(e["data"] for e in first + rest if e.get("event") == "log")
    whole = client.http.get(f"/jobs/{job_id}/logs", headers=client.auth(tenant)).json()["logs"]
    assert log_lines(streamed) == log_lines(whole)


# -- memory ---------------------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def peak_kib(pid: int) -> int:
    try:
        return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM back to the current resident set
    except OSError:
        pass


class CollectorWatch(threading.Thread):
    """Follows the peak resident set of the job's collector processes on the dev node until told to stop."""

    def __init__(self, job_id: str) -> None:
        super().__init__(daemon=True)
        self.marker, self.peak, self.seen, self.done = f"JOB_ID={job_id}".encode(), 0, set(), threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                pid = int(entry)
                try:
                    if pid in self.seen or self.marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                        self.seen.add(pid)
                        self.peak = max(self.peak, peak_kib(pid))
                except OSError:
                    continue
            self.done.wait(0.02)


def large_run(tmp_path: Path) -> bytes:
    """square.zip writing ``OUTPUT_MB`` of fcd-output and ``LOG_MB`` of step log (short steps when the log needs
    many, one fcd record every ``period`` of them)."""
    steps = max(OUTPUT_MB * MIB // FCD_PER_STEP, LOG_MB * MIB // STEP_LOG_PER_STEP)
    step_length = 1.0 if steps <= 80_000 else 0.005  # the flows of square.zip end at 90000 s
    period = max(1, round(steps * FCD_PER_STEP / (OUTPUT_MB * MIB)))
    with zipfile.ZipFile(SQUARE) as zf:
        config = zf.read("square.sumocfg").decode()
    report = '<report><step-log.period value="1"/></report>' if LOG_MB else ""
    config = config.replace('<end value="100"/>', f'<end value="{steps * step_length:.3f}"/><step-length value="{step_length}"/>')
    config = config.replace("</configuration>", f'<output><fcd-output value="fcd.xml"/></output>{report}'
                            f'<processing><device.fcd.period value="{period * step_length}"/></processing></configuration>')
    return square_variant(tmp_path, "large.zip", extra={"square.sumocfg": config.encode()}).read_bytes()


@pytest.mark.timeout(600 + (OUTPUT_MB + 10 * LOG_MB) // 2)
def test_collecting_a_large_output_keeps_every_process_small(client, tenant, cstack, tmp_path):
    job_id = client.submit_ok(tenant, large_run(tmp_path))
    client.wait_status(tenant, job_id, "RUNNING", timeout=300)
    service = {name: descendants(cstack.procs[name].process.pid) for name in ("api", "workers", "watcher")}
    before = {name: max(peak_kib(p) for p in pids) for name, pids in service.items()}
    for pids in service.values():
        for p in pids:
            reset_peak(p)
    base = {name: max(peak_kib(p) for p in pids) for name, pids in service.items()}  # resident now
    watch = CollectorWatch(job_id)
    watch.start()
    try:
        client.wait_status(tenant, job_id, "SUCCEEDED", timeout=500 + (OUTPUT_MB + 10 * LOG_MB) // 2)
        files = downloaded(client, tenant, job_id)
    finally:
        watch.done.set()
        watch.join(10)
    assert files["fcd.xml"]["size"] > 0.75 * OUTPUT_MB * MIB and files["sumo.log"]["size"] >= 0.75 * LOG_MB * MIB
    peaks = {name: max(peak_kib(p) for p in pids) for name, pids in service.items()}
    report = (f"peak resident sets in KiB: collector {watch.peak}, service {peaks} (resident before the collection "
              f"{base}; peaks over the processes' lives before it {before})")
    assert watch.seen and 0 < watch.peak <= 64 * 1024, report  # within the collector pod's memory limit
    for name, peak in peaks.items():
        # The output passed through the API twice (upload, download): a copy held would add its 200 MB.
        assert peak - base[name] <= 64 * 1024 and peak <= 256 * 1024, report
    print(report)
