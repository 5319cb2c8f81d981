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

With LOCAL_SANDBOX=on (a :class:`~core.executors.sandbox_host.Sandbox`) SUMO runs
confined under its slot's uid (:mod:`core.executors.sandbox`); either way it gets
rlimits and none of the worker's environment, and a run that writes more than
MAX_OUTPUT_MB or logs more than MAX_LOG_MB is stopped and FAILED.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core.domain.states import JobStatus, StatusEvent
from core.executors.base import LOG_NAME, STATISTICS_NAME, JobSpec
from core.executors.local_process import (
    LogPump, exit_signal, kill, open_beneath, stop, wait_gone, written_bytes,
)
from core.executors.local_slots import Slot, SlotPool, try_lock_file
from core.executors.sandbox import CHAIN_ENV, STATS_DIR, Limits, unconfined_command, unconfined_env
from core.executors.sandbox_host import Sandbox, sumo_layout
from core.scenario import ArchiveLimits, ScenarioError, extract_scenario, inspect_archive
from core.storage.base import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
SLOT_POLL_SECONDS = 0.2
#: How often the run folder is measured against MAX_OUTPUT_MB (and once more when the run ends).
OUTPUT_SCAN_SECONDS = 1.0


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
    stats_dir = property(lambda self: self.root / "stats")   # SUMO writes here, so not the root itself
    statistics = property(lambda self: self.stats_dir / STATISTICS_NAME)
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
        sandbox: Sandbox | None,
        max_output_mb: int,
        max_log_mb: int,
        prlimit: str | None = None,
        log_tail_lines: int = 20,
    ) -> None:
        self.work_root = work_root
        self.store = store
        self.publish = publish
        self.slots = slots
        self.sumo_binary = str(Path(sumo_binary).resolve())
        self.sumo_home = sumo_layout(self.sumo_binary)[0]
        self.limits = limits
        self.sandbox = sandbox
        self.max_output_mb = max_output_mb
        self.max_log_mb = max_log_mb
        self.prlimit = sandbox.tools.prlimit if sandbox is not None else prlimit
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
                config_path, log_file = self._prepare(spec, wd, slot)
            except (ObjectNotFound, ScenarioError, OSError) as exc:
                log.exception("job %s: could not prepare its input", spec.job_id)
                return StatusEvent(spec.job_id, JobStatus.FAILED, now(), reason=f"could not prepare the input: {exc}")
            return self.execute(spec, wd, config_path, log_file, slot)
        finally:
            slot.release()

    def take_slot(self) -> Slot | None:
        """A free slot, with the sandbox uid of its run leased (None: every slot is busy)."""
        slot = self.slots.try_acquire()
        if slot is not None and self.sandbox is not None:
            try:
                slot.uid_lease = self.sandbox.lease_uid()
            except BaseException:
                slot.release()
                raise
        return slot

    def _wait_for_slot(self, spec: JobSpec, wd: WorkDir):
        announced = False
        while True:
            slot = self.take_slot()
            if slot is not None:
                return slot
            if wd.cancel_marker.exists():
                return None
            if not announced:
                reason = f"waiting for a free simulation slot ({self.slots.size} of {self.slots.size} in use)"
                self.publish(StatusEvent(spec.job_id, JobStatus.PENDING, now(), reason=reason))
                announced = True
            time.sleep(SLOT_POLL_SECONDS)

    def _prepare(self, spec: JobSpec, wd: WorkDir, slot: Slot) -> tuple[Path, str | None]:
        """Fetch and unpack the input; remember what was there so outputs can be told apart; hand the
        folders to the run (inputs read-only, see :meth:`Sandbox.hand_over`)."""
        _stop_orphan(wd)
        for folder in (wd.run_dir, wd.stats_dir):
            if folder.exists():
                shutil.rmtree(folder)
        wd.log.unlink(missing_ok=True)
        self.store.download_file(spec.input_key, wd.archive)
        scenario = inspect_archive(wd.archive, spec.config_file, self.limits)
        extract_scenario(wd.archive, scenario, wd.run_dir)
        self.hand_over(wd, slot)
        return wd.run_dir / scenario.config_file, scenario.log_file

    def hand_over(self, wd: WorkDir, slot: Slot) -> None:
        """Remember the unpacked inputs (so outputs can be told apart) and give the run its folders."""
        manifest = {}
        for path in wd.run_dir.rglob("*"):
            if path.is_file():
                st = path.stat()
                manifest[path.relative_to(wd.run_dir).as_posix()] = [st.st_size, st.st_mtime_ns]
        wd.manifest.write_text(json.dumps(manifest))
        if self.sandbox is not None:
            self.sandbox.hand_over(wd.run_dir, wd.stats_dir, slot.uid)
        else:
            wd.stats_dir.mkdir()

    def _command(self, spec: JobSpec, wd: WorkDir, config_path: Path, log_file: str | None,
                 slot: Slot) -> tuple[list[str], Path, dict, int | None]:
        """What to start (argv, cwd, environment) and the uid the run will have (None: unconfined)."""
        limits = Limits.for_run(memory_gi=spec.memory_gi, cpu_request=spec.cpu_request,
                                deadline_seconds=spec.deadline_seconds, max_output_mb=self.max_output_mb,
                                confined=self.sandbox is not None)
        statistics = f"{STATS_DIR}/{STATISTICS_NAME}" if self.sandbox is not None else str(wd.statistics)
        argv = [self.sumo_binary, "-c", config_path.name, "--statistic-output", statistics,
                "--duration-log.statistics", "true"]
        if log_file is not None:
            argv += ["--log", "/dev/stdout"]
        if self.sandbox is None:
            command = unconfined_command(limits, self.prlimit, argv) if self.prlimit else argv
            return command, config_path.parent, unconfined_env(self.sumo_home, str(wd.run_dir)), None
        box = self.sandbox.box(uid=slot.uid, job_id=spec.job_id, run_dir=wd.run_dir, stats_dir=wd.stats_dir,
                               config_folder=config_path.parent.relative_to(wd.run_dir).as_posix(), limits=limits)
        return self.sandbox.command(box, argv), wd.run_dir, CHAIN_ENV, box.uid

    def execute(self, spec: JobSpec, wd: WorkDir, config_path: Path, log_file: str | None,
                slot: Slot) -> StatusEvent:
        """Run SUMO on what :meth:`hand_over` gave the run, until it ends or is stopped."""
        command, cwd, env, uid = self._command(spec, wd, config_path, log_file, slot)
        log_out = open(wd.log, "ab", buffering=0)  # opened before the child exists: the pump can always write
        read_end, write_end = os.pipe()
        if uid is not None:
            # The run's uid must own the pipe, or SUMO cannot reopen it as /dev/stdout (--log /dev/stdout).
            os.fchown(write_end, uid, uid)
        started = now()
        try:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=write_end,
                                    stderr=write_end, start_new_session=True, umask=0o022)
        except BaseException as exc:
            os.close(read_end)
            log_out.close()
            if isinstance(exc, OSError):  # a program of the chain gone since startup: the job ends, not stuck
                log.exception("job %s: could not start sumo", spec.job_id)
                return StatusEvent(spec.job_id, JobStatus.FAILED, now(), reason=f"could not start sumo: {exc}")
            raise
        finally:
            os.close(write_end)
        proc.stdout = open(read_end, "rb")
        wd.pid.write_text(str(proc.pid))
        where = f"sandboxed as uid {uid}" if uid is not None else "unconfined (LOCAL_SANDBOX=off)"
        log.info("job %s: started sumo %s (pid %d)", spec.job_id, where, proc.pid)
        self.publish(StatusEvent(spec.job_id, JobStatus.RUNNING, started))
        pump = LogPump(proc.stdout, log_out, self.max_log_mb * 2**20)
        pump.start()
        try:
            code, outcome = self._supervise(spec, wd, proc, pump, uid)
        except BaseException:
            kill(proc, uid)  # never leave a run behind a runner that failed
            raise
        finally:
            pump.join(timeout=10)
            log_out.close()
            if not pump.is_alive():
                proc.stdout.close()
        if uid is not None and not wait_gone(uid):
            log.warning("job %s: processes of uid %d outlived the run's sandbox", spec.job_id, uid)
        if outcome is None:
            outcome = self._over_a_cap(spec, wd, pump)  # a short run may pass a cap between two polls
        if log_file is not None and wd.log.exists():
            self._copy_log(wd, log_file)
        if outcome is not None:
            return outcome
        if code == 0:
            return StatusEvent(spec.job_id, JobStatus.SUCCEEDED, now(), exit_code=0)
        tail = tail_lines(wd.log, self.log_tail_lines)
        return StatusEvent(spec.job_id, JobStatus.FAILED, now(), reason=self._exit_reason(spec, code, tail),
                           exit_code=code, log_tail=tail)

    def _supervise(self, spec: JobSpec, wd: WorkDir, proc: subprocess.Popen, pump: LogPump,
                   uid: int | None) -> tuple[int, StatusEvent | None]:
        """Wait for the run's end, stopping it on a cancel, at its deadline or past a cap."""
        deadline = time.monotonic() + spec.deadline_seconds
        next_scan = time.monotonic() + OUTPUT_SCAN_SECONDS
        inputs = json.loads(wd.manifest.read_text())
        while True:
            try:
                return proc.wait(timeout=POLL_SECONDS), None
            except subprocess.TimeoutExpired:
                pass
            outcome = None
            if wd.cancel_marker.exists():
                outcome = StatusEvent(spec.job_id, JobStatus.CANCELLED, now(), reason="cancelled while running")
            elif time.monotonic() > deadline:
                outcome = self._failed(spec, wd, f"DeadlineExceeded: the run exceeded its deadline of "
                                                 f"{spec.deadline_seconds}s")
            elif pump.over_cap.is_set() or time.monotonic() >= next_scan:
                outcome = self._over_a_cap(spec, wd, pump, inputs)
                next_scan = time.monotonic() + OUTPUT_SCAN_SECONDS
            if outcome is not None:
                stop(proc, uid)
                return proc.wait(), outcome

    def _over_a_cap(self, spec: JobSpec, wd: WorkDir, pump: LogPump, inputs: dict | None = None) -> StatusEvent | None:
        if pump.over_cap.is_set():
            return self._failed(spec, wd, f"MAX_LOG_MB exceeded: the run wrote more than {self.max_log_mb} MB "
                                          "of console output")
        if inputs is None:
            inputs = json.loads(wd.manifest.read_text())
        if written_bytes([wd.run_dir, wd.stats_dir], inputs) > self.max_output_mb * 2**20:
            return self._failed(spec, wd, f"MAX_OUTPUT_MB exceeded: the run wrote more than {self.max_output_mb} MB")
        return None

    def _failed(self, spec: JobSpec, wd: WorkDir, reason: str) -> StatusEvent:
        return StatusEvent(spec.job_id, JobStatus.FAILED, now(), reason=reason,
                           log_tail=tail_lines(wd.log, self.log_tail_lines))

    def _exit_reason(self, spec: JobSpec, code: int, tail: str | None) -> str:
        """Why SUMO ended with ``code``: the limit it hit, by name, else the code."""
        sig = exit_signal(code, confined=self.sandbox is not None)
        if sig == signal.SIGXFSZ:
            return f"MAX_OUTPUT_MB exceeded: a file the run wrote grew past {self.max_output_mb} MB"
        if sig == signal.SIGXCPU:
            return (f"CPU time limit exceeded: the run used more CPU time than its deadline of "
                    f"{spec.deadline_seconds}s allows for cpu_request={spec.cpu_request}")
        if tail and "bad_alloc" in tail:
            return f"out of memory: sumo needed more than its memory_gi={spec.memory_gi} GiB (exit code {code})"
        if sig is not None:
            return f"sumo was killed by signal {sig}"
        return f"sumo exited with code {code}"

    def _copy_log(self, wd: WorkDir, log_file: str) -> None:
        """The config's own ``log`` file gets the job's log, written without following any link the run
        made (the runner may be root)."""
        try:
            out = open_beneath(wd.run_dir, log_file)
        except OSError as exc:
            log.warning("job log not copied to %s: %s", log_file, exc)
            return
        with open(wd.log, "rb") as src, os.fdopen(out, "wb") as dst:
            shutil.copyfileobj(src, dst)


def _stop_orphan(wd: WorkDir) -> None:
    """Kill a run left behind by a worker that died (its message is being re-delivered).

    An unconfined child runs in its own session, so it outlives a SIGKILLed worker (a
    sandboxed one dies with it: bwrap's --die-with-parent); a re-run must not share the
    work directory with it.  The pid is only trusted while it still names a process
    started in this job's directory.
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
