"""End-to-end checks of the dev cluster: real API server, controllers,
scheduler and the process-based node agent running ``sumo`` from the venv.

Every wait is a polled condition with a bound (``wait_for``), never a sleep.
"""
from __future__ import annotations

import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster.procs import wait_for
from tests.devcluster.conftest import gone

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]

IMAGE = "ghcr.io/eclipse-sumo/sumo:main"  # ignored by the node agent


def job(name: str, command: list[str], **spec) -> dict:
    pod_spec = {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": IMAGE, "command": command}]}
    pod_spec.update(spec.pop("pod", {}))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}, **spec}}


def job_condition(batch, ns: str, name: str) -> str | None:
    j = batch.read_namespaced_job(name, ns)
    for c in j.status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return c.type
    return None


def job_pod(core, ns: str, name: str):
    pods = core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def pod_log(core, name: str, ns: str, **kw) -> str:
    """``read_namespaced_pod_log`` as text.  Raw bytes are decoded here because
    kubernetes-client 36.x returns ``"b'...'"`` (a bytes repr) from the
    preloaded call (kubernetes-client/python#2596, fixed in 37)."""
    return core.read_namespaced_pod_log(name, ns, _preload_content=False, **kw).data.decode()


def test_server_version(api):
    assert client.VersionApi(api).get_code().git_version == "v1.34.4"


def test_token_kubeconfig_authenticates_as_the_service_account(cluster, api, namespace):
    from kubernetes import config

    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        "default", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    as_sa = config.new_client_from_config(config_file=str(cluster.token_kubeconfig(f"sa-{namespace}", token)))
    review = client.AuthenticationV1Api(as_sa).create_self_subject_review({"apiVersion": "authentication.k8s.io/v1",
                                                                           "kind": "SelfSubjectReview"})
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:default"
    with pytest.raises(ApiException) as refused:  # RBAC decides: the default ServiceAccount may not list nodes
        client.CoreV1Api(as_sa).list_node()
    assert refused.value.status == 403


def test_resource_quota_is_enforced(api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_resource_quota(namespace, {
        "metadata": {"name": "tiny"}, "spec": {"hard": {"requests.cpu": "100m", "pods": "5"}}})
    # Admission only enforces a quota once the quota controller computed its status.
    wait_for("quota status", lambda: (core.read_namespaced_resource_quota("tiny", namespace)
                                      .status.hard or {}).get("requests.cpu"), 60)
    pod = {"metadata": {"name": "greedy"}, "spec": {"restartPolicy": "Never", "containers": [{
        "name": "main", "image": IMAGE, "command": ["true"],
        "resources": {"requests": {"cpu": "200m"}, "limits": {"cpu": "200m"}}}]}}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, pod)
    assert err.value.status == 403
    assert "exceeded quota: tiny" in err.value.body


def test_sumo_version_job_completes_and_logs(api, namespace):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job("sumo-version", ["sumo", "--version"]))
    assert wait_for("job sumo-version finished",
                    lambda: job_condition(batch, namespace, "sumo-version"), 120) == "Complete"
    pod = job_pod(core, namespace, "sumo-version")
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"
    assert pod.status.phase == "Succeeded"
    text = pod_log(core, pod.metadata.name, namespace, container="main")
    assert "Eclipse SUMO" in text


def test_failing_job_reports_exit_code(api, namespace):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job("exit3", ["sh", "-c", "echo bye; exit 3"]))
    assert wait_for("job exit3 finished",
                    lambda: job_condition(batch, namespace, "exit3"), 120) == "Failed"
    pod = job_pod(core, namespace, "exit3")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3


def test_volumes_and_sumo_on_path_with_work_mounted(api, namespace):
    """ConfigMap at /work, emptyDir at /results, PVC dir at /data: the pod sees
    them at those paths and still finds ``sumo`` although /work is shadowed."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "scenario"}, "data": {"net.txt": "hello-from-configmap"}})
    script = ("cat /work/net.txt && echo && echo $SCENARIO && sumo --version | head -1 "
              "&& echo result > /results/out.txt && cat /results/out.txt && pwd")
    batch.create_namespaced_job(namespace, job("vols", ["sh", "-c", script], pod={
        "volumes": [{"name": "work", "configMap": {"name": "scenario"}},
                    {"name": "results", "emptyDir": {}}],
        "containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", script],
                        "workingDir": "/results", "env": [{"name": "SCENARIO", "value": "demo"}],
                        "volumeMounts": [{"name": "work", "mountPath": "/work", "readOnly": True},
                                         {"name": "results", "mountPath": "/results"}]}]}))
    assert wait_for("job vols finished",
                    lambda: job_condition(batch, namespace, "vols"), 120) == "Complete"
    pod = job_pod(core, namespace, "vols")
    text = pod_log(core, pod.metadata.name, namespace)
    assert text.split("\n")[:2] == ["hello-from-configmap", "demo"]
    assert "Eclipse SUMO" in text and "result\n/results" in text


def test_owned_configmap_is_garbage_collected_with_foreground_delete(api, namespace):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    j = batch.create_namespaced_job(namespace, job("owner", ["sleep", "300"]))
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "owned", "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": "owner", "uid": j.metadata.uid,
            "blockOwnerDeletion": True}]}, "data": {"k": "v"}})
    wait_for("owner pod running", lambda: job_pod(core, namespace, "owner").status.phase == "Running", 60)
    batch.delete_namespaced_job("owner", namespace, propagation_policy="Foreground")
    wait_for("ConfigMap owned deleted",
             lambda: gone(core.read_namespaced_config_map, "owned", namespace), 120)
    wait_for("Job owner deleted", lambda: gone(batch.read_namespaced_job, "owner", namespace), 120)
    assert core.list_namespaced_pod(namespace, label_selector="job-name=owner").items == []


def test_ttl_after_finished_deletes_job(api, namespace):
    batch = client.BatchV1Api(api)
    name = f"ttl-{uuid.uuid4().hex[:5]}"
    batch.create_namespaced_job(namespace, job(name, ["true"], ttlSecondsAfterFinished=2))
    wait_for(f"Job {name} deleted by TTL", lambda: gone(batch.read_namespaced_job, name, namespace), 120)


def bare_pod(name: str, command: list[str], **spec) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "restartPolicy": "Never", **spec,
        "containers": [{"name": "main", "image": IMAGE, "command": command}]}}


def pod_phase(core, ns: str, name: str) -> str:
    return core.read_namespaced_pod(name, ns).status.phase


def test_logs_follow_and_tail_lines(api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, bare_pod(
        "chatty", ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done"]))
    wait_for("pod chatty running", lambda: pod_phase(core, namespace, "chatty") != "Pending", 60)
    # follow=true streams until the container exits
    assert pod_log(core, "chatty", namespace, follow=True) == "".join(f"line{i}\n" for i in range(1, 6))
    assert pod_phase(core, namespace, "chatty") == "Succeeded" or wait_for(
        "pod chatty succeeded", lambda: pod_phase(core, namespace, "chatty") == "Succeeded", 30)
    assert pod_log(core, "chatty", namespace, tail_lines=2) == "line4\nline5\n"
    stamped = pod_log(core, "chatty", namespace, tail_lines=1, timestamps=True)
    assert stamped.endswith("Z line5\n")


def _procs_with(marker: str) -> list[int]:
    import os

    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_delete_escalates_to_sigkill_after_grace(api, namespace):
    core = client.CoreV1Api(api)
    marker = f"stubborn-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(namespace, bare_pod(
        "stubborn", ["sh", "-c", 'trap "" TERM; echo up; while true; do sleep 0.2; done', marker]))
    wait_for("pod stubborn running", lambda: pod_phase(core, namespace, "stubborn") == "Running", 60)
    assert _procs_with(marker)
    core.delete_namespaced_pod("stubborn", namespace, grace_period_seconds=2)
    wait_for("pod stubborn removed", lambda: gone(core.read_namespaced_pod, "stubborn", namespace), 60)
    assert _procs_with(marker) == []


def test_pod_active_deadline_seconds(api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, bare_pod("slow", ["sleep", "60"], activeDeadlineSeconds=2))
    wait_for("pod slow failed", lambda: pod_phase(core, namespace, "slow") == "Failed", 60)
    pod = core.read_namespaced_pod("slow", namespace)
    assert pod.status.reason == "DeadlineExceeded"


def test_on_failure_restarts_container_in_place(api, namespace):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    script = "test -f /scratch/tried || { touch /scratch/tried; exit 1; }"
    batch.create_namespaced_job(namespace, job("retry", ["sh", "-c", script], backoffLimit=3, pod={
        "restartPolicy": "OnFailure", "volumes": [{"name": "scratch", "emptyDir": {}}],
        "containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}]}))
    assert wait_for("job retry finished",
                    lambda: job_condition(batch, namespace, "retry"), 120) == "Complete"
    st = job_pod(core, namespace, "retry").status.container_statuses[0]
    assert st.restart_count == 1 and st.state.terminated.exit_code == 0
    assert st.last_state.terminated.exit_code == 1


def test_pvc_is_bound_and_shared_between_pods(api, namespace):
    """The node agent binds claims to per-claim host dirs; data written by
    one Job's pod at /results is visible to the next one."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "results"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})

    def run(name: str, script: str) -> str:
        batch.create_namespaced_job(namespace, job(name, ["sh", "-c", script], pod={
            "volumes": [{"name": "r", "persistentVolumeClaim": {"claimName": "results"}}],
            "containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "r", "mountPath": "/results"}]}]}))
        assert wait_for(f"job {name} finished",
                        lambda: job_condition(batch, namespace, name), 120) == "Complete"
        return pod_log(core, job_pod(core, namespace, name).metadata.name, namespace)

    run("writer", "echo persisted > /results/out.txt")
    assert core.read_namespaced_persistent_volume_claim("results", namespace).status.phase == "Bound"
    assert run("reader", "cat /results/out.txt") == "persisted\n"


def test_init_containers_run_first_and_share_volumes(api, namespace):
    core = client.CoreV1Api(api)
    pod = bare_pod("init", ["cat", "/shared/greeting"],
                   volumes=[{"name": "shared", "emptyDir": {}}],
                   initContainers=[{"name": "prep", "image": IMAGE,
                                    "command": ["sh", "-c", "echo prepared > /shared/greeting"],
                                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "shared", "mountPath": "/shared"}]
    core.create_namespaced_pod(namespace, pod)
    wait_for("pod init succeeded", lambda: pod_phase(core, namespace, "init") == "Succeeded", 60)
    st = core.read_namespaced_pod("init", namespace).status
    assert st.init_container_statuses[0].state.terminated.exit_code == 0
    assert pod_log(core, "init", namespace, container="main") == "prepared\n"


def waiting_in(core, ns: str, name: str, reason: str, init: bool = False):
    """(phase, waiting state) once the pod's first (init) container waits for ``reason``, else None."""
    pod = core.read_namespaced_pod(name, ns)
    statuses = (pod.status.init_container_statuses if init else pod.status.container_statuses) or []
    waiting = statuses[0].state.waiting if statuses else None
    return (pod.status.phase, waiting) if waiting is not None and waiting.reason == reason else None


def test_an_image_that_cannot_be_pulled_waits_in_back_off(api, namespace):
    """An image of a registry under .invalid (which never resolves) fails to pull as on a real node: the
    container waits in ErrImagePull, then ImagePullBackOff, naming the image, and the pod stays Pending
    (its other containers unstarted) until it is deleted, or fails once it overruns its deadline."""
    core = client.CoreV1Api(api)
    missing = "registry.invalid/sumo:missing"
    pod = bare_pod("unpullable", ["true"], initContainers=[{"name": "prep", "image": missing, "command": ["true"]}])
    core.create_namespaced_pod(namespace, pod)
    phase, waiting = wait_for("ErrImagePull", lambda: waiting_in(core, namespace, "unpullable", "ErrImagePull",
                                                                 init=True), 60)
    assert phase == "Pending" and missing in waiting.message and "no such host" in waiting.message
    phase, waiting = wait_for("ImagePullBackOff", lambda: waiting_in(core, namespace, "unpullable",
                                                                     "ImagePullBackOff", init=True), 60)
    assert phase == "Pending" and waiting.message.startswith(f'Back-off pulling image "{missing}"')
    assert waiting_in(core, namespace, "unpullable", "PodInitializing")  # the main container never started
    core.delete_namespaced_pod("unpullable", namespace)
    wait_for("unpullable pod removed", lambda: gone(core.read_namespaced_pod, "unpullable", namespace), 60)

    overrun = bare_pod("overrun-pull", ["true"], activeDeadlineSeconds=2)
    overrun["spec"]["containers"][0]["image"] = missing
    core.create_namespaced_pod(namespace, overrun)
    wait_for("overrun-pull failed", lambda: pod_phase(core, namespace, "overrun-pull") == "Failed", 60)
    assert core.read_namespaced_pod("overrun-pull", namespace).status.reason == "DeadlineExceeded"


def test_job_active_deadline_kills_running_pod(api, namespace):
    """Job-level activeDeadlineSeconds is the job controller's: it deletes the
    pod, the agent stops it, and only then is the Job marked Failed."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job("overrun", ["sleep", "120"], activeDeadlineSeconds=2))
    assert wait_for("job overrun finished",
                    lambda: job_condition(batch, namespace, "overrun"), 90) == "Failed"
    cond = [c for c in batch.read_namespaced_job("overrun", namespace).status.conditions
            if c.type == "Failed"][0]
    assert cond.reason == "DeadlineExceeded"
    wait_for("overrun pod removed", lambda: core.list_namespaced_pod(
        namespace, label_selector="job-name=overrun").items == [], 60)


def test_service_account_token_volume_is_projected(api, namespace):
    """The kube-api-access volume added by ServiceAccount admission is mounted
    at /var/run/secrets/... (a path through the /var/run -> /run symlink)."""
    core = client.CoreV1Api(api)
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    core.create_namespaced_pod(namespace, bare_pod(
        "sa", ["sh", "-c", f"cat {sa_dir}/namespace; echo; head -c 3 {sa_dir}/token; echo; "
                           f"head -1 {sa_dir}/ca.crt"]))
    wait_for("pod sa succeeded", lambda: pod_phase(core, namespace, "sa") == "Succeeded", 60)
    assert pod_log(core, "sa", namespace) == f"{namespace}\neyJ\n-----BEGIN CERTIFICATE-----\n"


def test_a_container_past_its_memory_limit_is_oom_killed(api, namespace):
    """The node agent enforces ``resources.limits.memory`` with a memory cgroup, as a kubelet does: the
    container is killed by the kernel and its state says OOMKilled with exit code 137."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    hog = ["python3", "-c", "x = bytearray(256 << 20); x[::4096] = b'x' * len(x[::4096]); print('survived')"]
    body = job("oom", hog)
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"memory": "64Mi", "cpu": "100m"}, "limits": {"memory": "64Mi", "cpu": "1"}}
    batch.create_namespaced_job(namespace, body)
    assert wait_for("job oom finished", lambda: job_condition(batch, namespace, "oom"), 120) == "Failed"
    term = job_pod(core, namespace, "oom").status.container_statuses[0].state.terminated
    assert (term.reason, term.exit_code) == ("OOMKilled", 137), term
    assert "survived" not in pod_log(core, job_pod(core, namespace, "oom").metadata.name, namespace)
