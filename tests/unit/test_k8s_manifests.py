"""The Kubernetes manifests: pure dict builders, checked without a cluster."""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import zipfile

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
                            backoff_limit=0, ttl_seconds=120)


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
        assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "2", "memory": "3Gi"}
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert c["command"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["results"]["persistentVolumeClaim"]["claimName"] == m.RESULTS_PVC
    assert volumes["input-1"]["configMap"]["name"] == "sumo-0b9c-input-1"
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env == {"JOB_DIR": "/results/0b9c", "CHUNKS": "2", "CONFIG": "sub/run.sumocfg", "LOG_FILE": "sub/sumo.txt"}


def test_unpack_and_collect_scripts_round_trip(tmp_path):
    """Run the init and collector scripts locally: inputs skipped, outputs and log returned."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("sub/run.sumocfg", "<c/>")
        zf.writestr("sub/net.xml", "<net/>")
    parts = m.chunk(buf.getvalue(), 100)
    for n, part in enumerate(parts):
        (tmp_path / "input" / str(n)).mkdir(parents=True)
        (tmp_path / "input" / str(n) / "part").write_bytes(part)
    jd = tmp_path / "results" / "0b9c"
    script = m.UNPACK_SCRIPT.replace('"/input/%d/part"', repr(str(tmp_path) + "/input/%d/part"))
    env = {**os.environ, "JOB_DIR": str(jd), "CHUNKS": str(len(parts))}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    assert (jd / "run/sub/net.xml").read_text() == "<net/>"
    (jd / "run/sub/out.xml").write_text("<out/>")
    (jd / "sumo.log").write_text("hello\n")
    out = subprocess.run([sys.executable, "-c", m.COLLECT_SCRIPT], env=env, check=True,
                         capture_output=True, text=True).stdout
    from core.executors.kubernetes.collection import parse_collector_log

    header, raw = parse_collector_log(out)
    assert set(header) == {"run/sub/out.xml", "sumo.log"}
    assert base64.b64encode(raw)


def test_collector_and_cleanup_are_not_simulations():
    c = m.collector_pod(SPEC, image="img")
    assert c["metadata"]["labels"]["app.kubernetes.io/component"] == "collector"
    assert c["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] is True
    rm = m.cleanup_job(SPEC, image="img", ttl_seconds=60)
    assert rm["spec"]["template"]["spec"]["containers"][0]["command"] == ["rm", "-rf", "/results/0b9c"]
    assert rm["metadata"]["labels"]["app.kubernetes.io/component"] == "cleanup"
