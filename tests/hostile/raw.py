"""Run a scenario in the local runner's sandbox with no validation: unpack it as it is, run it.

What :class:`~core.executors.local_runner.LocalRunner` does for a job, minus fetching it from the
store and :func:`core.scenario.inspect_archive`: whatever validation would refuse reaches SUMO.
"""
from __future__ import annotations

import io
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.domain.states import StatusEvent
from core.executors.base import JobSpec
from core.executors.local import default_sumo_binary
from core.executors.local_runner import LocalRunner, WorkDir
from core.executors.local_slots import SlotPool
from core.executors.sandbox_host import Sandbox
from core.scenario import ArchiveLimits


@dataclass
class RawRun:
    event: StatusEvent
    wd: WorkDir
    uid: int | None   # None: unconfined


def runner(work_root: Path, *, slots: int = 1, uid_base: int = 1_900_000_000, max_output_mb: int = 100,
           max_log_mb: int = 10, confined: bool = True) -> LocalRunner:
    """A runner as a simulation worker builds it (``confined=False``: as with LOCAL_SANDBOX=off)."""
    import shutil

    pool = SlotPool(work_root / ".slots", slots)
    sumo = default_sumo_binary()
    sandbox = Sandbox.discover(sumo_binary=sumo, uid_base=uid_base) if confined else None
    return LocalRunner(work_root=work_root, store=None, publish=lambda event: None, slots=pool, sumo_binary=sumo,
                       limits=ArchiveLimits(1 << 30, 10_000, 1000), sandbox=sandbox, max_output_mb=max_output_mb,
                       max_log_mb=max_log_mb, prlimit=shutil.which("prlimit"))


def run_raw(run: LocalRunner, archive: bytes, config_file: str, *, memory_gi: int = 1, deadline: int = 120,
            on_start=None) -> RawRun:
    """Unpack ``archive`` unchecked into a fresh job's run folder and run it; ``on_start(wd, uid)`` is
    called from a thread once the run is under way (to cancel it, say)."""
    import threading

    job_id = str(uuid.uuid4())
    spec = JobSpec(job_id=job_id, tenant_id="hostile", namespace="hostile", cpu_request=1, memory_gi=memory_gi,
                   config_file=config_file, input_key="", deadline_seconds=deadline)
    wd = run.workdir(job_id)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        zf.extractall(wd.run_dir)   # no validation: the names are the test's own, the content is not checked
    slot = run.take_slot()
    assert slot is not None, "the test runner's slot is busy"
    uid = slot.uid
    try:
        run.hand_over(wd, slot)
        if on_start is not None:
            threading.Thread(target=on_start, args=(wd, uid), daemon=True).start()
        event = run.execute(spec, wd, wd.run_dir / config_file, None, slot)
    finally:
        slot.release()
    return RawRun(event, wd, uid)
