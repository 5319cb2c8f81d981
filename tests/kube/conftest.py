"""Fixtures for the Kubernetes executor tests (marker ``kube``) on the dev cluster.

The cluster fixture comes from ``tests/conftest.py`` (skipped when
the binaries are missing or not root).  Each test gets its own tenant
namespace prepared by ``ensure_tenant``, and (on request) a watcher running in
a thread that publishes into a list.

Collector pods upload a job's files to the service's API, so the executor
tests collect through a real one: ``receiver`` is the service (API, PostgreSQL,
Redis; no sweeper, so nothing else acts on its jobs) whose store is the tests'
``store`` and whose database holds the job rows a collection needs
(:meth:`Receiver.expect`).
"""
from __future__ import annotations

import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.devcluster.conftest import api  # noqa: F401 - the Kubernetes API client fixture
from devcluster.procs import wait_for

from core.domain.states import JobStatus, StatusEvent
from core.executors.base import JobSpec
from core.settings import Settings
from core.storage.local import LocalStore
from core.bootstrap import archive_limits

REPO = Path(__file__).resolve().parents[2]
BOLOGNA = REPO / "test_networks" / "zips" / "bologna-acosta.zip"
SQUARE = REPO / "test_networks" / "zips" / "square.zip"


@dataclass
class Recorder:
    """The watcher's publisher in tests: remembers every event, lets tests wait for one."""

    events: list[StatusEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: StatusEvent) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, job_id: str) -> list[StatusEvent]:
        with self.lock:
            return [e for e in self.events if e.job_id == job_id]

    def statuses(self, job_id: str) -> list[JobStatus]:
        return [e.status for e in self.of(job_id)]

    def wait(self, job_id: str, status: JobStatus, timeout: float = 120) -> StatusEvent:
        return wait_for(f"{status.value} of job {job_id} (seen: {self.statuses(job_id)})",
                        lambda: next((e for e in self.of(job_id) if e.status is status), None), timeout)


#: The receiver's caps: room for the executor tests' runs; the upload tests declare bodies past them.
RECEIVER_MAX_OUTPUT_MB, RECEIVER_MAX_LOG_MB = 64, 16


@dataclass
class Receiver:
    """The service's API as the collector pods' upload endpoint, and its database and store."""

    stack: object
    ctx: object

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def admin_key(self) -> str:
        return self.stack.env["ADMIN_KEY"]

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.ctx.settings.storage_root)

    def expect(self, spec: JobSpec, status: str = "COLLECTING", collected: bool = False) -> None:
        """Give ``spec`` a job row (and its tenant one) in ``status``, as the service has while it collects."""
        import sqlalchemy as sa
        from sqlalchemy.dialects.postgresql import insert

        from core.db.tables import jobs, tenants

        now = datetime.now(timezone.utc)
        with self.ctx.engine.begin() as conn:
            conn.execute(insert(tenants).values(
                tenant_id=spec.tenant_id, namespace=spec.namespace, api_key_hash=f"unused-{uuid.uuid4()}",
                max_cpu=8, max_memory_gi=16, max_concurrent_jobs=4, max_stored_bytes=50 * 10**9).on_conflict_do_nothing())
            conn.execute(sa.delete(jobs).where(jobs.c.job_id == spec.job_id))
            conn.execute(jobs.insert().values(
                job_id=spec.job_id, tenant_id=spec.tenant_id, scenario_id="test", status=status,
                cpu_request=spec.cpu_request, memory_gi=spec.memory_gi, config_file=spec.config_file,
                input_key=spec.input_key, input_size=0, submitted_at=now, last_dispatch_at=now,
                outcome="SUCCEEDED" if status == "COLLECTING" else None,
                results_collected_at=now if collected else None))

    def uploads(self, job_id: str) -> dict[str, dict]:
        from core.services import collect_uploads

        return collect_uploads.recorded(self.ctx, job_id)


@pytest.fixture(scope="session")
def receiver(tmp_path_factory):
    from core.bootstrap import bootstrap
    from core.waits import free_port
    from devstack.stack import start_stack
    from tests.conftest import BASE_ENV

    port = free_port()
    env = {**BASE_ENV, "PORT": str(port), "MAX_OUTPUT_MB": str(RECEIVER_MAX_OUTPUT_MB),
           "MAX_LOG_MB": str(RECEIVER_MAX_LOG_MB)}
    stack = start_stack(tmp_path_factory.mktemp("receiver"), env_overrides=env, api_workers=1, persistent=False,
                        fast_db=True, sweeper=False)
    try:
        settings = Settings(**{k.lower(): v for k, v in stack.env.items() if k.lower() in Settings.model_fields})
        yield Receiver(stack, bootstrap(settings))
    finally:
        stack.stop()


@pytest.fixture
def settings(cluster, receiver) -> Settings:
    return Settings(kubeconfig=str(cluster.kubeconfig), job_ttl_seconds=5, result_storage_size_gi=1,
                    max_file_size_mb=8, watch_resync_seconds=5, log_tail_lines=5, collect_url=receiver.url,
                    admin_key=receiver.admin_key, max_output_mb=RECEIVER_MAX_OUTPUT_MB,
                    max_log_mb=RECEIVER_MAX_LOG_MB)


@pytest.fixture
def store(receiver) -> LocalStore:
    return receiver.store


@pytest.fixture
def executor(settings, store, cluster, receiver):
    from core.executors.kubernetes import KubernetesExecutor

    published = Recorder()
    ex = KubernetesExecutor(settings, None, limits=archive_limits(settings), store=store, api=cluster.api_client(),
                            publish=published, uploads=receiver.uploads)
    ex.published = published
    return ex


@pytest.fixture
def tenant(executor, api):
    from kubernetes import client

    suffix = uuid.uuid4().hex[:8]
    row = {"tenant_id": f"t{suffix}", "namespace": f"sumo-t{suffix}", "max_cpu": 2, "max_memory_gi": 2,
           "max_concurrent_jobs": 3}
    executor.ensure_tenant(row)
    yield row
    client.CoreV1Api(api).delete_namespace(row["namespace"])


def run_watcher(cluster, recorder, **kw):
    """Start a Watcher in a thread; returns (watcher, stop event, thread)."""
    from core.executors.kubernetes.watcher import Watcher

    w = Watcher(cluster.api_client(), recorder, resync_seconds=kw.pop("resync_seconds", 5), log_tail_lines=5,
                watch_timeout=kw.pop("watch_timeout", 5), **kw)
    stop = threading.Event()
    th = threading.Thread(target=w.run, args=(stop,), kwargs={"release_lease": kw.get("lease") is None},
                          daemon=True)
    th.start()
    return w, stop, th


@pytest.fixture
def watcher(cluster):
    recorder = Recorder()
    w, stop, th = run_watcher(cluster, recorder)
    w.recorder = recorder
    yield w
    stop.set()
    th.join(timeout=30)


@pytest.fixture
def submit(store, tenant):
    """Put an archive into the store and return the JobSpec of a new job running it."""
    def make(archive: Path, config_file: str | None = None, cpu: int = 1, memory_gi: int = 1,
             deadline_seconds: int = 600) -> JobSpec:
        job_id = str(uuid.uuid4())
        key = f"inputs/{tenant['tenant_id']}/{job_id}.zip"
        store.put_file(key, archive)
        with zipfile.ZipFile(archive) as zf:
            config = config_file or next(n for n in zf.namelist() if n.endswith(".sumocfg"))
        return JobSpec(job_id=job_id, tenant_id=tenant["tenant_id"], namespace=tenant["namespace"],
                       cpu_request=cpu, memory_gi=memory_gi, config_file=config, input_key=key,
                       deadline_seconds=deadline_seconds)

    return make


def square_variant(directory: Path, name: str, routes: bytes | None = None, end: str | None = None,
                   extra: dict[str, bytes] | None = None) -> Path:
    """The square scenario with other routes, another end time, or extra files."""
    with zipfile.ZipFile(SQUARE) as src:
        entries = {i.filename: src.read(i) for i in src.infolist()}
    if routes is not None:
        entries["square.rou.xml"] = routes
    if end is not None:
        entries["square.sumocfg"] = entries["square.sumocfg"].replace(b'<end value="100"/>', f'<end value="{end}"/>'.encode())
    entries.update(extra or {})
    path = directory / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in entries.items():
            zf.writestr(n, data, compress_type=zipfile.ZIP_STORED if n.endswith(".bin") else zipfile.ZIP_DEFLATED)
    return path
