"""Bringing a finished job's outputs from the tenant's PVC into the result store, and clearing them after.

``collect`` runs a short-lived collector pod mounting the tenant PVC that
prints a base64 tar.gz of the job's outputs, log and statistics to its log;
the tar's digest and each file's sha256 are checked before upload.
Repeating it re-runs (or re-reads) the collector.  A collector pod that
Kubernetes cannot start (no room on any node, an image it cannot pull) is not
waited for on a worker thread: :class:`CannotCollectYet`, and the sweeper's
re-sends try again.  ``release`` starts a cleanup Job removing
``/results/<job_id>`` (it deletes itself through its TTL).
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from core.executors.base import LOG_NAME, STATISTICS_NAME, CannotCollectYet, CollectedResults, JobSpec
from core.executors.kubernetes import manifests as m
from core.executors.kubernetes.client import Kube, allowing
from core.executors.kubernetes.translate import pending_reason
from core.scenario.paths import normalize_entry_name
from core.storage.base import ObjectStore
from core.waits import wait_until

COLLECT_TIMEOUT = 300.0


class Collector:
    def __init__(self, kube: Kube, settings, create_quota_aware: Callable) -> None:
        self.kube, self.settings = kube, settings
        self._create_quota_aware = create_quota_aware

    def collect(self, spec: JobSpec, store: ObjectStore) -> CollectedResults:
        text = self._run_collector(spec)
        header, tar_bytes = parse_collector_log(text)
        files: list[dict] = []
        statistics, log_archived = None, False
        with tempfile.TemporaryDirectory(prefix="sumo-k8-collect-") as tmp:
            extract_listed(tar_bytes, header, Path(tmp))
            ordered = sorted(n for n in header if n.startswith("run/")) + \
                [n for n in (STATISTICS_NAME, LOG_NAME) if n in header]
            for member in ordered:
                path = Path(tmp) / member
                if not path.is_file():
                    raise RuntimeError(f"job {spec.job_id}: {member} is listed but missing from the collector's archive")
                digest = _sha256(path)
                if digest != header[member]:
                    raise RuntimeError(f"job {spec.job_id}: {member} arrived corrupted (sha256 mismatch)")
                name = member[4:] if member.startswith("run/") else member
                store.put_file(spec.result_prefix + name, path)
                files.append({"name": name, "size": path.stat().st_size, "sha256": digest})
                if member == STATISTICS_NAME:
                    statistics = path.read_bytes()
                log_archived = log_archived or member == LOG_NAME
        allowing(self.kube.core.delete_namespaced_pod, m.collector_name(spec.job_id), spec.namespace,
                 grace_period_seconds=0, allow=(404,))
        return CollectedResults(files=files, statistics=statistics, log_archived=log_archived)

    def _run_collector(self, spec: JobSpec) -> str:
        core, ns, name = self.kube.core, spec.namespace, m.collector_name(spec.job_id)
        pod = allowing(core.read_namespaced_pod, name, ns, allow=(404,))
        if pod is not None and pod.status.phase == "Failed":
            allowing(core.delete_namespaced_pod, name, ns, grace_period_seconds=0, allow=(404,))
            wait_until(lambda: allowing(core.read_namespaced_pod, name, ns, allow=(404,)) is None, 60,
                       f"old collector {name} gone", interval=0.2, backoff=1.5)
            pod = None
        if pod is None:
            self._create_quota_aware(spec, core.create_namespaced_pod,
                                     m.collector_pod(spec, image=self.settings.sumo_image), report=False)

        def phase_past(*phases):
            def check():
                p = allowing(core.read_namespaced_pod, name, ns, allow=(404,))
                if p is not None and p.status.phase == "Pending":
                    why = pending_reason(self.kube.api.sanitize_for_serialization(p))
                    if why is not None:  # no room, an image it cannot pull …: a wait that may last, not on this thread
                        raise CannotCollectYet(f"the collector pod {ns}/{name} cannot start: {why}")
                return p.status.phase if p is not None and p.status.phase not in phases else None
            return check

        wait_until(phase_past("Pending"), COLLECT_TIMEOUT, f"collector pod {ns}/{name} started",
                   interval=0.2, backoff=1.5)
        # Follow the log while it is written: the kubelet's follow survives its log rotation.
        text = core.read_namespaced_pod_log(name, ns, follow=True, _preload_content=False,
                                            _request_timeout=COLLECT_TIMEOUT).data.decode()
        phase = wait_until(phase_past("Pending", "Running"), COLLECT_TIMEOUT, f"collector pod {ns}/{name} finished",
                           interval=0.2, backoff=1.5)
        if phase != "Succeeded":
            raise RuntimeError(f"collector pod {name} failed: {text[-2000:]}")
        return text

    def release(self, spec: JobSpec) -> None:
        """Delete ``/results/<job_id>`` through a self-deleting cleanup Job (fire and forget)."""
        allowing(self.kube.core.delete_namespaced_pod, m.collector_name(spec.job_id), spec.namespace, allow=(404,))
        body = m.cleanup_job(spec, image=self.settings.sumo_image, ttl_seconds=self.settings.job_ttl_seconds)
        allowing(self.kube.batch.create_namespaced_job, spec.namespace, body)


def parse_collector_log(text: str) -> tuple[dict, bytes]:
    """Split the collector's output into its header ({name: sha256}) and the verified tar.gz bytes."""
    lines = text.rstrip("\n").split("\n")
    if len(lines) < 2 or not lines[-1].startswith("END "):
        raise RuntimeError("collector output is truncated")
    header = json.loads(lines[0])["files"]
    raw = base64.b64decode("".join(lines[1:-1]))
    if hashlib.sha256(raw).hexdigest() != lines[-1][4:].strip():
        raise RuntimeError("collector output is corrupted (archive digest mismatch)")
    return header, raw


def extract_listed(tar_gz: bytes, names, into: Path) -> None:
    """Write the regular files of the collector's archive that its header lists under ``into``.

    Member by member rather than ``extractall``: only listed regular files with safe relative
    names are written (no links, devices, absolute paths or ``..``).  ``extractall(filter="data")``
    would check the same, but only from Python 3.11.4 on.
    """
    wanted = set(names)
    with tarfile.open(fileobj=io.BytesIO(tar_gz), mode="r:gz") as tar:
        for member in tar:
            if member.name not in wanted:
                continue
            if not member.isfile() or normalize_entry_name(member.name) != member.name:
                raise RuntimeError(f"collector archive: {member.name!r} is not a plain file inside the job's directory")
            target = into.joinpath(*member.name.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
