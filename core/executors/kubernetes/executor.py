"""The Kubernetes executor: one Job per simulation.

The executor only routes each call to the module that owns it:

* tenants: :mod:`.tenant_objects` (Namespace, quota, limits, NetworkPolicy, ServiceAccount, PVC);
* starts: :mod:`.job_start` (the Job, then its input ConfigMaps);
* results: :mod:`.collection` (a collector pod uploads the PVC's files to the API; a cleanup Job clears them);
* status: :mod:`.watcher` (a separate process), translated by :mod:`.translate`;
* the API server itself: :mod:`.client` (timeouts, normal outcomes, "away").

Cancelling deletes the Job (its pods and ConfigMaps go with it); the live log
is the sumo container's log through the API server, read by timestamp (:mod:`.pod_log`).
"""
from __future__ import annotations

from typing import Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

from core.clock import utcnow
from core.domain.states import JobStatus, StatusEvent
from core.executors.base import LOST, CollectedResults, Executor, JobSpec, LogPosition
from core.executors.kubernetes import manifests as m
from core.executors.kubernetes import pod_log
from core.executors.kubernetes.client import READ_TIMEOUT, Kube, allowing, api_client_from, api_server, json_body
from core.executors.kubernetes.translate import newest_pod, translate_job, translate_pod
from core.executors.kubernetes.collection import Collector
from core.executors.kubernetes.job_start import JobStarter
from core.executors.kubernetes.tenant_objects import TenantObjects
from core.scenario import ArchiveLimits
from core.storage.base import ObjectStore


class KubernetesExecutor(Executor):
    name = "kubernetes"

    def __init__(self, settings, bus=None, *, limits: ArchiveLimits, store: ObjectStore | None = None,
                 api: client.ApiClient | None = None, publish=None,
                 uploads: Callable[[str], dict[str, dict]] | None = None) -> None:
        """``uploads(job_id)``: the files the API received from the job's collector pod (core.services.collect_uploads),
        which :meth:`collect` checks against the collector's manifest."""
        self.settings = settings
        self._store = store
        self.kube = Kube(api or api_client_from(settings))
        self._publish = publish or (bus.publish_status if bus is not None else None)
        self.tenants = TenantObjects(self.kube, settings)
        self.starter = JobStarter(self.kube, settings, limits, self.tenants, lambda: self.store, self.publish)
        self.collector = Collector(self.kube, settings, self.starter.create_quota_aware, uploads)

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

    def _live_pod(self, spec: JobSpec) -> str | None:
        pod = self._job_pod(spec, _request_timeout=READ_TIMEOUT)
        return None if pod is None else pod.metadata.name

    def _pod_log(self, spec: JobSpec, read, **query):
        """``read(chunks)`` of the sumo container's log; None when there is none (not started yet, or gone)."""
        with api_server():
            pod = self._live_pod(spec)
            if pod is None:
                return None
            try:
                chunks = pod_log.request(self.kube, spec.namespace, pod, READ_TIMEOUT, container=m.MAIN_CONTAINER,
                                         **query)
            except ApiException as exc:
                if exc.status in (400, 404):  # not started yet, or gone
                    return None
                raise
            try:
                return read(chunks)
            finally:
                chunks.close()

    def read_live_log(self, spec: JobSpec, start: int, limit: int) -> bytes | None:
        """Bytes ``start:start+limit`` of the sumo container's current log file (the kubelet's rotation drops
        the older ones: see :meth:`read_live_log_from`), holding ``limit`` of them."""
        return self._pod_log(spec, lambda chunks: pod_log.skip_then_read(chunks, start, limit),
                             limitBytes=max(1, start + limit))

    def read_live_log_from(self, spec: JobSpec, position: LogPosition, limit: int) -> tuple[bytes, LogPosition] | None:
        """The lines after ``position``'s mark (the last delivered line's timestamp, :mod:`.pod_log`), read from
        that line's second on: neither from the start of the log nor dependent on the kubelet's rotation."""
        mark = pod_log.Mark.parse(position.mark) if position.mark else None
        got = self._pod_log(spec, lambda chunks: pod_log.after(chunks, mark, limit), timestamps=True,
                            sinceTime=mark.since_time() if mark else None)
        if got is None:
            return None
        data, new = got
        return data, LogPosition(position.offset + len(data), new.token() if new else position.mark)

    def tail_live_log(self, spec: JobSpec, lines: int, max_bytes: int) -> bytes | None:
        """The last ``lines`` lines (``tailLines``: the kubelet reads them from the end), at most ``max_bytes``."""
        return self._pod_log(spec, lambda chunks: pod_log.tail(chunks, max_bytes), tailLines=max(1, lines))

    def observe(self, spec: JobSpec) -> StatusEvent | None:
        """The job's status from its Job and newest pod as they are now (translated as the watcher does):
        SUCCEEDED/FAILED from the Job's condition, else PENDING/RUNNING from the pod, else None; FAILED
        (:data:`LOST`) when the Job is gone (deleted, or its namespace) while no final status was recorded."""
        name = m.job_name(spec.job_id)
        with api_server():
            try:
                job = json_body(self.kube.batch.read_namespaced_job(name, spec.namespace, _preload_content=False,
                                                                    _request_timeout=READ_TIMEOUT))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return StatusEvent(spec.job_id, JobStatus.FAILED, utcnow(), reason=(
                    f"{LOST}: its Kubernetes Job {spec.namespace}/{name} no longer exists, and its end was never "
                    "recorded (the status event was lost); how the run ended is unknown"))
            selector = f"{m.JOB_LABEL}={spec.job_id},{m.COMPONENT}={m.SIMULATION}"
            pods = json_body(self.kube.core.list_namespaced_pod(spec.namespace, label_selector=selector,
                                                                 _preload_content=False,
                                                                 _request_timeout=READ_TIMEOUT)).get("items") or []
        event = translate_job(job, pods)
        if event is None and pods:
            event = translate_pod(newest_pod(pods))
        return event

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
