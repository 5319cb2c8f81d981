"""The status watcher: Jobs, Pods and FailedCreate Events → StatusEvents on the bus.

One thread per resource does list-then-watch across all namespaces (our
objects are selected by ``app.kubernetes.io/managed-by=sumo-k8``), resumes
from the last resourceVersion (bookmarks keep it fresh), re-lists on 410 Gone
and every ``resync_seconds`` so a missed event cannot lose a transition.
Only the holder of the Lease (:mod:`.lease`) watches; a standby keeps trying
and takes over when the Lease expires.

Translation is pure (:mod:`.translate`); this module adds what needs the API
(the exit code when the pod was not seen yet, the failed job's log tail) and
de-duplicates: an event is published when it differs from the last one
published for the job and does not go backwards.  A terminal event for a job
never seen RUNNING whose container did start is preceded by a RUNNING event,
so a watcher that was down while the job ran still reports both.
Every publish is safe to repeat: the state machine ignores duplicates.
Simulation Jobs carry the ``sumo-k8/status-reported`` finalizer, removed here
only after the Job's final status was published: a Job deleted by its TTL or
by ``cancel`` while no watcher runs waits for the next one.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Callable

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

from core.domain.states import JobStatus, StatusEvent
from core.executors.kubernetes import translate as t
from core.executors.kubernetes.lease import LeaderLease
from core.executors.kubernetes.manifests import COMPONENT, FINALIZER, JOB_LABEL, MAIN_CONTAINER, SELECTOR, SIMULATION

log = logging.getLogger(__name__)
EVENT_SELECTOR = "involvedObject.kind=Job,reason=FailedCreate"


class Watcher:
    def __init__(self, api: client.ApiClient, publish: Callable[[StatusEvent], None], *,
                 resync_seconds: float = 30.0, log_tail_lines: int = 20, lease: LeaderLease | None = None,
                 watch_timeout: int = 10, start_versions: dict[str, str] | None = None) -> None:
        self.core, self.batch = client.CoreV1Api(api), client.BatchV1Api(api)
        self.publish = publish
        self.resync_seconds, self.log_tail_lines = resync_seconds, log_tail_lines
        self.lease, self.watch_timeout = lease, watch_timeout
        #: resourceVersion to start watching from instead of listing (tests force a 410 with it).
        self.start_versions = dict(start_versions or {})
        self.lock = threading.RLock()
        self.jobs: dict[tuple[str, str], dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}   # kept after deletion: the final state has the exit code
        self.published: dict[str, tuple[JobStatus, str | None]] = {}
        self.leading = threading.Event()
        self.stats = {"lists": 0, "gone": 0, "errors": 0}
        self.streams = {
            "jobs": (self.batch.list_job_for_all_namespaces, {"label_selector": SELECTOR}, self._on_job),
            "pods": (self.core.list_pod_for_all_namespaces, {"label_selector": SELECTOR}, self._on_pod),
            "events": (self.core.list_event_for_all_namespaces, {"field_selector": EVENT_SELECTOR}, self._on_event),
        }

    # -- lifecycle -------------------------------------------------------------------------
    def run(self, stop: threading.Event, release_lease: bool = True) -> None:
        """Lead (or wait to) until ``stop`` is set."""
        threads = [threading.Thread(target=self._stream, args=(kind, stop), name=f"watch-{kind}", daemon=True)
                   for kind in self.streams]
        for th in threads:
            th.start()
        try:
            while not stop.is_set():
                leading = self._try_lead()
                if leading and not self.leading.is_set():
                    log.info("watcher: leading")
                    self.leading.set()
                elif not leading and self.leading.is_set():
                    log.warning("watcher: lost the lease, standing by")
                    self.leading.clear()
                stop.wait(self.lease.renew_period if self.lease else 1.0)
        finally:
            self.leading.clear()
            for th in threads:
                th.join(timeout=self.watch_timeout + 15)
            if self.lease is not None and release_lease:
                try:
                    self.lease.release()
                except (ApiException, HTTPError):
                    log.exception("watcher: could not release the lease")

    def _try_lead(self) -> bool:
        if self.lease is None:
            return True
        try:
            return self.lease.try_acquire()
        except (ApiException, HTTPError):
            log.exception("watcher: lease check failed")
            return False

    # -- list then watch -------------------------------------------------------------------------
    def _stream(self, kind: str, stop: threading.Event) -> None:
        list_fn, selector, handle = self.streams[kind]
        version = self.start_versions.pop(kind, None)
        while not stop.is_set():
            if not self.leading.wait(timeout=1.0):
                version = None  # re-list when (re)gaining the lease
                continue
            try:
                if version is None:
                    version = self._list(kind, list_fn, selector, handle)
                version = self._watch(list_fn, selector, handle, version, stop)
            except ApiException as exc:
                if exc.status == 410:
                    self.stats["gone"] += 1
                    log.info("watcher: %s resourceVersion %s expired (410), re-listing", kind, version)
                else:
                    self.stats["errors"] += 1
                    # Refused credentials or a missing RBAC rule never heal by retrying: say so loudly.
                    level = logging.ERROR if exc.status in (401, 403) else logging.WARNING
                    log.log(level, "watcher: %s watch failed: %s %s", kind, exc.status, exc.reason)
                    stop.wait(1.0)
                version = None
            except (HTTPError, OSError, ValueError) as exc:
                self.stats["errors"] += 1
                log.warning("watcher: %s watch interrupted: %s", kind, exc)
                stop.wait(1.0)
                version = None
            except Exception:  # noqa: BLE001 - a bug in one event must not kill the stream
                self.stats["errors"] += 1
                log.exception("watcher: %s handler failed", kind)
                stop.wait(1.0)
                version = None

    def _list(self, kind, list_fn, selector, handle) -> str:
        resp = list_fn(**selector, _preload_content=False, _request_timeout=60)
        body = json.loads(resp.data)
        self.stats["lists"] += 1
        items = body.get("items") or []
        seen = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in items}
        if kind == "jobs":
            with self.lock:
                for key in [k for k in self.jobs if k not in seen]:
                    handle("DELETED", self.jobs[key])  # vanished while we were not watching
        for obj in items:
            handle("ADDED", obj)
        return body["metadata"]["resourceVersion"]

    def _watch(self, list_fn, selector, handle, version: str, stop: threading.Event) -> str | None:
        """Follow changes from ``version`` until resync time; returns where to resume (None: re-list)."""
        deadline = threading.Event()
        timer = threading.Timer(self.resync_seconds, deadline.set)
        timer.daemon = True
        timer.start()
        try:
            while not (stop.is_set() or deadline.is_set() or not self.leading.is_set()):
                resp = list_fn(**selector, watch=True, resource_version=version, allow_watch_bookmarks=True,
                               timeout_seconds=self.watch_timeout, _preload_content=False,
                               _request_timeout=(10, self.watch_timeout + 10))
                try:
                    for line in iter_resp_lines(resp):
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if event["type"] != "BOOKMARK":
                            handle(event["type"], obj)
                        if stop.is_set() or not self.leading.is_set():
                            break
                finally:
                    resp.close()
                    resp.release_conn()
            return None if deadline.is_set() else version
        finally:
            timer.cancel()

    # -- handlers ------------------------------------------------------------------------------------
    def _on_job(self, kind: str, job: dict) -> None:
        key = (job["metadata"].get("namespace", ""), job["metadata"]["name"])
        job_id = t.simulation_job_id(job)
        with self.lock:
            if kind == "DELETED":
                self.jobs.pop(key, None)
            else:
                self.jobs[key] = job
            pods = self._pods_of(job_id)
        event = t.translate_job(job, pods, deleted=kind == "DELETED")
        if event is not None and event.status.is_terminal and job_id and not pods:
            pods = self._fetch_pods(key[0], job_id)  # the pod stream has not caught up (or we restarted)
            event = t.translate_job(job, pods, deleted=kind == "DELETED")
        if event is not None and event.status is JobStatus.FAILED:
            event = self._enrich_failure(event, key[0], pods)
        self._emit(event, t.run_started_at(job, pods))
        if event is not None and event.status.is_terminal and kind != "DELETED":
            self._release_finalizer(job)
        if kind == "DELETED" and job_id:
            with self.lock:
                for k in [k for k, p in self.pods.items() if t.simulation_job_id(p) == job_id]:
                    del self.pods[k]
                self.published.pop(job_id, None)

    def _release_finalizer(self, job: dict) -> None:
        """Once a deleted Job's final status is published, let its deletion complete."""
        meta = job["metadata"]
        finalizers = meta.get("finalizers") or []
        if not meta.get("deletionTimestamp") or FINALIZER not in finalizers:
            return
        body = {"metadata": {"finalizers": [f for f in finalizers if f != FINALIZER],
                             "resourceVersion": meta["resourceVersion"]}}
        try:
            self.batch.patch_namespaced_job(meta["name"], meta["namespace"], body,
                                            _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 403:  # not this watcher's to release (RBAC): its stream must go on regardless
                log.error("watcher: may not release the finalizer of Job %s/%s (%s %s); its deletion waits",
                          meta["namespace"], meta["name"], exc.status, exc.reason)
            elif exc.status not in (404, 409):  # gone, or changed meanwhile: its next event retries
                raise

    def _on_pod(self, kind: str, pod: dict) -> None:
        if t.simulation_job_id(pod) is None:
            return
        with self.lock:
            self.pods[(pod["metadata"].get("namespace", ""), pod["metadata"]["name"])] = pod
        self._emit(t.translate_pod(pod) if kind != "DELETED" else None)

    def _on_event(self, kind: str, event: dict) -> None:
        if kind == "DELETED":
            return
        with self.lock:
            names = {k: t.simulation_job_id(j) for k, j in self.jobs.items() if t.simulation_job_id(j)}
        self._emit(t.translate_event(event, names))

    def _pods_of(self, job_id: str | None) -> list[dict]:
        return [p for p in self.pods.values() if job_id and t.simulation_job_id(p) == job_id]

    # -- enrichment and de-duplication ----------------------------------------------------------------
    def _fetch_pods(self, namespace: str, job_id: str) -> list[dict]:
        try:
            resp = self.core.list_namespaced_pod(
                namespace, label_selector=f"{JOB_LABEL}={job_id},{COMPONENT}={SIMULATION}", _preload_content=False)
        except (ApiException, HTTPError):
            return []
        return json.loads(resp.data).get("items") or []

    def _enrich_failure(self, event: StatusEvent, namespace: str, pods: list[dict]) -> StatusEvent:
        """Add the exit code (from a fresh pod list if our cache lags) and the log's last lines."""
        from dataclasses import replace

        if event.exit_code is None and pods:
            fresh = self._fetch_pods(namespace, event.job_id)
            job = self._job_by_id(event.job_id)
            again = t.translate_job(job, fresh) if fresh and job else None
            if again is not None and again.exit_code is not None:
                event, pods = replace(again, at=event.at), fresh
        if event.log_tail:  # the run's own last lines came in its termination message
            return event
        pod = t.newest_pod(pods)
        tail = self._log_tail(namespace, pod) if pod else None
        return replace(event, log_tail=tail) if tail else event

    def _job_by_id(self, job_id: str) -> dict | None:
        with self.lock:
            return next((j for j in self.jobs.values() if t.simulation_job_id(j) == job_id), None)

    def _log_tail(self, namespace: str, pod: dict) -> str | None:
        _, container = t.exit_code(pod)
        try:
            resp = self.core.read_namespaced_pod_log(
                pod["metadata"]["name"], namespace, container=container or MAIN_CONTAINER,
                tail_lines=self.log_tail_lines, _preload_content=False)
        except (ApiException, HTTPError):
            return None  # the pod is gone (e.g. deleted at the deadline)
        return resp.data.decode("utf-8", errors="replace").rstrip("\n") or None

    def _emit(self, event: StatusEvent | None, started=None) -> None:
        if event is None:
            return
        with self.lock:
            last = self.published.get(event.job_id)
            if last is not None and (last == (event.status, event.reason) or event.status.rank < last[0].rank
                                     or last[0].is_terminal):
                return
            if (event.status.is_terminal and started is not None
                    and (last is None or last[0].rank < JobStatus.RUNNING.rank)):
                self._send(StatusEvent(event.job_id, JobStatus.RUNNING, started))
            self._send(event)
            self.published[event.job_id] = (event.status, event.reason)

    def _send(self, event: StatusEvent) -> None:
        log.info("watcher: job %s %s %s", event.job_id, event.status.value, event.reason or "")
        self.publish(event)

