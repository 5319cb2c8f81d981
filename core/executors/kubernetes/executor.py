"""The Kubernetes executor: one Job per simulation.

* ``ensure_tenant`` server-side applies the tenant's Namespace, ResourceQuota,
  LimitRange, results PVC, deny-all NetworkPolicy and ``sumo-runner``
  ServiceAccount (manifests in :mod:`.manifests`).
* ``start`` re-packs the validated scenario (or uses the upload as is when
  it already is exactly the scenario), creates the Job, then the input
  ConfigMaps owned by it (two API calls): a ConfigMap never exists without
  its Job, so none is ever orphaned; the Job's pod cannot start before its
  ConfigMap volumes exist (the kubelet retries the mount), and a crash in
  between is finished by the re-delivery, which finds AlreadyExists, reads
  the Job's uid and creates the missing ConfigMaps.  (Creating the Job
  suspended and resuming it once its ConfigMaps exist costs one more call and
  two more Job status writes by the job controller: on the dev cluster, one
  run each at ``--burst-cpu 8``, 30.0 vs 49.1 Jobs/s, 2.5 vs 1.3 API server
  CPU-seconds per 100 Jobs.)  Status comes from :mod:`.watcher`.
* ``collect`` runs a short-lived collector pod mounting the tenant PVC that
  prints a base64 tar.gz of the job's outputs, log and statistics to its
  log; the tar's digest and each file's sha256 are checked before upload.
  Repeating it re-runs (or re-reads) the collector.  Limit: everything
  passes through one container log, read with ``follow`` (which survives the
  kubelet's rotation at ``containerLogMaxSize``, 10 MiB by default) but held
  in memory here; very large outputs would want a paged collector or an
  object-store upload from the pod (no egress: the NetworkPolicy denies it).
* ``release`` starts a cleanup Job removing ``/results/<job_id>`` (it deletes
  itself through its TTL); the simulation Job and its ConfigMaps go with the
  Job's own ``ttlSecondsAfterFinished``.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import shutil
import tarfile
import tempfile
import time
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from kubernetes import client
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from core.domain.states import JobStatus, StatusEvent
from core.executors.base import (LOG_NAME, STATISTICS_NAME, CannotCollectYet, CollectedResults, Executor,
                                 ExecutorUnavailable, JobSpec)
from core.executors.kubernetes import manifests as m
from core.executors.kubernetes.translate import pending_reason
from core.scenario.paths import normalize_entry_name
from core.storage.base import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

COLLECT_TIMEOUT = 300.0
MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "sumo-k8"
#: Seconds an API request answered from the API server may wait for it (connect, read): a server that is
#: away must not hold a request thread for long.
READ_TIMEOUT = (5, 20)
QUOTA_SETTLE_TIMEOUT = 60.0


#: Connections kept per API server: at least the threads that call it at once (the control workers), or
#: urllib3 discards the extra connections after each call and every call pays a new TLS handshake.
CONNECTION_POOL_MAXSIZE = 32


def api_client_from(settings) -> client.ApiClient:
    """KUBECONFIG if set, else the in-cluster config, else ~/.kube/config."""
    from kubernetes import config

    cfg = client.Configuration()  # this client's own, so the pool size below touches no other
    if settings.kubeconfig:
        config.load_kube_config(config_file=settings.kubeconfig, client_configuration=cfg, persist_config=False)
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(client_configuration=cfg, persist_config=False)
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, CONNECTION_POOL_MAXSIZE)
    return client.ApiClient(configuration=cfg)


def wait_until(what: str, predicate, timeout: float, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, 2.0)


def _reason(exc: ApiException) -> str | None:
    """The Status reason of an API error (AlreadyExists, Conflict, …), if the body carries one."""
    try:
        return json.loads(exc.body or "{}").get("reason")
    except (ValueError, AttributeError):
        return None


def _ok(fn, *args, allow=(404, 409), **kw):
    """Call the API; ``allow``ed statuses (NotFound, AlreadyExists) are normal outcomes and give None."""
    try:
        return fn(*args, **kw)
    except ApiException as exc:
        if exc.status in allow:
            return None
        raise


@contextlib.contextmanager
def _api_server():
    """Turn "the API server is away" (no connection, a timeout, a 5xx or 429 answer) into
    :class:`ExecutorUnavailable` for a caller answering a request; any other refusal stays what it is."""
    try:
        yield
    except HTTPError as exc:
        raise ExecutorUnavailable("the Kubernetes API server cannot be reached; try again shortly") from exc
    except ApiException as exc:
        if exc.status != 429 and not 500 <= (exc.status or 0) < 600:
            raise
        raise ExecutorUnavailable(f"the Kubernetes API server cannot serve this now ({exc.status} {exc.reason}); "
                                  "try again shortly") from exc


class KubernetesExecutor(Executor):
    name = "kubernetes"

    def __init__(self, settings, bus=None, *, store: ObjectStore | None = None, api: client.ApiClient | None = None,
                 publish=None) -> None:
        self.settings = settings
        self.bus = bus
        self._store = store
        self.api = api or api_client_from(settings)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)
        self._publish = publish or (bus.publish_status if bus is not None else None)
        self._ready_namespaces: set[str] = set()

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            from core.storage.factory import build_store

            self._store = build_store(self.settings)
        return self._store

    def publish(self, event: StatusEvent) -> None:
        if self._publish is not None:
            self._publish(event)

    # -- tenants ----------------------------------------------------------------------------
    def ensure_tenant(self, tenant: dict) -> None:
        """Make the tenant's objects match its row: one server-side apply per object.

        An apply creates what is missing and sets every field this service
        manages to the row's values, whatever was there (one call per object,
        where create-then-patch took two once the objects exist).  The PVC is
        only created: its spec is immutable.
        """
        ns = tenant["namespace"]
        self._apply(self.core.patch_namespace, m.namespace(tenant))
        quota = m.resource_quota(tenant, max_input_bytes=self.settings.max_file_size_mb * 1024 * 1024)
        for patch, body in (
            (self.core.patch_namespaced_resource_quota, quota),
            (self.core.patch_namespaced_limit_range, m.limit_range(tenant)),
            (self.net.patch_namespaced_network_policy, m.network_policy(tenant)),
            (self.core.patch_namespaced_service_account, m.service_account(tenant)),
        ):
            self._apply(patch, body, ns)
        _ok(self.core.create_namespaced_persistent_volume_claim, ns, self._pvc(tenant))  # spec is immutable
        self._wait_quota_settled(ns)
        self._ready_namespaces.add(ns)

    @staticmethod
    def _apply(patch, body: dict, *namespace: str) -> None:
        """Server-side apply ``body`` as this service's field manager, taking over fields set by anyone else."""
        _drain(patch(body["metadata"]["name"], *namespace, body, field_manager=FIELD_MANAGER, force=True,
                     _content_type=APPLY, _preload_content=False))

    def _pvc(self, tenant: dict) -> dict:
        return m.results_pvc(tenant, size_gi=self.settings.result_storage_size_gi,
                             storage_class=self.settings.storage_class,
                             access_mode=getattr(self.settings, "result_storage_access_mode", "ReadWriteOnce"))

    def _wait_quota_settled(self, ns: str) -> None:
        """Wait until the quota controller has applied the quota's spec to its status.

        Quota admission checks pods against ``status.hard``: before the first
        computation it refuses objects ("status unknown for quota"), and after a
        change of limits it still applies the old values.  Both sides are read
        from the server, so quantities are compared in its normalised form.
        """
        def settled():
            quota = self.core.read_namespaced_resource_quota("sumo-quota", ns)
            return quota.status is not None and (quota.status.hard or {}) == (quota.spec.hard or {})

        try:
            wait_until(f"ResourceQuota of {ns}", settled, QUOTA_SETTLE_TIMEOUT, interval=0.05)
        except TimeoutError:
            log.warning("ResourceQuota in %s not computed yet; creations may be retried", ns)

    def _ensure_basics(self, spec: JobSpec) -> None:
        """What a Job cannot run without, when ``ensure_tenant`` has not run yet (no quota: no limits known)."""
        if spec.namespace in self._ready_namespaces:
            return
        tenant = {"tenant_id": spec.tenant_id, "namespace": spec.namespace}
        _ok(self.core.create_namespace, m.namespace(tenant))
        _ok(self.net.create_namespaced_network_policy, spec.namespace, m.network_policy(tenant))
        _ok(self.core.create_namespaced_service_account, spec.namespace, m.service_account(tenant))
        _ok(self.core.create_namespaced_persistent_volume_claim, spec.namespace, self._pvc(tenant))
        self._ready_namespaces.add(spec.namespace)

    # -- jobs ---------------------------------------------------------------------------------
    def start(self, spec: JobSpec) -> None:
        """Create the Job, then its input ConfigMaps owned by its uid (two calls per start).

        No read first: the create answers AlreadyExists on a re-delivery, and only then is the Job read for
        its uid (its ConfigMaps are created again, AlreadyExists for those that exist; a Job left suspended
        by an earlier version is resumed).  Responses are not turned into client models (only the uid is
        needed), which saves CPU per call.
        """
        ns, name = spec.namespace, m.job_name(spec.job_id)
        self._ensure_basics(spec)
        try:
            archive, config_file, log_file = self._repack(spec)
        except (ObjectNotFound, OSError, ValueError) as exc:  # _repack turns ScenarioError into ValueError
            job = self._read_job(ns, name)
            if job is not None and not job["spec"].get("suspend"):
                return  # a re-delivery of a start that already happened (its input may be gone since)
            self._fail(spec, f"could not prepare the input: {exc}")
            return
        parts = m.chunk(archive)
        body = m.simulation_job(spec, image=self.settings.sumo_image, config_file=config_file, log_file=log_file,
                                chunks=len(parts), backoff_limit=self.settings.job_backoff_limit,
                                ttl_seconds=self.settings.job_ttl_seconds, suspend=False)
        try:
            job = _json(self.batch.create_namespaced_job(ns, body, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:  # the namespace is gone (deleted since it was ensured): the retry recreates it
                self._ready_namespaces.discard(ns)
            if exc.status != 409:
                raise
            job = self._read_job(ns, name)  # AlreadyExists: a re-delivered start; make sure its inputs exist
            if job is None:
                raise RuntimeError(f"Job {ns}/{name} exists and is gone again; retrying the start") from exc
        for cm in m.input_configmaps(spec, parts, job["metadata"]["uid"]):
            self._create_quota_aware(spec, lambda ns_, body_: _drain(
                self.core.create_namespaced_config_map(ns_, body_, _preload_content=False)), cm)
        if job["spec"].get("suspend"):  # created suspended (by an earlier version): release it
            _drain(self.batch.patch_namespaced_job(name, ns, {"spec": {"suspend": False}}, _content_type=MERGE,
                                                   _preload_content=False))
        log.info("job %s: Job %s/%s started with %d input ConfigMap(s)", spec.job_id, ns, name, len(parts))

    def _read_job(self, ns: str, name: str) -> dict | None:
        try:
            return _json(self.batch.read_namespaced_job(name, ns, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _repack(self, spec: JobSpec) -> tuple[bytes, str, str | None]:
        """The accepted files only, root folder stripped, as a zip; plus config and log paths.

        An upload that already is exactly that (no root folder, nothing ignored, plain names, stored or
        deflated entries) is used as it is: the same bytes on every delivery, no extraction, no re-compression.
        """
        from core.scenario import ScenarioError, extract_scenario, inspect_archive
        from core.services.context import archive_limits

        data = self.store.get_bytes(spec.input_key)  # sent whole in the ConfigMaps anyway: no temp copy first
        try:
            scenario = inspect_archive(io.BytesIO(data), spec.config_file, archive_limits(self.settings))
            if _usable_as_is(io.BytesIO(data), scenario):
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

    def _create_quota_aware(self, spec: JobSpec, create, body: dict, report: bool = True) -> None:
        """Create in the job's namespace; when quota refuses, say why (PENDING, if ``report``) and retry briefly."""
        def attempt():
            try:
                create(spec.namespace, body)
            except ApiException as exc:
                if exc.status == 409 and _reason(exc) == "AlreadyExists":
                    return True  # a re-delivered start: the object is there
                if exc.status == 409:
                    return False  # a write conflict (e.g. on the quota's usage): try again
                if _quota_refusal(exc):
                    if report:
                        self.publish(StatusEvent(spec.job_id, JobStatus.PENDING, _now(),
                                                 reason=f"Forbidden: {_api_message(exc)}"))
                    return False
                raise
            return True

        wait_until(f"{body['kind']} {body['metadata']['name']} admitted by quota", attempt, QUOTA_SETTLE_TIMEOUT, 1.0)

    def _fail(self, spec: JobSpec, reason: str) -> None:
        log.error("job %s: %s", spec.job_id, reason)
        self.publish(StatusEvent(spec.job_id, JobStatus.FAILED, _now(), reason=reason))

    def cancel(self, spec: JobSpec) -> None:
        _ok(self.batch.delete_namespaced_job, m.job_name(spec.job_id), spec.namespace,
            propagation_policy="Foreground", allow=(404,))

    def _job_pod(self, spec: JobSpec, **kw):
        sel = f"{m.JOB_LABEL}={spec.job_id},{m.COMPONENT}={m.SIMULATION}"
        pods = _ok(self.core.list_namespaced_pod, spec.namespace, label_selector=sel, allow=(404,), **kw)
        items = pods.items if pods else []
        return max(items, key=lambda p: p.metadata.creation_timestamp, default=None)

    def read_live_log(self, spec: JobSpec, start: int, limit: int) -> bytes | None:
        """Bytes ``start:start+limit`` of the sumo container's log (read up to ``start+limit``)."""
        with _api_server():
            pod = self._job_pod(spec, _request_timeout=READ_TIMEOUT)
            if pod is None:
                return None
            try:
                resp = self.core.read_namespaced_pod_log(
                    pod.metadata.name, spec.namespace, container=m.MAIN_CONTAINER, limit_bytes=max(1, start + limit),
                    _preload_content=False, _request_timeout=READ_TIMEOUT)
            except ApiException as exc:
                if exc.status in (400, 404):  # not started yet, or gone
                    return None
                raise
            return resp.data[start:start + limit]

    # -- results -------------------------------------------------------------------------------
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
        _ok(self.core.delete_namespaced_pod, m.collector_name(spec.job_id), spec.namespace,
            grace_period_seconds=0, allow=(404,))
        return CollectedResults(files=files, statistics=statistics, log_archived=log_archived)

    def _run_collector(self, spec: JobSpec) -> str:
        ns, name = spec.namespace, m.collector_name(spec.job_id)
        pod = _ok(self.core.read_namespaced_pod, name, ns, allow=(404,))
        if pod is not None and pod.status.phase == "Failed":
            _ok(self.core.delete_namespaced_pod, name, ns, grace_period_seconds=0, allow=(404,))
            wait_until(f"old collector {name} gone",
                       lambda: _ok(self.core.read_namespaced_pod, name, ns, allow=(404,)) is None, 60)
            pod = None
        if pod is None:
            self._create_quota_aware(spec, self.core.create_namespaced_pod,
                                     m.collector_pod(spec, image=self.settings.sumo_image), report=False)

        def phase_past(*phases):
            def check():
                p = _ok(self.core.read_namespaced_pod, name, ns, allow=(404,))
                if p is not None and p.status.phase == "Pending":
                    why = pending_reason(self.api.sanitize_for_serialization(p))
                    if why is not None:  # no room, an image it cannot pull …: a wait that may last, not on this thread
                        raise CannotCollectYet(f"the collector pod {ns}/{name} cannot start: {why}")
                return p.status.phase if p is not None and p.status.phase not in phases else None
            return check

        wait_until(f"collector pod {ns}/{name} started", phase_past("Pending"), COLLECT_TIMEOUT)
        # Follow the log while it is written: the kubelet's follow survives its log rotation.
        text = self.core.read_namespaced_pod_log(name, ns, follow=True, _preload_content=False,
                                                 _request_timeout=COLLECT_TIMEOUT).data.decode()
        phase = wait_until(f"collector pod {ns}/{name} finished", phase_past("Pending", "Running"), COLLECT_TIMEOUT)
        if phase != "Succeeded":
            raise RuntimeError(f"collector pod {name} failed: {text[-2000:]}")
        return text

    def release(self, spec: JobSpec) -> None:
        """Delete ``/results/<job_id>`` through a self-deleting cleanup Job (fire and forget)."""
        _ok(self.core.delete_namespaced_pod, m.collector_name(spec.job_id), spec.namespace, allow=(404,))
        body = m.cleanup_job(spec, image=self.settings.sumo_image, ttl_seconds=self.settings.job_ttl_seconds)
        _ok(self.batch.create_namespaced_job, spec.namespace, body)

    # -- capacity ----------------------------------------------------------------------------------
    def capacity(self) -> dict:
        from kubernetes.utils import parse_quantity

        running: dict[str, int] = {}
        sims: dict[str, int] = {}
        with _api_server():
            pods = self.core.list_pod_for_all_namespaces(field_selector="status.phase=Running",
                                                         _request_timeout=READ_TIMEOUT).items
            node_list = self.core.list_node(_request_timeout=READ_TIMEOUT).items
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


def _usable_as_is(path: Path | BinaryIO, scenario) -> bool:
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


def _json(resp) -> dict:
    """The body of a ``_preload_content=False`` response as a dict (the connection goes back to the pool)."""
    try:
        return json.loads(resp.data)
    finally:
        resp.release_conn()


def _drain(resp) -> None:
    """Read and release a ``_preload_content=False`` response whose body is not needed."""
    try:
        resp.data  # noqa: B018 — reads the body so the connection can be reused
    finally:
        resp.release_conn()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


#: How the ResourceQuota admission plugin words its refusals (an RBAC 403 says "cannot create …").
QUOTA_REFUSALS = ("exceeded quota", "status unknown for quota", "failed quota", "insufficient quota")


def _quota_refusal(exc: ApiException) -> bool:
    """A 403 from quota admission (the job waits for quota), not from authorization (a deployment error)."""
    return exc.status == 403 and any(phrase in _api_message(exc) for phrase in QUOTA_REFUSALS)


def _api_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError):
        return str(exc.reason)


def _now() -> datetime:
    return datetime.now(timezone.utc)
