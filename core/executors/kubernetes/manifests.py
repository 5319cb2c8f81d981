"""Every Kubernetes object sumo-k8 creates, built as plain dicts by pure functions.

Nothing here talks to the API: the executor decides *when* to create an
object, this module decides *what* it looks like, so every manifest can be
unit-tested (``tests/unit/test_k8s_manifests.py``).

Layout of a job on the tenant's results PVC (mounted at ``/results``)::

    /results/<job_id>/run/...                 the scenario, unpacked; SUMO runs here
    /results/<job_id>/inputs.json             {relative path: {sha256, size}} of the unpacked inputs
    /results/<job_id>/sumo.log                SUMO's console output (tee'd; also the pod log)
    /results/<job_id>/sumo-statistics.xml     --statistic-output

The input travels as the executor's normalised re-pack of the scenario
(only accepted files, top-level folder stripped) split into ConfigMaps
``sumo-<job_id>-input-<n>`` (``binaryData`` below 1 MiB each), which the init
container joins and unzips straight into the run directory on the PVC.
(The brief suggested unzipping into an emptyDir and copying: SUMO must run
beside its inputs so relative output paths land on the PVC, so the copy would
only double the I/O; the emptyDir is used for ``/tmp`` instead, which the
read-only root filesystem needs.)

What the pods run is in :mod:`.pod_scripts`.  Results leave the PVC through the
collector pod, which uploads each file to the API (``COLLECT_URL``); the
tenant's NetworkPolicies deny all traffic but that (and DNS) from collectors.
"""
from __future__ import annotations

import math

from core.executors.kubernetes.pod_scripts import COLLECT_SCRIPT, RUN_SCRIPT, UNPACK_SCRIPT

__all__ = ["COLLECT_SCRIPT", "RUN_SCRIPT", "UNPACK_SCRIPT"]  # re-exported: each pod's program, next to its pod

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "sumo-k8"
COMPONENT = "app.kubernetes.io/component"
TENANT_LABEL = "sumo-k8/tenant"
JOB_LABEL = "sumo-k8/job-id"
SELECTOR = f"{MANAGED_BY}={MANAGER}"

SIMULATION, COLLECTOR, CLEANUP = "simulation", "collector", "cleanup"
RUNNER_SA = "sumo-runner"
#: On every simulation Job: the watcher removes it only after publishing the Job's final status,
#: so a Job deleted (TTL, cancel) while no watcher runs is still seen and reported.
FINALIZER = "sumo-k8/status-reported"
RESULTS_PVC = "sumo-results"
MAIN_CONTAINER = "sumo"
INIT_CONTAINER = "unpack"
RESULTS_MOUNT = "/results"
#: Raw bytes per input ConfigMap: base64 in the request stays well under etcd's 1.5 MiB.
CHUNK_BYTES = 700 * 1024
RUN_AS = 1000
#: Requests = limits of one helper pod (a job's collector, then its cleanup Job's pod).
HELPER_CPU_M, HELPER_MEM_MI = 50, 64
#: Local disk: the size of /tmp (an emptyDir) and each container's ephemeral-storage (request, limit), which
#: covers /tmp and the container's log files (the kubelet keeps a few rotated files of containerLogMaxSize).
SIM_TMP, SIM_EPHEMERAL = "256Mi", ("64Mi", "512Mi")
HELPER_TMP, HELPER_EPHEMERAL = "16Mi", ("64Mi", "64Mi")
#: A collector pod has this long to upload a job's files.
COLLECTOR_DEADLINE_SECONDS = 1800
#: A collector uploads at most this many files of a run, and its manifest line stays below this size (the
#: worker reads it from the pod log, which the kubelet rotates at containerLogMaxSize, 10 MiB by default).
COLLECT_MAX_FILES, COLLECT_MAX_MANIFEST_BYTES = 10_000, 4 * 1024 * 1024
TERMINATION_LOG = "/dev/termination-log"
API_LABELS = {"app.kubernetes.io/name": "sumo-k8", COMPONENT: "api"}  # the API's pods (k8s/controller.yaml)


def helper_headroom(max_concurrent_jobs: int) -> tuple[int, int, int]:
    """Quota on top of the tenant's limits for helper pods: (cpu millicores, memory MiB, pods).

    A finished job has at most one helper pod at a time, and up to
    ``max_concurrent_jobs`` jobs can finish together.  With less room, helpers
    still running take the room of the next admitted job, whose pod quota
    admission then refuses (the job controller retries it only after a backoff).
    """
    return max_concurrent_jobs * HELPER_CPU_M, max_concurrent_jobs * HELPER_MEM_MI, max_concurrent_jobs


# -- names and labels -----------------------------------------------------------------
def job_name(job_id: str) -> str:
    return f"sumo-{job_id}"


def configmap_name(job_id: str, n: int) -> str:
    return f"sumo-{job_id}-input-{n}"


def collector_name(job_id: str) -> str:
    return f"sumo-collect-{job_id}"


def cleanup_name(job_id: str) -> str:
    return f"sumo-rm-{job_id}"


def job_dir(job_id: str) -> str:
    return f"{RESULTS_MOUNT}/{job_id}"


def labels(tenant_id: str, job_id: str | None = None, component: str | None = None) -> dict:
    out = {MANAGED_BY: MANAGER, TENANT_LABEL: tenant_id}
    if job_id:
        out[JOB_LABEL] = job_id
    if component:
        out[COMPONENT] = component
    return out


def chunk(data: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` bytes (at least one piece)."""
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def chunks_for(max_bytes: int, size: int = CHUNK_BYTES) -> int:
    return max(1, math.ceil(max_bytes / size))


# -- per tenant -------------------------------------------------------------------------
def namespace(tenant: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": tenant["namespace"], "labels": labels(tenant["tenant_id"])}}


def resource_quota(tenant: dict, *, max_input_bytes: int) -> dict:
    """Requests = limits = the tenant's caps (plus helper headroom); pods and ConfigMaps capped."""
    jobs = int(tenant["max_concurrent_jobs"])
    helper_cpu_m, helper_mem_mi, helper_pods = helper_headroom(jobs)
    cpu = f"{int(tenant['max_cpu']) * 1000 + helper_cpu_m}m"
    mem = f"{int(tenant['max_memory_gi']) * 1024 + helper_mem_mi}Mi"
    configmaps = jobs * chunks_for(max_input_bytes) + 4  # + kube-root-ca.crt and slack
    return {"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "sumo-quota", "labels": labels(tenant["tenant_id"])},
            "spec": {"hard": {"requests.cpu": cpu, "limits.cpu": cpu,
                              "requests.memory": mem, "limits.memory": mem,
                              "pods": str(jobs + helper_pods), "configmaps": str(configmaps)}}}


def limit_range(tenant: dict) -> dict:
    """Defaults for containers that name no resources; max = the tenant's caps."""
    small = {"cpu": f"{HELPER_CPU_M}m", "memory": f"{HELPER_MEM_MI}Mi"}
    return {"apiVersion": "v1", "kind": "LimitRange",
            "metadata": {"name": "sumo-limits", "labels": labels(tenant["tenant_id"])},
            "spec": {"limits": [{"type": "Container", "default": dict(small), "defaultRequest": dict(small),
                                 "max": {"cpu": str(int(tenant["max_cpu"])),
                                         "memory": f"{int(tenant['max_memory_gi'])}Gi"}}]}}


def results_pvc(tenant: dict, *, size_gi: int, storage_class: str = "",
                access_mode: str = "ReadWriteOnce") -> dict:
    spec = {"accessModes": [access_mode], "resources": {"requests": {"storage": f"{size_gi}Gi"}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": RESULTS_PVC, "labels": labels(tenant["tenant_id"])}, "spec": spec}


def network_policy(tenant: dict) -> dict:
    """Simulations need no network: deny all ingress and all egress in the namespace."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "sumo-deny-all", "labels": labels(tenant["tenant_id"])},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


def collector_egress_policy(tenant: dict, *, api_namespace: str, api_port: int) -> dict:
    """The one way out of a tenant's namespace: collector pods to the API's pods on its port, and to the
    cluster DNS (kube-system's kube-dns) to resolve COLLECT_URL.  Policies add up, so the deny-all stays.
    (The dev cluster's node agent enforces no NetworkPolicy: tests check this object, not its effect.)"""
    to_api = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": api_namespace}},
                      "podSelector": {"matchLabels": dict(API_LABELS)}}]}
    if api_port > 0:
        to_api["ports"] = [{"protocol": "TCP", "port": api_port}]
    to_dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                      "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
              "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "sumo-collector-egress", "labels": labels(tenant["tenant_id"])},
            "spec": {"podSelector": {"matchLabels": {COMPONENT: COLLECTOR}}, "policyTypes": ["Egress"],
                     "egress": [to_api, to_dns]}}


def service_account(tenant: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": RUNNER_SA, "labels": labels(tenant["tenant_id"])},
            "automountServiceAccountToken": False}


#: The controller's processes, each with a ServiceAccount of its own in CONTROLLER_NAMESPACE (k8s/rbac.yaml),
#: and the ClusterRole each is granted in every tenant namespace by a RoleBinding there: their writes are
#: confined to tenant namespaces, not granted cluster-wide.
CONTROLLER_ACCOUNTS = {
    "workers": "sumo-k8-workers",
    "watcher": "sumo-k8-watcher",
    "api": "sumo-k8-api",
    "sweeper": "sumo-k8-sweeper",
}
TENANT_ROLE_PREFIX = "sumo-k8-tenant-"


def tenant_role_bindings(tenant: dict, *, controller_namespace: str) -> list[dict]:
    """One RoleBinding per controller process: its ClusterRole ``sumo-k8-tenant-<process>`` in this namespace."""
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": f"{TENANT_ROLE_PREFIX}{process}", "labels": labels(tenant["tenant_id"])},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": f"{TENANT_ROLE_PREFIX}{process}"},
             "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": controller_namespace}]}
            for process, account in CONTROLLER_ACCOUNTS.items()]


# -- pod building blocks ---------------------------------------------------------------------
def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def _pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _resources(cpu: str, memory: str, ephemeral: tuple[str, str]) -> dict:
    return {"requests": {"cpu": cpu, "memory": memory, "ephemeral-storage": ephemeral[0]},
            "limits": {"cpu": cpu, "memory": memory, "ephemeral-storage": ephemeral[1]}}


def _helper_resources() -> dict:
    return _resources(f"{HELPER_CPU_M}m", f"{HELPER_MEM_MI}Mi", HELPER_EPHEMERAL)


def _pod_spec(containers: list[dict], volumes: list[dict], tmp_size: str = HELPER_TMP, **extra) -> dict:
    return {"restartPolicy": "Never", "serviceAccountName": RUNNER_SA,
            "automountServiceAccountToken": False, "enableServiceLinks": False,
            "securityContext": _pod_security(), "containers": containers,
            "volumes": [{"name": "results", "persistentVolumeClaim": {"claimName": RESULTS_PVC}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": tmp_size}}, *volumes], **extra}


def _mounts(read_only_results: bool = False) -> list[dict]:
    return [{"name": "results", "mountPath": RESULTS_MOUNT, "readOnly": read_only_results},
            {"name": "tmp", "mountPath": "/tmp"}]


# -- per job ------------------------------------------------------------------------------------
def input_configmaps(spec, parts: list[bytes], owner_uid: str) -> list[dict]:
    """One ConfigMap per chunk, owned by the Job so they are deleted with it (never orphaned)."""
    import base64

    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job_name(spec.job_id),
             "uid": owner_uid, "controller": False, "blockOwnerDeletion": True}
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": configmap_name(spec.job_id, n),
                          "labels": labels(spec.tenant_id, spec.job_id, SIMULATION),
                          "ownerReferences": [owner]},
             "immutable": True,
             "binaryData": {"part": base64.b64encode(part).decode("ascii")}}
            for n, part in enumerate(parts)]


def simulation_job(spec, *, image: str, config_file: str, log_file: str | None, chunks: int,
                   backoff_limit: int, ttl_seconds: int, max_output_mb: int, max_log_mb: int,
                   suspend: bool = True) -> dict:
    """The Job running SUMO for ``spec``.  ``suspend`` keeps it from creating pods; the executor creates it
    running and its input ConfigMaps right after (its pod waits for those volumes, as a kubelet does).
    A run past ``max_output_mb`` or ``max_log_mb`` is stopped; its termination message names the setting."""
    lab = labels(spec.tenant_id, spec.job_id, SIMULATION)
    env = [{"name": "JOB_DIR", "value": job_dir(spec.job_id)}, {"name": "CHUNKS", "value": str(chunks)},
           {"name": "CONFIG", "value": config_file}, {"name": "LOG_FILE", "value": log_file or ""},
           {"name": "MAX_OUTPUT_MB", "value": str(max_output_mb)}, {"name": "MAX_LOG_MB", "value": str(max_log_mb)}]
    res = _resources(str(spec.cpu_request), f"{spec.memory_gi}Gi", SIM_EPHEMERAL)
    init = {"name": INIT_CONTAINER, "image": image, "command": ["python3", "-c", UNPACK_SCRIPT],
            "env": env, "resources": res, "securityContext": _container_security(),
            "volumeMounts": _mounts() + [{"name": f"input-{n}", "mountPath": f"/input/{n}", "readOnly": True}
                                         for n in range(chunks)]}
    main = {"name": MAIN_CONTAINER, "image": image, "command": ["python3", "-c", RUN_SCRIPT],
            "env": env, "resources": res, "securityContext": _container_security(),
            "terminationMessagePath": TERMINATION_LOG, "terminationMessagePolicy": "File",
            "volumeMounts": _mounts()}
    volumes = [{"name": f"input-{n}", "configMap": {"name": configmap_name(spec.job_id, n)}}
               for n in range(chunks)]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(spec.job_id), "labels": lab, "finalizers": [FINALIZER]},
            "spec": {"suspend": suspend, "backoffLimit": backoff_limit,
                     "activeDeadlineSeconds": int(spec.deadline_seconds),
                     "ttlSecondsAfterFinished": ttl_seconds,
                     "template": {"metadata": {"labels": lab},
                                  "spec": _pod_spec([main], volumes, SIM_TMP, initContainers=[init])}}}


# -- helpers reading or clearing the PVC ------------------------------------------------------
def collector_pod(spec, *, image: str, collect_url: str, token: str, max_output_mb: int, max_log_mb: int) -> dict:
    """A short-lived pod uploading the job's results to the API (see COLLECT_SCRIPT) with the job's token."""
    env = {"JOB_DIR": job_dir(spec.job_id), "JOB_ID": spec.job_id, "COLLECT_URL": collect_url, "COLLECT_TOKEN": token,
           "MAX_OUTPUT_MB": str(max_output_mb), "MAX_LOG_MB": str(max_log_mb), "MAX_FILES": str(COLLECT_MAX_FILES),
           "MAX_MANIFEST_BYTES": str(COLLECT_MAX_MANIFEST_BYTES)}
    c = {"name": "collect", "image": image, "command": ["python3", "-c", COLLECT_SCRIPT],
         "env": [{"name": k, "value": v} for k, v in env.items()],
         "resources": _helper_resources(), "securityContext": _container_security(),
         "volumeMounts": _mounts(read_only_results=True)}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": collector_name(spec.job_id),
                         "labels": labels(spec.tenant_id, spec.job_id, COLLECTOR)},
            "spec": _pod_spec([c], [], activeDeadlineSeconds=COLLECTOR_DEADLINE_SECONDS)}


def cleanup_job(spec, *, image: str, ttl_seconds: int) -> dict:
    """A Job deleting the job's directory from the PVC, then itself (TTL)."""
    c = {"name": "rm", "image": image, "command": ["rm", "-rf", job_dir(spec.job_id)],
         "resources": _helper_resources(), "securityContext": _container_security(),
         "volumeMounts": _mounts()}
    lab = labels(spec.tenant_id, spec.job_id, CLEANUP)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": cleanup_name(spec.job_id), "labels": lab},
            "spec": {"backoffLimit": 2, "ttlSecondsAfterFinished": ttl_seconds, "activeDeadlineSeconds": 600,
                     "template": {"metadata": {"labels": lab}, "spec": _pod_spec([c], [])}}}
