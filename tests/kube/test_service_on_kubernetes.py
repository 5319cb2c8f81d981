"""The whole service with EXECUTOR=kubernetes on the real control plane, through the REST API only."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from core.executors.kubernetes.manifests import job_dir
from core.waits import free_port
from tests.integration.harness import Api, wait_until
from tests.kube.conftest import square_variant

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module")
def kstack(make_stack, cluster):
    # Its own Lease namespace, and stopped with this module: the cluster is shared by the whole session, and a
    # watcher left running would hold the Lease other tests' watchers wait for.
    port = free_port()  # known before the start: the collector pods upload to it (COLLECT_URL)
    stack = make_stack("kube-service", EXECUTOR="kubernetes", KUBECONFIG=str(cluster.kubeconfig),
                       JOB_TTL_SECONDS="5", RESULT_STORAGE_SIZE_GI="1", WATCH_RESYNC_SECONDS="5",
                       CONTROLLER_NAMESPACE="sumo-k8-service-test", PORT=str(port),
                       COLLECT_URL=f"http://127.0.0.1:{port}")
    yield stack
    stack.stop()


def test_register_run_bologna_and_download_through_the_api(kstack, cluster, tmp_path):
    api = Api(kstack.url, kstack.env["ADMIN_KEY"])
    tenant = api.register(max_cpu=2, max_memory_gi=4, max_concurrent_jobs=2)
    ns = tenant["namespace"]
    core = client.CoreV1Api(cluster.api_client())
    net = client.NetworkingV1Api(cluster.api_client())

    # Registration reconciles the tenant's objects (through the executor queue, not the API process).
    def tenant_objects():
        try:
            quota = core.read_namespaced_resource_quota(next(q.metadata.name for q in core.list_namespaced_resource_quota(ns).items), ns)
            return (core.list_namespaced_limit_range(ns).items and core.list_namespaced_persistent_volume_claim(ns).items
                    and net.list_namespaced_network_policy(ns).items and quota)
        except (client.ApiException, StopIteration):
            return None

    quota = wait_until(tenant_objects, 60, f"namespace {ns} with quota, limit range, PVC and network policy")
    assert quota.spec.hard["requests.cpu"] in ("2", "2100m")  # the tenant's limit (+ collector headroom)

    job_id = api.submit_ok(tenant, "bologna-acosta.zip")
    job = api.wait_status(tenant, job_id, "SUCCEEDED", timeout=300)
    assert job["exit_code"] == 0 and job["started_at"] and job["finished_at"]
    results = api.wait_results(tenant, job_id, timeout=120)
    names = {f["name"] for f in results["files"]}
    assert {"tripinfos.xml", "sumo.log", "sumo-statistics.xml"} <= names
    for f in results["files"]:
        body = api.http.get(f["url"], headers=api.auth(tenant)).content
        assert hashlib.sha256(body).hexdigest() == f["sha256"], f["name"]
    assert "Simulation ended" in api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).json()["logs"]
    assert api.job(tenant, job_id)["kpis"]["vehicles_loaded"] == 8779

    nodes = api.http.get("/admin/cluster", headers=api.admin).json()["nodes"]
    assert nodes and nodes[0]["ready"] is True


def test_cancel_and_failure_through_the_api(kstack, tmp_path):
    api = Api(kstack.url, kstack.env["ADMIN_KEY"])
    tenant = api.register(max_cpu=2, max_memory_gi=4, max_concurrent_jobs=2)
    failing = square_variant(tmp_path, "bad.zip", routes=b'<routes><vehicle id="v" depart="0"><route edges="nope"/></vehicle></routes>')
    bad = api.submit_ok(tenant, failing.read_bytes())
    long = api.submit_ok(tenant, square_variant(tmp_path, "long.zip", end="1000000").read_bytes())

    failed = api.wait_status(tenant, bad, "FAILED", timeout=300)
    assert failed["exit_code"] == 1 and "nope" in (failed["error"] or "")

    api.wait_status(tenant, long, "RUNNING", timeout=300)
    assert api.http.delete(f"/jobs/{long}", headers=api.auth(tenant)).json()["status"] == "CANCELLED"
    api.wait_results(tenant, long, timeout=120)
    assert api.job(tenant, long)["status"] == "CANCELLED"


def test_two_tenants_at_once_each_within_its_quota(kstack, cluster):
    from tests.integration.test_quota_and_cancel import max_overlap

    api = Api(kstack.url, kstack.env["ADMIN_KEY"])
    a = api.register(max_cpu=1, max_memory_gi=1, max_concurrent_jobs=1)
    b = api.register(max_cpu=2, max_memory_gi=2, max_concurrent_jobs=2)
    ids = {"a": [api.submit_ok(a, "square.zip") for _ in range(3)], "b": [api.submit_ok(b, "square.zip") for _ in range(4)]}
    done_a = [api.wait_status(a, j, "SUCCEEDED", timeout=300) for j in ids["a"]]
    done_b = [api.wait_status(b, j, "SUCCEEDED", timeout=300) for j in ids["b"]]
    assert max_overlap(done_a) == 1
    assert max_overlap(done_b) <= 2
    # Each tenant's namespace carries its own quota.
    core = client.CoreV1Api(cluster.api_client())
    hard = {t["tenant_id"]: core.list_namespaced_resource_quota(t["namespace"]).items[0].spec.hard for t in (a, b)}
    assert hard[a["tenant_id"]]["limits.memory"] != hard[b["tenant_id"]]["limits.memory"]


def _simulation_processes(job_id: str) -> list[int]:
    """Processes of the job's containers on the node agent (they carry JOB_DIR=/results/<job_id>)."""
    wanted = f"JOB_DIR={job_dir(job_id)}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and wanted in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue  # exited meanwhile
    return found


def test_an_api_server_restart_loses_no_job(kstack, cluster, tmp_path):
    """The API server killed while a job runs, and started again once that job ended, two more were
    submitted and the controller-manager gave up its leadership: every job ends SUCCEEDED with its results;
    meanwhile what needs the server is a 503, and the job's log stream waits instead of breaking."""
    api = Api(kstack.url, kstack.env["ADMIN_KEY"])
    tenant = api.register(max_cpu=2, max_memory_gi=4, max_concurrent_jobs=2)
    running = api.submit_ok(tenant, square_variant(tmp_path, "slow.zip", end="40000").read_bytes())
    api.wait_status(tenant, running, "RUNNING", timeout=300)
    wait_until(lambda: _simulation_processes(running), 60, f"the processes of job {running}")
    stream: list[str] = []

    def follow() -> None:
        with httpx.stream("GET", f"{kstack.url}/jobs/{running}/logs/stream", headers=api.auth(tenant),
                          timeout=httpx.Timeout(10, read=60)) as r:
            stream.extend(r.iter_lines())

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    with cluster.apiserver_down():
        assert _simulation_processes(running), "the run ended before the API server went away: lengthen it"
        later = [api.submit_ok(tenant, "square.zip") for _ in range(2)]
        logs = api.http.get(f"/jobs/{running}/logs", headers=api.auth(tenant))
        assert logs.status_code == 503 and "Kubernetes API server" in logs.json()["detail"], logs.text
        assert logs.headers["Retry-After"].isdigit()
        assert api.http.get("/admin/cluster", headers=api.admin).status_code == 503
        wait_until(lambda: not _simulation_processes(running), 120, f"job {running} ending while the server is away")
        # Long enough for the controller-manager to give up its leadership (it exits; the cluster starts it
        # again), as in an upgrade of the control plane.
        wait_until(lambda: not cluster.running("kube-controller-manager"), 60, "the controller-manager giving up")
        assert api.job(tenant, running)["status"] == "RUNNING"  # nobody could tell yet
    for job_id, timeout in ((running, 120), *((j, 60) for j in later)):  # within the test's own 300 s
        job = api.wait_status(tenant, job_id, timeout=timeout)
        assert (job["status"], job["exit_code"]) == ("SUCCEEDED", 0), job
    for job_id in [running, *later]:
        assert "sumo.log" in {f["name"] for f in api.wait_results(tenant, job_id, timeout=30)["files"]}
    reader.join(timeout=120)
    assert not reader.is_alive(), "the log stream did not end with the job"
    fields = [line for line in stream if line.startswith(("event:", "data:"))]
    assert fields[-2:-1] == ["event: status"] and '"SUCCEEDED"' in fields[-1], f"the stream ended with {stream[-6:]}"
