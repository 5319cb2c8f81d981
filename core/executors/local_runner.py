"""Runs one simulation as a subprocess: the body of the local executor.

Called by the ``run_simulation`` actor.  Each delivery of the message may be
a duplicate, so the run is guarded by a per-job file lock and leaves an
``outcome.json`` behind: a second delivery either finds the run in progress
(and leaves) or finished (and re-publishes its outcome, which the state
machine ignores if already applied).

The job's log is SUMO's console output (stdout and stderr through one pipe),
written to ``sumo.log`` as it arrives.  When the scenario's config names its
own ``log`` file, SUMO is pointed at the pipe instead (``--log /dev/stdout``)
so that the messages reach the job's log, and the file is written at the end.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core.domain.states import JobStatus, StatusEvent
from core.executors.base import LOG_NAME, STATISTICS_NAME, JobSpec
from core.executors.local_slots import SlotPool, try_lock_file
from core.scenario import ArchiveLimits, ScenarioError, extract_scenario, inspect_archive
from core.storage.base import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
SLOT_POLL_SECONDS = 0.2
KILL_GRACE_SECONDS = 5.0


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class WorkDir:
    """The files of one job under the work root."""

    root: Path

    lock = property(lambda self: self.root / ".lock")
    cancel_marker = property(lambda self: self.root / "CANCEL")
    archive = property(lambda self: self.root / "input.zip")
    run_dir = property(lambda self: self.root / "run")
    log = property(lambda self: self.root / LOG_NAME)
    statistics = property(lambda self: self.root / STATISTICS_NAME)
    manifest = property(lambda self: self.root / "inputs.json")
    outcome = property(lambda self: self.root / "outcome.json")
    pid = property(lambda self: self.root / "sumo.pid")


class LocalRunner:
    def __init__(
        self,
        *,
        work_root: Path,
        store: ObjectStore,
        publish: Callable[[StatusEvent], None],
        slots: SlotPool,
        sumo_binary: str,
        limits: ArchiveLimits,
        log_tail_lines: int = 20,
    ) -> None:
        self.work_root = work_root
        self.store = store
        self.publish = publish
        self.slots = slots
        self.sumo_binary = sumo_binary
        self.limits = limits
        self.log_tail_lines = log_tail_lines

    def workdir(self, job_id: str) -> WorkDir:
        return WorkDir(self.work_root / job_id)

    # -- entry point ------------------------------------------------------------------
    def run(self, spec: JobSpec) -> None:
        wd = self.workdir(spec.job_id)
        lock_fd = try_lock_file(wd.lock)
        if lock_fd is None:
            log.info("job %s: already being run by another delivery", spec.job_id)
            return
        try:
            if wd.outcome.exists():
                self.publish(StatusEvent.from_message(json.loads(wd.outcome.read_text())))
                return
            event = self._run_locked(spec, wd)
            wd.outcome.write_text(json.dumps(event.to_message()))
            self.publish(event)
        finally:
            os.close(lock_fd)

    # -- the run ------------------------------------------------------------------------
    def _run_locked(self, spec: JobSpec, wd: WorkDir) -> StatusEvent:
        if wd.cancel_marker.exists():
            return StatusEvent(spec.job_id, JobStatus.CANCELLED, now(), reason="cancelled before it started")
        slot = self._wait_for_slot(spec, wd)
        if slot is None:
            return StatusEvent(spec.job_id, JobStatus.CANCELLED, now(), reason="cancelled while waiting for a slot")
        try:
            try:
                config_path, log_file = self._prepare(spec, wd)
            except (ObjectNotFound, ScenarioError, OSError) as exc:
                log.exception("job %s: could not prepare its input", spec.job_id)
                return StatusEvent(spec.job_id, JobStatus.FAILED, now(), reason=f"could not prepare the input: {exc}")
            return self._execute(spec, wd, config_path, log_file)
        finally:
            slot.release()

    def _wait_for_slot(self, spec: JobSpec, wd: WorkDir):
        announced = False
        while True:
            slot = self.slots.try_acquire()
            if slot is not None:
                return slot
            if wd.cancel_marker.exists():
                return None
            if not announced:
                reason = f"waiting for a free simulation slot ({self.slots.size} of {self.slots.size} in use)"
                self.publish(StatusEvent(spec.job_id, JobStatus.PENDING, now(), reason=reason))
                announced = True
            time.sleep(SLOT_POLL_SECONDS)

    def _prepare(self, spec: JobSpec, wd: WorkDir) -> tuple[Path, Path | None]:
        """Fetch and unpack the input; remember what was there so outputs can be told apart."""
        _stop_orphan(wd)
        if wd.run_dir.exists():
            shutil.rmtree(wd.run_dir)
        wd.log.unlink(missing_ok=True)
        self.store.download_file(spec.input_key, wd.archive)
        scenario = inspect_archive(wd.archive, spec.config_file, self.limits)
        extract_scenario(wd.archive, scenario, wd.run_dir)
        manifest = {}
        for path in wd.run_dir.rglob("*"):
            if path.is_file():
                st = path.stat()
                manifest[path.relative_to(wd.run_dir).as_posix()] = [st.st_size, st.st_mtime_ns]
        wd.manifest.write_text(json.dumps(manifest))
        log_file = wd.run_dir / scenario.log_file if scenario.log_file else None
        return wd.run_dir / scenario.config_file, log_file

    def _execute(self, spec: JobSpec, wd: WorkDir, config_path: Path, log_file: Path | None) -> StatusEvent:
        argv = [self.sumo_binary, "-c", config_path.name, "--statistic-output", str(wd.statistics), "--duration-log.statistics", "true"]
        if log_file is not None:
            argv += ["--log", "/dev/stdout"]
        env = dict(os.environ)
        env.setdefault("SUMO_HOME", str(Path(self.sumo_binary).resolve().parent.parent))
        log_out = open(wd.log, "ab", buffering=0)  # opened before the child exists: the pump can always write
        started = now()
        proc = subprocess.Popen(
            argv,
            cwd=config_path.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        wd.pid.write_text(str(proc.pid))
        log.info("job %s: started %s (pid %d)", spec.job_id, " ".join(argv), proc.pid)
        self.publish(StatusEvent(spec.job_id, JobStatus.RUNNING, started))
        pump = threading.Thread(target=_pump, args=(proc.stdout, log_out), daemon=True)
        pump.start()

        deadline = time.monotonic() + spec.deadline_seconds
        outcome: StatusEvent | None = None
        while True:
            try:
                code = proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if wd.cancel_marker.exists():
                _stop(proc)
                outcome = StatusEvent(spec.job_id, JobStatus.CANCELLED, now(), reason="cancelled while running")
            elif time.monotonic() > deadline:
                _stop(proc)
                outcome = StatusEvent(
                    spec.job_id,
                    JobStatus.FAILED,
                    now(),
                    reason=f"DeadlineExceeded: the run exceeded its deadline of {spec.deadline_seconds}s",
                )
            if outcome is not None:
                code = proc.wait()
                break
        pump.join(timeout=10)
        log_out.close()
        if log_file is not None and wd.log.exists():
            shutil.copyfile(wd.log, log_file)
        if outcome is not None:
            return outcome
        if code == 0:
            return StatusEvent(spec.job_id, JobStatus.SUCCEEDED, now(), exit_code=0)
        return StatusEvent(
            spec.job_id,
            JobStatus.FAILED,
            now(),
            reason=f"sumo exited with code {code}",
            exit_code=code,
            log_tail=tail_lines(wd.log, self.log_tail_lines),
        )


def _pump(stream, out) -> None:
    """Copy the child's output to the log as it arrives (unbuffered, so followers see it).

    The pipe is drained to the end whatever happens to the file: a child
    blocked on a full pipe would otherwise hang until its deadline.
    """
    writable = True
    while chunk := stream.read1(65536):
        if writable:
            try:
                out.write(chunk)
            except OSError:
                log.exception("log file unwritable; discarding the rest of the output")
                writable = False


def _stop_orphan(wd: WorkDir) -> None:
    """Kill a run left behind by a worker that died (its message is being re-delivered).

    The child runs in its own session, so it outlives a SIGKILLed worker; a re-run
    must not share the work directory with it.  The pid is only trusted while it
    still names a process started in this job's directory.
    """
    try:
        pid = int(wd.pid.read_text())
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (FileNotFoundError, ValueError, OSError):
        return
    if cwd.startswith(str(wd.run_dir)):
        log.warning("killing the orphaned run %d of a dead worker in %s", pid, wd.root)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the run's process group, SIGKILL it after a grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail_lines(path: Path, lines: int, max_bytes: int = 64 * 1024) -> str | None:
    """The last ``lines`` lines of a file, reading at most ``max_bytes`` from its end."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return None
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(text) or None
