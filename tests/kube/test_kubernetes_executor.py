"""The Kubernetes executor and watcher against the real dev control plane (marker ``kube``).

Every wait is a bounded condition (``wait_for``), never a fixed sleep.
"""
from __future__ import annotations

import hashlib
import os

import pytest
from kubernetes import client

from core.domain.states import JobStatus
from core.executors.base import CannotCollectYet
from core.executors.kubernetes import manifests as m
from core.bootstrap import archive_limits
from devcluster.procs import wait_for
from tests.devcluster.conftest import gone
from tests.kube.conftest import BOLOGNA, SQUARE, Recorder, run_watcher, square_variant

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]


def input_configmaps(core, spec):
    return [c.metadata.name for c in core.list_namespaced_config_map(
        spec.namespace, label_selector=f"{m.JOB_LABEL}={spec.job_id}").items]


def test_ensure_tenant_creates_everything_and_is_idempotent(executor, tenant, api):
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    ns = tenant["namespace"]
    assert core.read_namespace(ns).metadata.labels["app.kubernetes.io/managed-by"] == "sumo-k8"
    quota = core.read_namespaced_resource_quota("sumo-quota", ns)
    assert quota.spec.hard["requests.cpu"] == "2150m" and quota.status.hard  # + 50m per concurrent job's helper
    assert core.read_namespaced_limit_range("sumo-limits", ns).spec.limits[0].max == {"cpu": "2", "memory": "2Gi"}
    assert core.read_namespaced_persistent_volume_claim(m.RESULTS_PVC, ns).spec.resources.requests["storage"] == "1Gi"
    assert net.read_namespaced_network_policy("sumo-deny-all", ns).spec.policy_types == ["Ingress", "Egress"]
    # the one way out: collector pods to the API's pods on its port, and DNS (the dev node enforces neither)
    egress = net.read_namespaced_network_policy("sumo-collector-egress", ns).spec
    assert egress.pod_selector.match_labels == {"app.kubernetes.io/component": "collector"}
    assert egress.policy_types == ["Egress"] and [p.port for p in egress.egress[0].ports] == [8000]
    assert egress.egress[0].to[0].namespace_selector.match_labels == {"kubernetes.io/metadata.name": "sumo-k8-system"}
    assert core.read_namespaced_service_account(m.RUNNER_SA, ns).automount_service_account_token is False
    executor.ensure_tenant({**tenant, "max_cpu": 3})  # again, with a new limit: patched
    quota = core.read_namespaced_resource_quota("sumo-quota", ns)
    assert quota.spec.hard["requests.cpu"] == "3150m"
    # it returns once the quota controller applied the new limit (quota admission checks status.hard)
    assert quota.status.hard == quota.spec.hard


def test_bologna_runs_collects_and_cleans_up(executor, submit, watcher, api, store, receiver):
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    spec = submit(BOLOGNA)
    executor.start(spec)
    executor.start(spec)  # a re-delivered start is a no-op
    done = watcher.recorder.wait(spec.job_id, JobStatus.SUCCEEDED, 180)
    assert done.exit_code == 0
    statuses = watcher.recorder.statuses(spec.job_id)
    assert statuses.index(JobStatus.RUNNING) < statuses.index(JobStatus.SUCCEEDED)

    receiver.expect(spec)  # the service's row of the job, COLLECTING: its API takes the collector's uploads
    results = executor.collect(spec, store)
    by_name = {f["name"]: f for f in results.files}
    assert {"tripinfos.xml", "sumo.log", "sumo-statistics.xml", "sumo_log.txt"} <= set(by_name)
    assert "run.sumocfg" not in by_name and "acosta.rou.xml" not in by_name  # unchanged inputs
    for f in results.files:
        data = store.get_bytes(spec.result_prefix + f["name"])
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size"]
    assert results.log_archived and b"<performance" in results.statistics
    assert receiver.uploads(spec.job_id) == {f["name"]: {"size": f["size"], "sha256": f["sha256"]} for f in results.files}
    # the config names its own log (sumo_log.txt): SUMO logged to the console, copied there at the end
    assert by_name["sumo_log.txt"]["sha256"] == by_name["sumo.log"]["sha256"] and by_name["sumo.log"]["size"] > 0
    again = executor.collect(spec, store)  # safe to repeat
    assert sorted(f["sha256"] for f in again.files) == sorted(f["sha256"] for f in results.files)

    executor.release(spec)
    wait_for("Job deleted by TTL", lambda: gone(batch.read_namespaced_job, m.job_name(spec.job_id), spec.namespace), 120)
    wait_for("input ConfigMaps garbage-collected", lambda: input_configmaps(core, spec) == [], 120)
    wait_for("cleanup Job deleted by TTL",
             lambda: gone(batch.read_namespaced_job, m.cleanup_name(spec.job_id), spec.namespace), 120)
    assert executor.collect(spec, store).files == []  # the results dir is gone


def test_failing_run_reports_exit_code_and_log_tail(executor, submit, watcher, tmp_path):
    routes = b'<routes><vehicle id="v" depart="0"><route edges="no-such-edge"/></vehicle></routes>'
    spec = submit(square_variant(tmp_path, "bad.zip", routes=routes))
    executor.start(spec)
    failed = watcher.recorder.wait(spec.job_id, JobStatus.FAILED, 120)
    assert failed.exit_code == 1, failed
    assert failed.reason.startswith("BackoffLimitExceeded") and "sumo exited with code 1" in failed.reason
    assert failed.log_tail and "no-such-edge" in failed.log_tail


def test_deadline_exceeded_fails_with_reason(executor, submit, watcher, tmp_path):
    spec = submit(square_variant(tmp_path, "long.zip", end="1000000000"), deadline_seconds=4)
    executor.start(spec)
    failed = watcher.recorder.wait(spec.job_id, JobStatus.FAILED, 120)
    assert failed.reason.startswith("DeadlineExceeded"), failed
    assert JobStatus.RUNNING in watcher.recorder.statuses(spec.job_id)


def test_cancel_deletes_job_and_configmaps(executor, submit, watcher, tmp_path, api):
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    spec = submit(square_variant(tmp_path, "long.zip", end="1000000000"))
    executor.start(spec)
    watcher.recorder.wait(spec.job_id, JobStatus.RUNNING, 120)
    live = wait_for("some live log", lambda: executor.read_live_log(spec, 0, 1000), 60)
    assert b"" != live
    executor.cancel(spec)
    executor.cancel(spec)  # idempotent
    wait_for("Job gone", lambda: gone(batch.read_namespaced_job, m.job_name(spec.job_id), spec.namespace), 120)
    assert input_configmaps(core, spec) == []
    watcher.recorder.wait(spec.job_id, JobStatus.CANCELLED, 30)


def test_large_archive_goes_through_chunked_configmaps(executor, submit, watcher, tmp_path, api):
    core = client.CoreV1Api(api)
    big = square_variant(tmp_path, "big.zip", extra={"padding.bin": os.urandom(3 * 1024 * 1024 + 4096)})
    assert big.stat().st_size > 3 * 1024 * 1024
    spec = submit(big)
    executor.start(spec)
    assert len(input_configmaps(core, spec)) == 5
    assert watcher.recorder.wait(spec.job_id, JobStatus.SUCCEEDED, 180).exit_code == 0


def test_quota_refusal_is_reported_as_pending(executor, submit, watcher):
    spec = submit(BOLOGNA, cpu=3)  # above the tenant's LimitRange max / quota of 2 cpu
    executor.start(spec)
    pending = watcher.recorder.wait(spec.job_id, JobStatus.PENDING, 120)
    assert pending.reason.startswith("FailedCreate") and "forbidden" in pending.reason, pending
    executor.cancel(spec)


def test_an_image_that_cannot_be_pulled_is_reported_as_pending(settings, store, cluster, submit, watcher, api, receiver):
    """The kubelet's ErrImagePull / ImagePullBackOff keeps the job PENDING with the reason and the image
    named, never failed silently; a cancel then removes the Job, its pod and its input ConfigMaps, and the
    collection (whose pod cannot pull the image either) says so at once instead of waiting on its thread."""
    from core.executors.kubernetes import KubernetesExecutor

    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    missing = "registry.invalid/sumo:missing"  # never resolves (RFC 2606): the node agent cannot pull it
    executor = KubernetesExecutor(settings.model_copy(update={"sumo_image": missing}), None, limits=archive_limits(settings), store=store,
                                  api=cluster.api_client(), publish=Recorder(), uploads=receiver.uploads)
    spec = submit(SQUARE)
    executor.start(spec)

    def reported(reason: str):
        return lambda: next((e for e in watcher.recorder.of(spec.job_id) if (e.reason or "").startswith(reason)), None)

    pulling = wait_for("ErrImagePull reported", reported("ErrImagePull"), 120)
    assert pulling.status is JobStatus.PENDING and missing in pulling.reason and "no such host" in pulling.reason
    backing_off = wait_for("ImagePullBackOff reported", reported("ImagePullBackOff"), 60)
    assert backing_off.status is JobStatus.PENDING and missing in backing_off.reason
    assert all(e.status is JobStatus.PENDING for e in watcher.recorder.of(spec.job_id))

    executor.cancel(spec)
    wait_for("Job gone", lambda: gone(batch.read_namespaced_job, m.job_name(spec.job_id), spec.namespace), 120)
    assert input_configmaps(core, spec) == []
    assert core.list_namespaced_pod(spec.namespace, label_selector=f"{m.JOB_LABEL}={spec.job_id}").items == []
    watcher.recorder.wait(spec.job_id, JobStatus.CANCELLED, 30)

    refused = _collect_refusal(executor, spec, store)
    assert "collector pod" in str(refused) and missing in str(refused), refused
    wait_for("the collector pod's ImagePullBackOff", lambda: "ImagePullBackOff" in str(
        _collect_refusal(executor, spec, store)), 60)


def _collect_refusal(executor, spec, store) -> CannotCollectYet:
    """What ``collect`` answers while its collector pod cannot start (it must not wait that out)."""
    with pytest.raises(CannotCollectYet) as refused:
        executor.collect(spec, store)
    return refused.value


def compact_etcd(cluster) -> int:
    """Compact etcd at its current revision (what the apiserver does every 5 min), so that
    watching from an older resourceVersion is answered with 410 Gone."""
    import base64
    import json
    import urllib.request

    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(cluster.etcd_url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    rev = int(post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
    post("/v3/kv/compaction", {"revision": str(rev), "physical": True})
    return rev


def test_unschedulable_pod_is_reported_as_pending(executor, tenant, submit, watcher):
    executor.ensure_tenant({**tenant, "max_cpu": 16, "max_memory_gi": 4})
    spec = submit(BOLOGNA, cpu=8)  # fits the tenant, not the 4-cpu node
    executor.start(spec)
    pending = wait_for("Unschedulable reported", lambda: next(
        (e for e in watcher.recorder.of(spec.job_id) if (e.reason or "").startswith("Unschedulable")), None), 120)
    assert pending.status is JobStatus.PENDING and "nodes are available" in pending.reason, pending
    executor.cancel(spec)


def test_watcher_restart_and_410_lose_no_transition(executor, submit, cluster, tmp_path):
    """The watcher is down while a job runs and finishes; a new one (starting from a
    compacted-away resourceVersion, so its first watch gets 410 Gone) still reports it."""
    first = Recorder()
    w1, stop1, th1 = run_watcher(cluster, first)
    spec = submit(square_variant(tmp_path, "sq.zip"))
    executor.start(spec)
    wait_for("job pod seen", lambda: first.of(spec.job_id) or w1.pods, 60)
    stop1.set()
    th1.join(timeout=30)
    assert not th1.is_alive()

    batch = client.BatchV1Api(cluster.api_client())
    wait_for("Job complete while nobody watches", lambda: any(
        c.type == "Complete" and c.status == "True"
        for c in (batch.read_namespaced_job(m.job_name(spec.job_id), spec.namespace).status.conditions or [])), 120)

    compact_etcd(cluster)
    second = Recorder()
    w2, stop2, th2 = run_watcher(cluster, second, start_versions={"jobs": "1", "pods": "1", "events": "1"})
    try:
        done = second.wait(spec.job_id, JobStatus.SUCCEEDED, 60)
        assert done.exit_code == 0
        statuses = second.statuses(spec.job_id)
        assert statuses.index(JobStatus.RUNNING) < statuses.index(JobStatus.SUCCEEDED)
        assert w2.stats["gone"] >= 1, w2.stats
    finally:
        stop2.set()
        th2.join(timeout=30)


def test_lease_lets_one_watcher_lead_and_a_standby_take_over(executor, submit, cluster, tmp_path, settings):
    from core.executors.kubernetes.lease import LeaderLease

    ns = f"sumo-ctl-{os.urandom(3).hex()}"
    lease_a = LeaderLease(cluster.api_client(), ns, "a", duration_seconds=3)
    lease_b = LeaderLease(cluster.api_client(), ns, "b", duration_seconds=3)
    rec_a, rec_b = Recorder(), Recorder()
    wa, stop_a, th_a = run_watcher(cluster, rec_a, lease=lease_a)
    wait_for("a leads", wa.leading.is_set, 30)
    wb, stop_b, th_b = run_watcher(cluster, rec_b, lease=lease_b)
    try:
        spec = submit(square_variant(tmp_path, "sq.zip"))
        executor.start(spec)
        rec_a.wait(spec.job_id, JobStatus.SUCCEEDED, 120)
        assert not wb.leading.is_set() and rec_b.of(spec.job_id) == []
        stop_a.set()  # "crash": a keeps the lease (release_lease=False), b waits for it to expire
        th_a.join(timeout=30)
        wait_for("b takes over", wb.leading.is_set, 30)
        spec2 = submit(square_variant(tmp_path, "sq2.zip"))
        executor.start(spec2)
        rec_b.wait(spec2.job_id, JobStatus.SUCCEEDED, 120)
    finally:
        stop_a.set()
        stop_b.set()
        th_b.join(timeout=30)
    client.CoreV1Api(cluster.api_client()).delete_namespace(ns)


def test_capacity_lists_the_node(executor):
    cap = executor.capacity()
    node = cap["nodes"][0]
    assert cap["executor"] == "kubernetes" and node["ready"] and node["capacity"]["cpu"] == 4.0
    assert node["allocatable"]["memory_gi"] > 0 and node["running_pods"] >= 0


def test_start_before_ensure_tenant_creates_the_basics(executor, store, watcher, api, tmp_path):
    import dataclasses
    import uuid

    from core.executors.base import JobSpec

    ns = f"sumo-fresh-{uuid.uuid4().hex[:6]}"
    key = "inputs/fresh/a.zip"
    store.put_file(key, square_variant(tmp_path, "a.zip"))
    spec = JobSpec(job_id=str(uuid.uuid4()), tenant_id="fresh", namespace=ns, cpu_request=1, memory_gi=1,
                   config_file="square.sumocfg", input_key=key, deadline_seconds=600)
    try:
        executor.start(spec)
        assert watcher.recorder.wait(spec.job_id, JobStatus.SUCCEEDED, 120).exit_code == 0
        bad = dataclasses.replace(spec, job_id=str(uuid.uuid4()), input_key="inputs/fresh/missing.zip")
        executor.start(bad)  # a lost input fails the job instead of raising forever
        assert executor.published.of(bad.job_id)[-1].status is JobStatus.FAILED
    finally:
        client.CoreV1Api(api).delete_namespace(ns)
