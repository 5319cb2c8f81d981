"""The Kubernetes manifests: pure dict builders, checked without a cluster."""
from __future__ import annotations

import json
import os

from core.executors.base import JobSpec
from core.executors.kubernetes import manifests as m

TENANT = {"tenant_id": "acme", "namespace": "tenant-acme", "max_cpu": 4, "max_memory_gi": 8,
          "max_concurrent_jobs": 3}
SPEC = JobSpec(job_id="0b9c", tenant_id="acme", namespace="tenant-acme", cpu_request=2, memory_gi=3,
               config_file="sub/run.sumocfg", input_key="inputs/acme/0b9c.zip", deadline_seconds=7200)


def test_namespace_and_labels():
    ns = m.namespace(TENANT)
    assert ns["metadata"] == {"name": "tenant-acme", "labels": {
        "app.kubernetes.io/managed-by": "sumo-k8", "sumo-k8/tenant": "acme"}}


def test_quota_matches_tenant_limits_plus_helper_headroom():
    hard = m.resource_quota(TENANT, max_input_bytes=50 * 2**20)["spec"]["hard"]
    # one helper pod (collector, then cleanup) per job that may finish at the same time: 3 jobs
    assert hard["requests.cpu"] == hard["limits.cpu"] == "4150m"
    assert hard["requests.memory"] == hard["limits.memory"] == f"{8 * 1024 + 3 * 64}Mi"
    assert hard["pods"] == "6"
    assert int(hard["configmaps"]) >= 3 * m.chunks_for(50 * 2**20)


def test_limit_range_max_is_tenant_caps():
    lim = m.limit_range(TENANT)["spec"]["limits"][0]
    assert lim["type"] == "Container" and lim["max"] == {"cpu": "4", "memory": "8Gi"}
    assert set(lim["default"]) == set(lim["defaultRequest"]) == {"cpu", "memory"}


def test_pvc_storage_class_only_when_set():
    assert "storageClassName" not in m.results_pvc(TENANT, size_gi=10)["spec"]
    pvc = m.results_pvc(TENANT, size_gi=5, storage_class="fast")
    assert pvc["spec"]["storageClassName"] == "fast"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_network_policy_denies_everything():
    spec = m.network_policy(TENANT)["spec"]
    assert spec == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_only_collectors_may_leave_the_namespace_to_the_api_and_dns():
    policy = m.collector_egress_policy(TENANT, api_namespace="sumo-k8-system", api_port=8000)
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "collector"}}
    assert spec["policyTypes"] == ["Egress"] and "ingress" not in spec
    to_api, to_dns = spec["egress"]
    assert to_api["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "sumo-k8-system"}},
                             "podSelector": {"matchLabels": {"app.kubernetes.io/name": "sumo-k8",
                                                             "app.kubernetes.io/component": "api"}}}]
    assert to_api["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert to_dns["to"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    assert {(p["protocol"], p["port"]) for p in to_dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    # the API's pods as k8s/controller.yaml labels them
    import yaml
    from pathlib import Path

    docs = yaml.safe_load_all((Path(__file__).resolve().parents[2] / "k8s" / "controller.yaml").read_text())
    api = next(d for d in docs if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "sumo-k8-api")
    assert to_api["to"][0]["podSelector"]["matchLabels"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert api["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8000


def test_service_account_does_not_mount_token():
    assert m.service_account(TENANT)["automountServiceAccountToken"] is False


def test_chunks_stay_below_one_mib_and_rejoin():
    data = os.urandom(3 * 2**20 + 123)
    parts = m.chunk(data)
    assert len(parts) == 5 and all(len(p) <= m.CHUNK_BYTES for p in parts) and b"".join(parts) == data
    cms = m.input_configmaps(SPEC, parts, "uid-1")
    assert [c["metadata"]["name"] for c in cms] == [f"sumo-0b9c-input-{n}" for n in range(5)]
    for cm in cms:
        assert len(json.dumps(cm)) < 2**20
        assert cm["metadata"]["ownerReferences"][0] == {
            "apiVersion": "batch/v1", "kind": "Job", "name": "sumo-0b9c", "uid": "uid-1",
            "controller": False, "blockOwnerDeletion": True}
    assert m.chunk(b"") == [b""]


def _job():
    return m.simulation_job(SPEC, image="img", config_file="sub/run.sumocfg", log_file="sub/sumo.txt", chunks=2,
                            backoff_limit=0, ttl_seconds=120, max_output_mb=2048, max_log_mb=256)


def test_job_is_suspended_and_bounded():
    job = _job()
    assert job["metadata"]["name"] == "sumo-0b9c"
    assert job["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "sumo-k8", "sumo-k8/tenant": "acme",
                                         "sumo-k8/job-id": "0b9c", "app.kubernetes.io/component": "simulation"}
    spec = job["spec"]
    assert spec["suspend"] is True and spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 120
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["template"]["metadata"]["labels"] == job["metadata"]["labels"]


def test_pod_security_and_resources():
    pod = _job()["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "sumo-runner"
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["containers"] + pod["initContainers"]:
        requests, limits = c["resources"]["requests"], c["resources"]["limits"]
        assert {k: requests[k] for k in ("cpu", "memory")} == {k: limits[k] for k in ("cpu", "memory")} \
            == {"cpu": "2", "memory": "3Gi"}
        assert requests["ephemeral-storage"] and limits["ephemeral-storage"] == "512Mi"
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert c["command"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["results"]["persistentVolumeClaim"]["claimName"] == m.RESULTS_PVC
    assert volumes["input-1"]["configMap"]["name"] == "sumo-0b9c-input-1"
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "256Mi"}
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env == {"JOB_DIR": "/results/0b9c", "CHUNKS": "2", "CONFIG": "sub/run.sumocfg", "LOG_FILE": "sub/sumo.txt",
                   "MAX_OUTPUT_MB": "2048", "MAX_LOG_MB": "256"}
    main = pod["containers"][0]
    assert (main["terminationMessagePath"], main["terminationMessagePolicy"]) == ("/dev/termination-log", "File")
    assert main["command"][:2] == ["python3", "-c"]


def test_helper_pods_are_small_and_bounded():
    c = m.collector_pod(SPEC, image="img", collect_url="http://api:8000", token="t" * 64, max_output_mb=10, max_log_mb=5)
    assert c["metadata"]["labels"]["app.kubernetes.io/component"] == "collector"
    container = c["spec"]["containers"][0]
    assert container["volumeMounts"][0]["readOnly"] is True
    assert container["resources"]["limits"] == {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "64Mi"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["COLLECT_URL"] == "http://api:8000" and env["COLLECT_TOKEN"] == "t" * 64 and env["JOB_ID"] == "0b9c"
    assert (env["MAX_OUTPUT_MB"], env["MAX_LOG_MB"]) == ("10", "5")
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}} in c["spec"]["volumes"]
    assert c["spec"]["activeDeadlineSeconds"] == m.COLLECTOR_DEADLINE_SECONDS
    rm = m.cleanup_job(SPEC, image="img", ttl_seconds=60)
    assert rm["spec"]["template"]["spec"]["containers"][0]["command"] == ["rm", "-rf", "/results/0b9c"]
    assert rm["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["ephemeral-storage"] == "64Mi"
    assert rm["metadata"]["labels"]["app.kubernetes.io/component"] == "cleanup"


def test_every_controller_process_is_bound_its_tenant_role_in_the_namespace():
    bindings = m.tenant_role_bindings({"tenant_id": "acme", "namespace": "sumo-acme"},
                                      controller_namespace="sumo-k8-system")
    assert {(b["roleRef"]["name"], b["subjects"][0]["name"]) for b in bindings} == {
        ("sumo-k8-tenant-workers", "sumo-k8-workers"), ("sumo-k8-tenant-watcher", "sumo-k8-watcher"),
        ("sumo-k8-tenant-api", "sumo-k8-api"), ("sumo-k8-tenant-sweeper", "sumo-k8-sweeper")}
    assert all(b["subjects"][0]["namespace"] == "sumo-k8-system" and b["roleRef"]["kind"] == "ClusterRole"
               for b in bindings)
