"""The local executor: simulations as subprocesses of the worker machine.

``start`` sends a ``run_simulation`` message; a worker consuming the
simulations queue runs it through :class:`LocalRunner`.  The cap on
concurrent simulations is machine-wide (a pool of file locks), whatever the
number of worker processes.  Outputs stay in the job's work directory until
``collect`` copies them to the result store.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

from core import log_text
from core.executors.base import LOG_NAME, STATISTICS_NAME, CollectedResults, Executor, JobSpec, LogPosition, StillRunning
from core.executors.local_runner import WorkDir
from core.executors.local_slots import SlotPool, try_lock_file
from core.messaging import MessageBus
from core.storage.base import ObjectStore

#: SUMO's --statistic-output is a few lines; one far larger was not written by SUMO's statistics code.
MAX_STATISTICS_BYTES = 1024 * 1024


def default_sumo_binary() -> str:
    """The ``sumo`` of the eclipse-sumo wheel (the real binary, not its Python launcher)."""
    import sumo

    return str(Path(sumo.SUMO_HOME) / "bin" / "sumo")


def slot_pool(work_root: Path, size: int) -> SlotPool:
    return SlotPool(work_root / ".slots", size or os.cpu_count() or 1)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, work_root: Path, bus: MessageBus, slots: SlotPool) -> None:
        self.work_root = work_root
        self.bus = bus
        self.slots = slots

    def _wd(self, job_id: str) -> WorkDir:
        return WorkDir(self.work_root / job_id)

    def start(self, spec: JobSpec) -> None:
        """Serves a ``start_jobs`` message; admission itself sends ``run_simulation`` (``START_ACTORS``)."""
        self.bus.run_simulation(spec.job_id)

    def cancel(self, spec: JobSpec) -> None:
        wd = self._wd(spec.job_id)
        wd.root.mkdir(parents=True, exist_ok=True)
        wd.cancel_marker.touch()

    def read_live_log(self, spec: JobSpec, start: int, limit: int) -> bytes | None:
        """One read of the log file at ``start``: what comes before it is neither read nor held."""
        try:
            with open(self._wd(spec.job_id).log, "rb") as fh:
                return os.pread(fh.fileno(), max(limit, 0), max(start, 0))
        except FileNotFoundError:
            return None

    def read_live_log_from(self, spec: JobSpec, position: LogPosition, limit: int) -> tuple[bytes, LogPosition] | None:
        """A file is read by byte offset: ``position.mark`` is never set."""
        data = self.read_live_log(spec, position.offset, limit)
        return None if data is None else (data, LogPosition(position.offset + len(data)))

    def tail_live_log(self, spec: JobSpec, lines: int, max_bytes: int) -> bytes | None:
        """Ranged reads backwards from the file's end as it is when opened (it only grows while it is read)."""
        try:
            fh = open(self._wd(spec.job_id).log, "rb")
        except FileNotFoundError:
            return None
        with fh:
            fd = fh.fileno()
            return log_text.tail(lambda start, length: os.pread(fd, length, start), os.fstat(fd).st_size, lines, max_bytes)

    def collect(self, spec: JobSpec, store: ObjectStore) -> CollectedResults:
        wd = self._wd(spec.job_id)
        lock = try_lock_file(wd.lock) if wd.root.exists() else None
        if wd.root.exists() and lock is None:
            raise StillRunning(f"job {spec.job_id} is still being stopped")
        try:
            return self._collect(spec, wd, store)
        finally:
            if lock is not None:
                os.close(lock)

    def _collect(self, spec: JobSpec, wd: WorkDir, store: ObjectStore) -> CollectedResults:
        """Upload what the run wrote.  The run folder was the run's to write (it may be hostile): only
        regular files count, links are never followed, the walk keeps its own stack."""
        files: list[dict] = []
        if wd.run_dir.is_dir():
            manifest = json.loads(wd.manifest.read_text()) if wd.manifest.exists() else {}
            for rel, path in _regular_files(wd.run_dir):
                st = path.stat(follow_symlinks=False)
                if manifest.get(rel) == [st.st_size, st.st_mtime_ns]:
                    continue  # an unchanged input, not an output
                files.append(_upload(store, spec.result_prefix + rel, path, rel))
        statistics = None
        if _is_regular(wd.statistics):
            with open(wd.statistics, "rb") as fh:
                statistics = fh.read(MAX_STATISTICS_BYTES + 1)
            if len(statistics) > MAX_STATISTICS_BYTES:
                statistics = None  # not SUMO's few lines of KPIs: kept as a file, not parsed
            files.append(_upload(store, spec.result_prefix + STATISTICS_NAME, wd.statistics, STATISTICS_NAME))
        log_archived = False
        if wd.log.exists():
            files.append(_upload(store, spec.log_key, wd.log, LOG_NAME))
            log_archived = True
        return CollectedResults(files=files, statistics=statistics, log_archived=log_archived)

    def observe(self, spec: JobSpec) -> None:
        """None: a local job's message runs it to its end, and the sweeper re-sends that message while the
        job stays PENDING or RUNNING (core.messaging.AWAITING_START), which covers a lost status event."""
        return None

    def release(self, spec: JobSpec) -> None:
        shutil.rmtree(self._wd(spec.job_id).root, ignore_errors=True)

    def capacity(self) -> dict:
        import psutil

        vm = psutil.virtual_memory()
        return {
            "executor": self.name,
            "nodes": [
                {
                    "name": os.uname().nodename,
                    "ready": True,
                    "capacity": {"cpu": os.cpu_count(), "memory_gi": round(vm.total / 2**30, 1)},
                    "allocatable": {"cpu": self.slots.size, "memory_gi": round(vm.available / 2**30, 1)},
                    "running_simulations": self.slots.in_use(),
                    "simulation_slots": self.slots.size,
                }
            ],
        }


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat(follow_symlinks=False).st_mode)
    except OSError:
        return False


def _regular_files(top: Path) -> list[tuple[str, Path]]:
    """(name relative to ``top``, path) of every regular file below ``top``, sorted, links not followed."""
    found, stack = [], [(top, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), f"{prefix}{entry.name}/"))
                elif entry.is_file(follow_symlinks=False):
                    found.append((prefix + entry.name, Path(entry.path)))
    return sorted(found)


def _upload(store: ObjectStore, key: str, path: Path, name: str) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    store.put_file(key, path)
    return {"name": name, "size": path.stat().st_size, "sha256": digest.hexdigest()}
