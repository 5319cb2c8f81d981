"""Bringing a finished job's outputs from the tenant's PVC into the result store, and clearing them after.

``collect`` runs a short-lived collector pod that mounts the tenant's PVC read-only and uploads each file
itself, streamed, to the API (``PUT <COLLECT_URL>/internal/jobs/{id}/files/{name}`` with the job's token,
core.collect_tokens); the API stores it and records its size and sha256 (core.services.collect_uploads).  The
pod's log ends with one manifest line of what it sent.  So nothing of the outputs passes through this process,
and nothing depends on the pod log being complete (the kubelet rotates it): ``collect`` waits for the pod to
succeed, checks its manifest against what the API recorded (:func:`cross_check`), and reads the statistics
back from the store (bounded) for the KPIs.  Repeating it re-reads (or re-runs) the collector; a re-upload
replaces what was received.

A collector pod that Kubernetes cannot start (no room on any node, an image it cannot pull) is not waited for
on a worker thread: :class:`CannotCollectYet`, and the sweeper's re-sends try again.  ``release`` starts a
cleanup Job removing ``/results/<job_id>`` (it deletes itself through its TTL).
"""
from __future__ import annotations

import json
import logging
import re
from typing import Callable

from core.collect_tokens import NoTokenKey, job_token, token_key
from core.executors.base import LOG_NAME, STATISTICS_NAME, CannotCollectYet, CollectedResults, JobSpec
from core.executors.kubernetes import manifests as m
from core.executors.kubernetes.client import READ_TIMEOUT, Kube, allowing
from core.executors.kubernetes.pod_scripts import MANIFEST_PREFIX
from core.executors.kubernetes.translate import pending_reason
from core.scenario.paths import normalize_entry_name
from core.storage.base import ObjectNotFound, ObjectStore
from core.waits import wait_until

log = logging.getLogger(__name__)
START_TIMEOUT = 300.0
#: Most bytes of the collector's log read back: its manifest line and little else.
LOG_LIMIT = 2 * m.COLLECT_MAX_MANIFEST_BYTES
#: Statistics larger than this are not parsed for KPIs (SUMO's are a few KiB).
MAX_STATISTICS_BYTES = 8 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CollectionMismatch(RuntimeError):
    """The collector's manifest and what the API recorded disagree (or the manifest is missing)."""


class Collector:
    def __init__(self, kube: Kube, settings, create_quota_aware: Callable,
                 uploads: Callable[[str], dict[str, dict]] | None) -> None:
        self.kube, self.settings = kube, settings
        self._create_quota_aware = create_quota_aware
        self._uploads = uploads

    def collect(self, spec: JobSpec, store: ObjectStore) -> CollectedResults:
        if self._uploads is None:
            raise RuntimeError("this executor was built without the API's record of uploads (core.bootstrap)")
        core, ns, name = self.kube.core, spec.namespace, m.collector_name(spec.job_id)
        phase = self._run_collector(spec)
        text = self._log(spec)
        try:
            if phase != "Succeeded":
                raise RuntimeError(f"collector pod {ns}/{name} failed: {text[-2000:].strip() or phase}")
            manifest = parse_manifest(text)
            files = cross_check(manifest["files"], self._uploads(spec.job_id))
        except RuntimeError:
            # The next attempt runs a new collector, which uploads again (a re-upload replaces).
            allowing(core.delete_namespaced_pod, name, ns, grace_period_seconds=0, allow=(404,))
            raise
        if manifest["skipped_count"]:
            log.warning("job %s: the collector left %d file(s) out: %s", spec.job_id, manifest["skipped_count"],
                        manifest["skipped"][:10])
        names = {f["name"] for f in files}
        statistics = read_bounded(store, spec.result_prefix + STATISTICS_NAME, MAX_STATISTICS_BYTES) \
            if STATISTICS_NAME in names else None
        allowing(core.delete_namespaced_pod, name, ns, grace_period_seconds=0, allow=(404,))
        return CollectedResults(files=files, statistics=statistics, log_archived=LOG_NAME in names)

    def _token(self, spec: JobSpec) -> str:
        try:
            return job_token(token_key(self.settings.collect_token_secret, self.settings.admin_key), spec.job_id)
        except NoTokenKey as exc:
            raise RuntimeError(f"job {spec.job_id}: cannot collect: {exc}") from None

    def _run_collector(self, spec: JobSpec) -> str:
        """Start the collector pod unless it exists; its phase once it ended (Succeeded or Failed)."""
        core, ns, name = self.kube.core, spec.namespace, m.collector_name(spec.job_id)
        pod = allowing(core.read_namespaced_pod, name, ns, allow=(404,))
        if pod is not None and pod.status.phase == "Failed":
            allowing(core.delete_namespaced_pod, name, ns, grace_period_seconds=0, allow=(404,))
            wait_until(lambda: allowing(core.read_namespaced_pod, name, ns, allow=(404,)) is None, 60,
                       f"old collector {name} gone", interval=0.2, backoff=1.5)
            pod = None
        if pod is None:
            s = self.settings
            body = m.collector_pod(spec, image=s.sumo_image, collect_url=s.collect_url, token=self._token(spec),
                                   max_output_mb=s.max_output_mb, max_log_mb=s.max_log_mb)
            self._create_quota_aware(spec, core.create_namespaced_pod, body, report=False)

        def phase_past(*phases):
            def check():
                p = allowing(core.read_namespaced_pod, name, ns, allow=(404,))
                if p is not None and p.status.phase == "Pending":
                    why = pending_reason(self.kube.api.sanitize_for_serialization(p))
                    if why is not None:  # no room, an image it cannot pull …: a wait that may last, not on this thread
                        raise CannotCollectYet(f"the collector pod {ns}/{name} cannot start: {why}")
                return p.status.phase if p is not None and p.status.phase not in phases else None
            return check

        wait_until(phase_past("Pending"), START_TIMEOUT, f"collector pod {ns}/{name} started",
                   interval=0.2, backoff=1.5)
        return wait_until(phase_past("Pending", "Running"), m.COLLECTOR_DEADLINE_SECONDS + 60,
                          f"collector pod {ns}/{name} finished", interval=0.2, backoff=1.5)

    def _log(self, spec: JobSpec) -> str:
        resp = self.kube.core.read_namespaced_pod_log(
            m.collector_name(spec.job_id), spec.namespace, container="collect", limit_bytes=LOG_LIMIT,
            _preload_content=False, _request_timeout=READ_TIMEOUT)
        try:
            return resp.data.decode("utf-8", errors="replace")
        finally:
            resp.release_conn()

    def release(self, spec: JobSpec) -> None:
        """Delete ``/results/<job_id>`` through a self-deleting cleanup Job (fire and forget)."""
        allowing(self.kube.core.delete_namespaced_pod, m.collector_name(spec.job_id), spec.namespace, allow=(404,))
        body = m.cleanup_job(spec, image=self.settings.sumo_image, ttl_seconds=self.settings.job_ttl_seconds)
        allowing(self.kube.batch.create_namespaced_job, spec.namespace, body)


def parse_manifest(text: str) -> dict:
    """The collector's manifest (its last line starting with ``SUMO-K8-MANIFEST``): ``files`` as
    [{name, size, sha256}] (outputs first, then the statistics and the log), what it left out and why."""
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith(MANIFEST_PREFIX)), None)
    if line is None:
        raise CollectionMismatch("the collector's log ends without its manifest")
    try:
        data = json.loads(line[len(MANIFEST_PREFIX):])
        entries = [(str(n), int(s), str(h)) for n, s, h in data["files"]]
        skipped, count = list(data.get("skipped") or []), int(data.get("skipped_count") or 0)
    except (ValueError, TypeError, KeyError) as exc:
        raise CollectionMismatch(f"the collector's manifest cannot be read: {exc}") from None
    files = []
    for name, size, digest in entries:
        if normalize_entry_name(name) != name or name.endswith("/") or size < 0 or not _SHA256.match(digest):
            raise CollectionMismatch(f"the collector's manifest names {name!r} ({size} bytes, sha256 {digest!r})")
        files.append({"name": name, "size": size, "sha256": digest})
    own = {STATISTICS_NAME: 1, LOG_NAME: 2}
    files.sort(key=lambda f: own.get(f["name"], 0))  # stable: the outputs keep the collector's order
    return {"files": files, "skipped": skipped, "skipped_count": count, "max_rss_kib": data.get("max_rss_kib")}


def cross_check(files: list[dict], recorded: dict[str, dict]) -> list[dict]:
    """``files`` (the collector's manifest) when the API recorded each with the same size and sha256."""
    for f in files:
        got = recorded.get(f["name"])
        if got is None:
            raise CollectionMismatch(f"{f['name']}: in the collector's manifest, but the API recorded no upload of it")
        if (got["size"], got["sha256"]) != (f["size"], f["sha256"]):
            raise CollectionMismatch(f"{f['name']}: the collector sent {f['size']} bytes (sha256 {f['sha256']}), "
                                     f"the API received {got['size']} bytes (sha256 {got['sha256']})")
    return files


def read_bounded(store: ObjectStore, key: str, limit: int) -> bytes | None:
    """The object's bytes if it holds at most ``limit`` of them, else None (never more than that in memory)."""
    out = bytearray()
    try:
        for chunk in store.iter_bytes(key, chunk_size=min(limit, 1 << 20)):
            out += chunk
            if len(out) > limit:
                return None
    except ObjectNotFound:
        raise CollectionMismatch(f"{key} was recorded but is not in the result store") from None
    return bytes(out)
