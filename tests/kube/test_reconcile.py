"""The sweeper reconciling jobs from the cluster, with the whole service on the dev cluster (marker ``kube``).

* Status events lost: two jobs run while the status workers are stopped, their end events are purged from
  the status queue (as when they were dead-lettered while PostgreSQL was away), and one job's Kubernetes
  Job is deleted.  The sweeper, asking the executor what it sees (``Executor.observe``), brings the one
  whose Job is still there to SUCCEEDED with its results, and the other to FAILED saying its Job is gone,
  with its log still collected from the tenant's volume.
* A job that cannot be scheduled is FAILED after PENDING_TIMEOUT_SECONDS naming why, its Job is deleted, a
  cleanup Job clears what it may have left on the tenant's volume, and the quota it held admits the tenant's
  next job.
"""
from __future__ import annotations

import pytest
import redis as redis_lib
from kubernetes import client

from core.executors.kubernetes import manifests as m
from core.waits import free_port
from devstack.stack import CONTROL_QUEUES, _dramatiq
from tests.integration.harness import Api, wait_until
from tests.kube.conftest import square_variant

pytestmark = pytest.mark.kube
PENDING_TIMEOUT = 30


@pytest.fixture(scope="module")
def rstack(make_stack, cluster):
    # Finished Jobs are kept (a long TTL): what the sweeper finds of them is the point.  Its own Lease namespace,
    # stopped with this module (the cluster is shared by the session).
    port = free_port()  # known before the start: the collector pods upload to it (COLLECT_URL)
    stack = make_stack("kube-reconcile", EXECUTOR="kubernetes", KUBECONFIG=str(cluster.kubeconfig),
                       JOB_TTL_SECONDS="3600", RESULT_STORAGE_SIZE_GI="1", WATCH_RESYNC_SECONDS="5",
                       CONTROLLER_NAMESPACE="sumo-k8-reconcile-test", SWEEP_GRACE_SECONDS="1",
                       PENDING_TIMEOUT_SECONDS=str(PENDING_TIMEOUT), PORT=str(port),
                       COLLECT_URL=f"http://127.0.0.1:{port}")
    yield stack
    stack.stop()


def status_messages(r: redis_lib.Redis) -> list[dict]:
    import json

    return [json.loads(raw)["args"][0] for key in r.keys("dramatiq:status*msgs") for raw in r.hvals(key)]


def purge_status_queue(r: redis_lib.Redis) -> None:
    keys = r.keys("dramatiq:status*")
    if keys:
        r.delete(*keys)


def k8s_job(batch: client.BatchV1Api, namespace: str, job_id: str):
    return _job_named(batch, namespace, m.job_name(job_id))


def _job_named(batch: client.BatchV1Api, namespace: str, name: str):
    try:
        return batch.read_namespaced_job(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def complete(job) -> bool:
    return bool(job and any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or []))


def test_lost_end_events_are_reconciled_from_the_cluster(rstack, cluster, tmp_path):
    api = Api(rstack.url, rstack.env["ADMIN_KEY"])
    tenant = api.register(max_cpu=2, max_memory_gi=4, max_concurrent_jobs=2)
    ns = tenant["namespace"]
    batch = client.BatchV1Api(cluster.api_client())
    r = redis_lib.Redis.from_url(rstack.env["REDIS_URL"])
    archive = square_variant(tmp_path, "run.zip", end="300000").read_bytes()  # runs for a while
    kept, deleted = api.submit_ok(tenant, archive), api.submit_ok(tenant, archive)
    for job_id in (kept, deleted):
        api.wait_status(tenant, job_id, "RUNNING", timeout=300)

    # No status worker and no sweeper from here on: what the watcher publishes stays in the queue.
    rstack.procs["sweeper"].stop()
    rstack.procs["workers"].stop()
    others = [q for q in CONTROL_QUEUES if q != "status"]
    rstack.proc("workers-no-status", _dramatiq(others, 1, 4)).start()
    try:
        wait_until(lambda: all(complete(k8s_job(batch, ns, j)) for j in (kept, deleted)), 300, "both Jobs complete")
        wait_until(lambda: {(msg["job_id"], msg["status"]) for msg in status_messages(r)} >= {(kept, "SUCCEEDED"), (deleted, "SUCCEEDED")},
                   60, "both end events waiting in the status queue")
        purge_status_queue(r)  # lost, as if dead-lettered
        batch.delete_namespaced_job(m.job_name(deleted), ns, propagation_policy="Background")
        wait_until(lambda: k8s_job(batch, ns, deleted) is None, 120, f"the Job of {deleted} gone")
        purge_status_queue(r)  # whatever its deletion published
        assert {api.job(tenant, j)["status"] for j in (kept, deleted)} == {"RUNNING"}, "nobody could tell yet"
    finally:
        rstack.procs["workers-no-status"].stop()
        rstack.start_workers()
        rstack.start_sweeper()

    done = api.wait_status(tenant, kept, {"SUCCEEDED", "FAILED", "CANCELLED"}, timeout=240)
    assert (done["status"], done["exit_code"]) == ("SUCCEEDED", 0), done
    assert "sumo.log" in {f["name"] for f in api.wait_results(tenant, kept, timeout=120)["files"]}

    lost = api.wait_status(tenant, deleted, {"SUCCEEDED", "FAILED", "CANCELLED"}, timeout=240)
    assert lost["status"] == "FAILED", lost
    assert "no longer exists" in lost["error"] and m.job_name(deleted) in lost["error"], lost["error"]
    files = {f["name"] for f in api.wait_results(tenant, deleted, timeout=120)["files"]}
    assert "sumo.log" in files, files
    log = api.http.get(f"/jobs/{deleted}/logs", headers=api.auth(tenant))
    assert log.status_code == 200 and log.json()["logs"].strip(), log.text


def test_a_job_that_cannot_be_scheduled_fails_after_the_pending_timeout(rstack, cluster):
    api = Api(rstack.url, rstack.env["ADMIN_KEY"])
    tenant = api.register(max_cpu=16, max_memory_gi=4, max_concurrent_jobs=1)
    batch = client.BatchV1Api(cluster.api_client())
    stuck = api.submit_ok(tenant, "square.zip", cpu=8)  # fits the tenant, not the dev cluster's node
    after = api.submit_ok(tenant, "square.zip")  # waits for the only place
    pending = wait_until(lambda: (j := api.job(tenant, stuck))["pending_reason"] and j, 120, "the stuck job PENDING with a reason")
    assert pending["status"] == "PENDING" and pending["pending_reason"].startswith("Unschedulable"), pending
    assert api.job(tenant, after)["status"] == "QUEUED"

    failed = api.wait_status(tenant, stuck, {"SUCCEEDED", "FAILED", "CANCELLED"}, timeout=PENDING_TIMEOUT + 120)
    assert failed["status"] == "FAILED", failed
    assert failed["error"].startswith(f"PENDING for more than PENDING_TIMEOUT_SECONDS ({PENDING_TIMEOUT} s), waiting for: "
                                      "Unschedulable"), failed["error"]
    wait_until(lambda: k8s_job(batch, tenant["namespace"], stuck) is None, 120, "the stuck job's Job deleted")
    # Whatever its pod may have unpacked on the tenant's volume is removed (a cleanup Job, kept by the TTL).
    cleanup = wait_until(lambda: _job_named(batch, tenant["namespace"], m.cleanup_name(stuck)), 60,
                         "a cleanup Job for the stuck job")
    assert cleanup.metadata.labels[m.JOB_LABEL] == stuck
    done = api.wait_status(tenant, after, {"SUCCEEDED", "FAILED", "CANCELLED"}, timeout=300)
    assert done["status"] == "SUCCEEDED", "the quota the stuck job held was not given back"
