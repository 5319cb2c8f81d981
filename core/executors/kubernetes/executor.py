"""The Kubernetes executor: one Job per simulation.

The executor only routes each call to the module that owns it:

* tenants: :mod:`.tenant_objects` (Namespace, quota, limits, NetworkPolicy, ServiceAccount, PVC);
* starts: :mod:`.job_start` (the Job, then its input ConfigMaps);
* results: :mod:`.collection` (a collector pod reads the PVC back; a cleanup Job clears it);
* status: :mod:`.watcher` (a separate process), translated by :mod:`.translate`;
* the API server itself: :mod:`.client` (timeouts, normal outcomes, "away").

Cancelling deletes the Job (its pods and ConfigMaps go with it); the live log
is the sumo container's log through the API server.
"""
from __future__ import annotations

from kubernetes import client
from kubernetes.client.rest import ApiException

from core.domain.states import StatusEvent
from core.executors.base import CollectedResults, Executor, JobSpec
from core.executors.kubernetes import manifests as m
from core.executors.kubernetes.client import READ_TIMEOUT, Kube, allowing, api_client_from, api_server
from core.executors.kubernetes.collection import Collector
from core.executors.kubernetes.job_start import JobStarter
from core.executors.kubernetes.tenant_objects import TenantObjects
from core.scenario import ArchiveLimits
from core.storage.base import ObjectStore


class KubernetesExecutor(Executor):
    name = "kubernetes"

    def __init__(self, settings, bus=None, *, limits: ArchiveLimits, store: ObjectStore | None = None,
                 api: client.ApiClient | None = None, publish=None) -> None:
        self.settings = settings
        self._store = store
        self.kube = Kube(api or api_client_from(settings))
        self._publish = publish or (bus.publish_status if bus is not None else None)
        self.tenants = TenantObjects(self.kube, settings)
        self.starter = JobStarter(self.kube, settings, limits, self.tenants, lambda: self.store, self.publish)
        self.collector = Collector(self.kube, settings, self.starter.create_quota_aware)

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            from core.storage.factory import build_store

            self._store = build_store(self.settings)
        return self._store

    def publish(self, event: StatusEvent) -> None:
        if self._publish is not None:
            self._publish(event)

    def ensure_tenant(self, tenant: dict) -> None:
        self.tenants.ensure(tenant)

    def start(self, spec: JobSpec) -> None:
        self.starter.start(spec)

    def cancel(self, spec: JobSpec) -> None:
        allowing(self.kube.batch.delete_namespaced_job, m.job_name(spec.job_id), spec.namespace,
                 propagation_policy="Foreground", allow=(404,))

    def _job_pod(self, spec: JobSpec, **kw):
        sel = f"{m.JOB_LABEL}={spec.job_id},{m.COMPONENT}={m.SIMULATION}"
        pods = allowing(self.kube.core.list_namespaced_pod, spec.namespace, label_selector=sel, allow=(404,), **kw)
        items = pods.items if pods else []
        return max(items, key=lambda p: p.metadata.creation_timestamp, default=None)

    def read_live_log(self, spec: JobSpec, start: int, limit: int) -> bytes | None:
        """Bytes ``start:start+limit`` of the sumo container's log (read up to ``start+limit``)."""
        with api_server():
            pod = self._job_pod(spec, _request_timeout=READ_TIMEOUT)
            if pod is None:
                return None
            try:
                resp = self.kube.core.read_namespaced_pod_log(
                    pod.metadata.name, spec.namespace, container=m.MAIN_CONTAINER, limit_bytes=max(1, start + limit),
                    _preload_content=False, _request_timeout=READ_TIMEOUT)
            except ApiException as exc:
                if exc.status in (400, 404):  # not started yet, or gone
                    return None
                raise
            return resp.data[start:start + limit]

    def collect(self, spec: JobSpec, store: ObjectStore) -> CollectedResults:
        return self.collector.collect(spec, store)

    def release(self, spec: JobSpec) -> None:
        self.collector.release(spec)

    def capacity(self) -> dict:
        from kubernetes.utils import parse_quantity

        running: dict[str, int] = {}
        sims: dict[str, int] = {}
        with api_server():
            pods = self.kube.core.list_pod_for_all_namespaces(field_selector="status.phase=Running",
                                                              _request_timeout=READ_TIMEOUT).items
            node_list = self.kube.core.list_node(_request_timeout=READ_TIMEOUT).items
        for pod in pods:
            node = pod.spec.node_name or ""
            running[node] = running.get(node, 0) + 1
            if (pod.metadata.labels or {}).get(m.COMPONENT) == m.SIMULATION:
                sims[node] = sims.get(node, 0) + 1

        def res(q: dict | None) -> dict:
            q = q or {}
            return {"cpu": float(parse_quantity(q.get("cpu", "0"))),
                    "memory_gi": round(float(parse_quantity(q.get("memory", "0"))) / 2**30, 1)}

        nodes = []
        for node in node_list:
            ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
            nodes.append({"name": node.metadata.name, "ready": ready,
                          "schedulable": not node.spec.unschedulable,
                          "capacity": res(node.status.capacity), "allocatable": res(node.status.allocatable),
                          "running_pods": running.get(node.metadata.name, 0),
                          "running_simulations": sims.get(node.metadata.name, 0)})
        return {"executor": self.name, "nodes": nodes}
