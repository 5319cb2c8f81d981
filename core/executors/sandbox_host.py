"""The sandbox on this machine: its programs, what of the host it shows, and whether it works here.

:mod:`core.executors.sandbox` builds commands from plain values; this module finds those values once,
when a simulation worker starts (:meth:`Sandbox.discover`), and proves them with a test run in the
sandbox (:meth:`Sandbox.check`): a machine that cannot sandbox (no bubblewrap, user namespaces off,
not root) is told so before any job runs, not by the first job failing.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.executors.local_process import pids_of_uid
from core.executors.local_slots import UidLease, UidPool
from core.executors.sandbox import (
    CHAIN_ENV, STATS_DIR, HostView, Limits, RunBox, Tools, confined_command, job_dir,
)

#: Folders of a root file system the loader or SUMO may need, and files that only speed it up.
SYSTEM_PATHS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_EXTRAS = ("/etc/ld.so.cache", "/etc/alternatives")
PROBE_TIMEOUT = 60


class SandboxUnavailable(RuntimeError):
    """This machine cannot run simulations in the sandbox; the message says why."""


def sumo_layout(sumo_binary: str) -> tuple[str, tuple[str, ...]]:
    """SUMO_HOME of ``sumo_binary`` and the folders outside /usr the binary needs (the wheel's ``sumo/``
    and its bundled libraries ``eclipse_sumo.libs/``; a system install needs none)."""
    binary = Path(sumo_binary).resolve()
    home = binary.parent.parent
    if (home / "share" / "sumo").is_dir():          # /usr/bin/sumo: data in /usr/share/sumo
        home = home / "share" / "sumo"
    candidates = [home, binary.parent, binary.parent.parent.parent / "eclipse_sumo.libs"]
    kept: list[Path] = []
    for path in candidates:
        if not path.is_dir() or _under(path, Path("/usr")) or any(_under(path, k) for k in kept):
            continue
        kept = [k for k in kept if not _under(k, path)] + [path]
    return str(home), tuple(str(p) for p in kept)


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def host_view(sumo_binary: str) -> HostView:
    home, dirs = sumo_layout(sumo_binary)
    links, system_dirs = [], []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            links.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            system_dirs.append(path)
    extras_dirs = tuple(p for p in SYSTEM_EXTRAS if os.path.isdir(p) and not os.path.islink(p))
    extras_files = tuple(p for p in SYSTEM_EXTRAS if os.path.isfile(p) and not os.path.islink(p))
    return HostView(sumo_home=home, sumo_dirs=dirs, links=tuple(links),
                    dirs=tuple(system_dirs) + extras_dirs, files=extras_files)


def find_tools() -> tuple[Tools | None, str | None]:
    """The chain's programs from PATH, or why they cannot all be found."""
    found = {name: shutil.which(name) for name in ("bwrap", "unshare", "prlimit")}
    if not found["bwrap"]:
        return None, "bwrap is not installed (Debian: apt-get install bubblewrap; `make sandbox-deps`)"
    missing = [name for name, path in found.items() if not path]
    if missing:
        return None, f"{', '.join(missing)} not found (Debian: util-linux)"
    stage = str(Path(__file__).with_name("sandbox_stage.py"))
    return Tools(unshare=found["unshare"], prlimit=found["prlimit"], bwrap=found["bwrap"],
                 python=sys.executable, stage=stage), None


@dataclass(frozen=True)
class Sandbox:
    """The sandbox as configured for this machine's slot pool."""

    tools: Tools
    host: HostView
    uids: UidPool

    @classmethod
    def discover(cls, *, sumo_binary: str, uid_base: int) -> "Sandbox":
        """The sandbox, or :class:`SandboxUnavailable` naming what is missing."""
        if os.geteuid() != 0:
            raise SandboxUnavailable(
                f"the simulation workers run as uid {os.geteuid()}, not root: only root can give each run a uid of "
                "its own")
        tools, missing = find_tools()
        if tools is None:
            raise SandboxUnavailable(missing)
        uids = UidPool(uid_base)
        for uid in range(uids.base, uids.base + uids.size):
            try:
                owner = pwd.getpwuid(uid).pw_name
            except KeyError:
                continue
            raise SandboxUnavailable(
                f"uid {uid} (in LOCAL_SANDBOX_UID_BASE={uid_base} .. +{uids.size - 1}) is the account {owner!r}; "
                "choose a range no account uses")
        return cls(tools=tools, host=host_view(sumo_binary), uids=uids)

    def lease_uid(self) -> UidLease:
        """A uid of its own for one run (held until released), with any process left under it by a run
        whose worker died stopped first.  RuntimeError when every uid of the range is in use."""
        lease = self.uids.try_acquire()
        if lease is None:
            raise RuntimeError(f"all {self.uids.size} sandbox uids from LOCAL_SANDBOX_UID_BASE={self.uids.base} "
                               "are in use on this machine")
        for pid in pids_of_uid(lease.uid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return lease

    def box(self, *, uid: int, job_id: str, run_dir: Path, stats_dir: Path, config_folder: str,
            limits: Limits) -> RunBox:
        """The sandbox of job ``job_id`` as ``uid``; SUMO starts in ``config_folder`` (relative to
        the run folder, "." for its top)."""
        inside = job_dir(job_id)
        workdir = inside if config_folder in ("", ".") else f"{inside}/{config_folder}"
        return RunBox(uid=uid, gid=uid, run_dir=str(run_dir), stats_dir=str(stats_dir), job_dir=inside,
                      workdir=workdir, limits=limits)

    def command(self, box: RunBox, argv: list[str]) -> list[str]:
        return confined_command(box, self.host, self.tools, argv)

    @staticmethod
    def hand_over(run_dir: Path, stats_dir: Path, gid: int) -> None:
        """Make the unpacked inputs read-only to the run and its folders writable (see the module
        docstring of :mod:`core.executors.sandbox`): folders root-owned with the run's group, mode 1775;
        files root-owned, 0644."""
        stats_dir.mkdir(parents=True, exist_ok=True)
        for folder in (run_dir, stats_dir):
            os.chown(folder, 0, gid, follow_symlinks=False)
            os.chmod(folder, 0o1775, follow_symlinks=False)
        stack = [run_dir]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        os.chown(entry.path, 0, gid, follow_symlinks=False)
                        os.chmod(entry.path, 0o1775, follow_symlinks=False)
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        os.chown(entry.path, 0, 0, follow_symlinks=False)
                        os.chmod(entry.path, 0o644, follow_symlinks=False)

    def check(self, sumo_binary: str, scratch: Path) -> None:
        """A test run in the sandbox (under a leased uid, as a run): SUMO starts, writes into its run
        folder, and what it writes is the run's uid's on the host.  :class:`SandboxUnavailable` if not."""
        run_dir, stats_dir = scratch / "run", scratch / "stats"
        shutil.rmtree(scratch, ignore_errors=True)
        run_dir.mkdir(parents=True)
        try:
            lease = self.lease_uid()
        except (OSError, RuntimeError) as exc:
            raise SandboxUnavailable(f"no sandbox uid could be leased: {exc}") from None
        uid = lease.uid
        try:
            self.hand_over(run_dir, stats_dir, uid)
            limits = Limits.for_run(memory_gi=1, cpu_request=1, deadline_seconds=PROBE_TIMEOUT, max_output_mb=16)
            inside = job_dir("sandbox-check")
            box = RunBox(uid=uid, gid=uid, run_dir=str(run_dir), stats_dir=str(stats_dir), job_dir=inside,
                         workdir=inside, limits=limits)
            argv = [str(Path(sumo_binary).resolve()), "--save-configuration", f"{inside}/probe.sumocfg",
                    "--statistic-output", f"{STATS_DIR}/probe.xml"]
            try:
                done = subprocess.run(self.command(box, argv), cwd=run_dir, env=CHAIN_ENV, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=PROBE_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise SandboxUnavailable(f"a test run in the sandbox did not end within {PROBE_TIMEOUT}s") from None
            written = run_dir / "probe.sumocfg"
            if done.returncode != 0 or not written.is_file():
                lines = done.stdout.decode(errors="replace").strip().splitlines() or [f"exit code {done.returncode}"]
                raise SandboxUnavailable(f"a test run in the sandbox failed: {lines[-1]}")
            if written.stat().st_uid != uid:
                raise SandboxUnavailable(f"a test run in the sandbox wrote as uid {written.stat().st_uid}, not {uid}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            lease.release()
