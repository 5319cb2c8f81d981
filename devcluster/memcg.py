"""A memory cgroup per container: how the node agent enforces ``resources.limits.memory``, as a kubelet does.

A container whose memory passes its limit is killed by the kernel's OOM killer and reported with the
reason ``OOMKilled`` (exit code 137), as a kubelet reports it.  The unified hierarchy (cgroup v2:
``memory.max``, ``memory.events``) is used where it has the memory controller, else the v1 memory
hierarchy (``memory.limit_in_bytes``, ``memory.oom_control``).  Where neither can be written the
container runs without a limit and :func:`available` says why (the node agent logs it once).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
#: The node agent's own subtree, under which each container gets one cgroup.
GROUP = "sumo-k8-devcluster"


def _v2_root() -> Path | None:
    for d in (ROOT, ROOT / "unified"):
        try:
            if "memory" in (d / "cgroup.controllers").read_text().split():
                return d
        except OSError:
            continue
    return None


def _v1_root() -> Path | None:
    d = ROOT / "memory"
    return d if (d / "memory.limit_in_bytes").exists() else None


def _parent() -> tuple[Path, int] | None:
    """The agent's subtree and the hierarchy's version, created on first use; None without either."""
    v2 = _v2_root()
    if v2 is not None:
        parent = v2 / GROUP
        try:
            parent.mkdir(exist_ok=True)
            (v2 / "cgroup.subtree_control").write_text("+memory")
            (parent / "cgroup.subtree_control").write_text("+memory")
            return parent, 2
        except OSError as exc:
            log.debug("cgroup v2 memory controller not usable: %s", exc)
    v1 = _v1_root()
    if v1 is not None:
        try:
            (v1 / GROUP).mkdir(exist_ok=True)
            return v1 / GROUP, 1
        except OSError as exc:
            log.debug("cgroup v1 memory hierarchy not writable: %s", exc)
    return None


def available() -> str | None:
    """None when containers' memory limits can be enforced here, else why not."""
    if _parent() is None:
        return "no writable memory cgroup (v2 memory controller or v1 memory hierarchy) on this machine"
    return None


class MemoryCgroup:
    """One container's cgroup: its limit set, the container's shell joins it (``procs``) before it execs."""

    def __init__(self, path: Path, version: int) -> None:
        self.path, self.version = path, version

    @classmethod
    def create(cls, name: str, limit_bytes: int) -> MemoryCgroup | None:
        """A fresh cgroup ``name`` limited to ``limit_bytes``; None where memory cannot be limited."""
        found = _parent()
        if found is None:
            return None
        parent, version = found
        path = parent / name
        path.mkdir(exist_ok=True)
        limit = str(int(limit_bytes))
        if version == 2:
            (path / "memory.max").write_text(limit)
            if (path / "memory.swap.max").exists():  # no swap beyond the limit
                (path / "memory.swap.max").write_text("0")
        else:
            (path / "memory.limit_in_bytes").write_text(limit)
            swap = path / "memory.memsw.limit_in_bytes"
            if swap.exists():  # no swap beyond the limit, where the kernel accounts swap
                try:
                    swap.write_text(limit)
                except OSError:
                    pass
        return cls(path, version)

    @property
    def procs(self) -> Path:
        """Where a process writes its pid to join."""
        return self.path / "cgroup.procs"

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of this cgroup."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            fields = dict(line.split() for line in (self.path / name).read_text().splitlines() if " " in line)
        except OSError:
            return False
        return int(fields.get("oom_kill", "0")) > 0

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (it stays, harmless, while one lingers)."""
        try:
            os.rmdir(self.path)
        except OSError:
            pass
