"""Starting a job on the cluster: its Job, then its input ConfigMaps owned by the Job.

Two API calls per start.  No read first: the create answers AlreadyExists on a
re-delivery, and only then is the Job read for its uid (its ConfigMaps are
created again, AlreadyExists for those that exist; a Job left suspended by an
earlier version is resumed).  A ConfigMap never exists without its Job, so
none is ever orphaned; the Job's pod cannot start before its ConfigMap volumes
exist (the kubelet retries the mount).  Creating the Job suspended and
resuming it once its ConfigMaps exist would cost one more call and two more Job
status writes (bench/HISTORY.md).  Responses are not turned into client models
(only the uid is needed), which saves CPU per call.

The input is the validated scenario re-packed (only accepted files, root folder
stripped), or the upload itself when it already is exactly that.
"""
from __future__ import annotations

import io
import logging
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

from kubernetes.client.rest import ApiException

from core.clock import utcnow
from core.domain.states import JobStatus, StatusEvent
from core.executors.base import JobSpec
from core.executors.kubernetes import manifests as m
from core.executors.kubernetes.client import MERGE, Kube, api_message, drain, json_body, quota_refusal, reason
from core.executors.kubernetes.tenant_objects import QUOTA_SETTLE_TIMEOUT, TenantObjects
from core.scenario import ArchiveLimits
from core.storage.base import ObjectNotFound, ObjectStore
from core.waits import wait_until

log = logging.getLogger(__name__)


class JobStarter:
    def __init__(self, kube: Kube, settings, limits: ArchiveLimits, tenants: TenantObjects,
                 store: Callable[[], ObjectStore], publish: Callable[[StatusEvent], None]) -> None:
        self.kube, self.settings, self.limits, self.tenants = kube, settings, limits, tenants
        self._store, self.publish = store, publish

    def start(self, spec: JobSpec) -> None:
        ns, name = spec.namespace, m.job_name(spec.job_id)
        self.tenants.ensure_basics(spec)
        try:
            archive, config_file, log_file = self.repack(spec)
        except (ObjectNotFound, OSError, ValueError) as exc:  # repack turns ScenarioError into ValueError
            job = self._read_job(ns, name)
            if job is not None and not job["spec"].get("suspend"):
                return  # a re-delivery of a start that already happened (its input may be gone since)
            self._fail(spec, f"could not prepare the input: {exc}")
            return
        parts = m.chunk(archive)
        body = m.simulation_job(spec, image=self.settings.sumo_image, config_file=config_file, log_file=log_file,
                                chunks=len(parts), backoff_limit=self.settings.job_backoff_limit,
                                ttl_seconds=self.settings.job_ttl_seconds, max_output_mb=self.settings.max_output_mb,
                                max_log_mb=self.settings.max_log_mb, suspend=False)
        try:
            job = json_body(self.kube.batch.create_namespaced_job(ns, body, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:  # the namespace is gone (deleted since it was ensured): the retry recreates it
                self.tenants.ready_namespaces.discard(ns)
            if exc.status != 409:
                raise
            job = self._read_job(ns, name)  # AlreadyExists: a re-delivered start; make sure its inputs exist
            if job is None:
                raise RuntimeError(f"Job {ns}/{name} exists and is gone again; retrying the start") from exc
        for cm in m.input_configmaps(spec, parts, job["metadata"]["uid"]):
            self.create_quota_aware(spec, lambda ns_, body_: drain(
                self.kube.core.create_namespaced_config_map(ns_, body_, _preload_content=False)), cm)
        if job["spec"].get("suspend"):  # created suspended (by an earlier version): release it
            drain(self.kube.batch.patch_namespaced_job(name, ns, {"spec": {"suspend": False}}, _content_type=MERGE,
                                                       _preload_content=False))
        log.info("job %s: Job %s/%s started with %d input ConfigMap(s)", spec.job_id, ns, name, len(parts))

    def _read_job(self, ns: str, name: str) -> dict | None:
        try:
            return json_body(self.kube.batch.read_namespaced_job(name, ns, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def repack(self, spec: JobSpec) -> tuple[bytes, str, str | None]:
        """The accepted files only, root folder stripped, as a zip; plus config and log paths.

        An upload that already is exactly that (no root folder, nothing ignored, plain names, stored or
        deflated entries) is used as it is: the same bytes on every delivery, no extraction, no re-compression.
        """
        from core.scenario import ScenarioError, extract_scenario, inspect_archive

        data = self._store().get_bytes(spec.input_key)  # sent whole in the ConfigMaps anyway: no temp copy first
        try:
            scenario = inspect_archive(io.BytesIO(data), spec.config_file, self.limits)
            if usable_as_is(io.BytesIO(data), scenario):
                return data, scenario.config_file, scenario.log_file
        except ScenarioError as exc:
            raise ValueError(str(exc)) from exc
        with tempfile.TemporaryDirectory(prefix="sumo-k8-") as tmp:
            src, run = Path(tmp) / "input.zip", Path(tmp) / "run"
            src.write_bytes(data)
            try:
                extract_scenario(src, scenario, run)
            except ScenarioError as exc:
                raise ValueError(str(exc)) from exc
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for rel in scenario.files:  # fixed timestamps: a re-delivered start re-creates identical chunks
                    zf.writestr(zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0)), (run / rel).read_bytes(),
                                compress_type=zipfile.ZIP_DEFLATED)
            return buf.getvalue(), scenario.config_file, scenario.log_file

    def create_quota_aware(self, spec: JobSpec, create, body: dict, report: bool = True) -> None:
        """Create in the job's namespace; when quota refuses, say why (PENDING, if ``report``) and retry briefly."""
        def attempt():
            try:
                create(spec.namespace, body)
            except ApiException as exc:
                if exc.status == 409 and reason(exc) == "AlreadyExists":
                    return True  # a re-delivered start: the object is there
                if exc.status == 409:
                    return False  # a write conflict (e.g. on the quota's usage): try again
                if quota_refusal(exc):
                    if report:
                        self.publish(StatusEvent(spec.job_id, JobStatus.PENDING, utcnow(),
                                                 reason=f"Forbidden: {api_message(exc)}"))
                    return False
                raise
            return True

        wait_until(attempt, QUOTA_SETTLE_TIMEOUT, f"{body['kind']} {body['metadata']['name']} admitted by quota",
                   interval=1.0, backoff=1.5)

    def _fail(self, spec: JobSpec, why: str) -> None:
        log.error("job %s: %s", spec.job_id, why)
        self.publish(StatusEvent(spec.job_id, JobStatus.FAILED, utcnow(), reason=why))


def usable_as_is(path: Path | BinaryIO, scenario) -> bool:
    """True when the archive holds exactly the scenario's files under their plain names (no root folder,
    nothing ignored, no duplicates), each stored or deflated, and each decompresses to exactly its declared
    (and checked) size with a valid CRC: what the init container unpacks is then exactly what the re-packed
    archive would hold, and a header lying about sizes is left to the re-pack, which refuses it."""
    if scenario.root:
        return False
    wanted = set(scenario.files)
    seen: set[str] = set()
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.endswith("/"):
                    continue  # a folder entry: the init container skips it
                if info.filename not in wanted or info.filename in seen \
                        or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    return False
                seen.add(info.filename)
                size = 0
                with zf.open(info) as member:
                    while block := member.read(1 << 16):
                        size += len(block)
                        if size > info.file_size:
                            return False
                if size != info.file_size:
                    return False
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError):
        return False
    return seen == wanted

