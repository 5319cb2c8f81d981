"""The command that runs one local simulation confined: pure functions, no I/O.

A run is untrusted: SUMO, a C++ program, parses the tenant's files, and validation may miss an option
that makes it write, read or connect somewhere.  So every run is a chain of programs, each ``exec``-ing
the next (the pid the runner holds ends up being bwrap's, and killing it ends the run):

1. ``unshare --mount --propagation private`` and :mod:`core.executors.sandbox_stage`, as root: in a
   mount namespace of its own, the run's folders (and SUMO's install) are bind-mounted under
   :data:`STAGE`, a fresh tmpfs every user may traverse.  bwrap resolves the folders it binds with the
   run's own uid, which may not pass the folders above DATA_DIR (a home folder, pytest's 0700 temp
   root); staging makes the sandbox independent of where DATA_DIR lives, and leaves nothing behind on
   the host (the namespace dies with the run).  The stage then drops to the slot's uid and gid with no
   supplementary groups (a fresh single-threaded process: no ``preexec_fn`` in the multi-threaded
   worker) — one uid per slot of the slot pool, so runs cannot signal or read each other and
   RLIMIT_NPROC counts one run.
2. ``prlimit``: address space (the job's memory_gi; MALLOC_ARENA_MAX keeps glibc's arenas from
   inflating it), CPU time (the deadline plus a grace, per requested CPU: a backstop if the runner is
   gone), file size (MAX_OUTPUT_MB), processes and threads, open files, no core dumps.
3. ``bwrap`` as that uid: new user, pid, network (loopback only), ipc, uts and cgroup namespaces, a new
   session, killed with its parent, user namespaces disabled inside, an empty environment but what
   SUMO needs.  The root is an empty read-only tmpfs with ``/usr`` (and the ``/lib``-style links), SUMO's
   install and the loader's cache read-only, a new ``/proc``, a ``/dev`` of null, zero, full, random
   and urandom only, a size- and inode-limited tmpfs ``/tmp``, the run folder at ``/jobs/<job id>``
   (:func:`job_dir`; also HOME) and the statistics folder at :data:`STATS_DIR` — the only writable
   places.

Inputs stay read-only inside the writable run folder by ownership, not by mounts: the runner unpacks
them owned by root, in folders owned by root with the slot's group, mode 1775 (group-writable,
sticky).  The run creates its outputs anywhere in that tree, but the kernel lets it neither write a
file it does not own nor delete or rename one in a sticky folder — so a scenario of any number of
files needs no bind mount per file.  The runner's own files (outcome, lock, log, pid) are in the job's
folder above, which the sandbox never sees; the statistics get a folder of their own for the same
reason.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

#: Where the run folder (``/jobs/<job id>``: the id shows in the run's paths and its cwd) and the
#: statistics folder appear inside the sandbox.
JOBS_DIR = "/jobs"
STATS_DIR = "/stats"
#: Where the stage mounts what bwrap binds, in the run's own mount namespace (never on the host).
STAGE = "/tmp/sumo-k8"

#: Processes and threads of one run: SUMO's simulation and routing threads plus bwrap's two processes;
#: far above what SUMO puts to use, far below what would exhaust the machine's process table.
MAX_TASKS = 256
#: Open files of one process: inputs, one per output file or detector file, libraries.
MAX_OPEN_FILES = 4096
#: CPU seconds allowed past the deadline before the kernel stops a run whose runner is gone.
CPU_GRACE_SECONDS = 60
#: The sandbox's /tmp: scratch space, not where outputs belong (it vanishes with the run).
TMP_BYTES = 64 * 1024 * 1024
TMP_INODES = 4096
#: The devices SUMO may need; no pts, shm or tty.
DEVICES = ("null", "zero", "full", "random", "urandom")
#: The environment of the programs of the chain itself (bwrap's own environment is readable inside
#: the sandbox through /proc/1/environ, so nothing of the worker's may reach it).
CHAIN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Limits:
    """The rlimits of one run (bytes, seconds, counts)."""

    address_space: int
    cpu_seconds: int
    file_size: int
    tasks: int | None = MAX_TASKS        # None: not limited (an unconfined run shares the worker's uid)
    open_files: int = MAX_OPEN_FILES

    @classmethod
    def for_run(cls, *, memory_gi: int, cpu_request: int, deadline_seconds: int, max_output_mb: int,
                confined: bool = True) -> "Limits":
        return cls(
            address_space=max(1, memory_gi) * 2**30,
            cpu_seconds=(deadline_seconds + CPU_GRACE_SECONDS) * max(1, cpu_request),
            file_size=max_output_mb * 2**20,
            tasks=MAX_TASKS if confined else None,
        )

    def prlimit_args(self) -> list[str]:
        """``prlimit`` options setting soft and hard limits alike (the run cannot raise them)."""
        args = [f"--as={self.address_space}", f"--cpu={self.cpu_seconds}", f"--fsize={self.file_size}",
                f"--nofile={self.open_files}", "--core=0"]
        if self.tasks is not None:
            args.append(f"--nproc={self.tasks}")
        return args


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the programs of the chain (found once, at startup)."""

    unshare: str
    prlimit: str
    bwrap: str
    python: str
    stage: str   # core/executors/sandbox_stage.py


@dataclass(frozen=True)
class HostView:
    """What of the host the sandbox shows, read-only, at the same paths."""

    sumo_home: str
    sumo_dirs: tuple[str, ...]                  # SUMO's install outside /usr (the wheel's two folders)
    links: tuple[tuple[str, str], ...] = ()     # ("/lib", "usr/lib"): merged-/usr links, recreated
    dirs: tuple[str, ...] = ()                  # "/lib" and the like where they are real folders
    files: tuple[str, ...] = ()                 # "/etc/ld.so.cache" and the like, if present


@dataclass(frozen=True)
class RunBox:
    """One run: its slot's identity, its folders on the host, where it starts, its limits."""

    uid: int
    gid: int
    run_dir: str          # host path, appears at job_dir
    stats_dir: str        # host path, appears at STATS_DIR
    job_dir: str          # inside: job_dir(job id)
    workdir: str          # inside: job_dir or a folder below it (where the .sumocfg is)
    limits: Limits
    tmp_bytes: int = TMP_BYTES
    tmp_inodes: int = TMP_INODES
    extra_env: dict = field(default_factory=dict)


def job_dir(job_id: str) -> str:
    """Where a job's run folder appears inside its sandbox."""
    return f"{JOBS_DIR}/{job_id}"


def sumo_env(sumo_home: str, home: str, tmp: str) -> dict[str, str]:
    """What SUMO's environment holds, sandboxed or not: nothing of the service's.  ``PROJ_DATA``/``PROJ_LIB``
    point at the wheel's PROJ data when SUMO_HOME has it (as the wheel's own launcher sets them): without
    them every geo-referenced network logs "Cannot find proj.db" and loses its projection."""
    env = {"SUMO_HOME": sumo_home, "HOME": home, "TMPDIR": tmp, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin"}
    if os.path.isdir(proj := os.path.join(sumo_home, "data", "proj")):
        env["PROJ_DATA"] = env["PROJ_LIB"] = proj
    return env


def sandbox_env(host: HostView, home: str) -> dict[str, str]:
    """Everything SUMO's environment holds inside the sandbox."""
    return sumo_env(host.sumo_home, home, "/tmp")


def stage_spec(box: RunBox, host: HostView) -> dict:
    """What :mod:`core.executors.sandbox_stage` mounts under STAGE before it drops to the slot's uid."""
    binds = [[box.run_dir, "run"], [box.stats_dir, "stats"]]
    binds += [[d, f"sumo{i}"] for i, d in enumerate(host.sumo_dirs)]
    return {
        "uid": box.uid,
        "gid": box.gid,
        "stage": STAGE,
        "binds": binds,
        "tmpfs": [["tmp", box.tmp_bytes, box.tmp_inodes]],
    }


def bwrap_args(box: RunBox, host: HostView) -> list[str]:
    """bwrap's options (everything before ``--``), in the order bwrap applies them."""
    args = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--hostname", "sumo", "--clearenv"]
    for name, value in {**sandbox_env(host, box.job_dir), **box.extra_env}.items():
        args += ["--setenv", name, value]
    args += ["--ro-bind", "/usr", "/usr"]
    for path, target in host.links:
        args += ["--symlink", target, path]
    for path in (*host.dirs, *host.files):
        args += ["--ro-bind", path, path]
    args += ["--bind", f"{STAGE}/tmp", "/tmp"]
    for i, path in enumerate(host.sumo_dirs):  # after /tmp: an install under /tmp stays visible on top of it
        args += ["--ro-bind", f"{STAGE}/sumo{i}", path]
    args += ["--bind", f"{STAGE}/run", box.job_dir, "--bind", f"{STAGE}/stats", STATS_DIR,
             "--proc", "/proc", "--dir", "/dev"]
    for device in DEVICES:
        args += ["--dev-bind", f"/dev/{device}", f"/dev/{device}"]
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{i}", f"/dev/{name}"]
    args += ["--symlink", "/proc/self/fd", "/dev/fd", "--remount-ro", "/", "--chdir", box.workdir]
    return args


def confined_command(box: RunBox, host: HostView, tools: Tools, argv: list[str]) -> list[str]:
    """The whole chain for ``argv`` (SUMO's command line, paths as seen inside the sandbox)."""
    return [
        tools.unshare, "--mount", "--propagation", "private", "--",
        tools.python, "-I", "-S", tools.stage, json.dumps(stage_spec(box, host), separators=(",", ":")),
        tools.prlimit, *box.limits.prlimit_args(), "--",
        tools.bwrap, *bwrap_args(box, host), "--", *argv,
    ]


def unconfined_command(limits: Limits, prlimit: str, argv: list[str]) -> list[str]:
    """LOCAL_SANDBOX=off: SUMO as the worker's user, with the rlimits only."""
    return [prlimit, *limits.prlimit_args(), "--", *argv]


def unconfined_env(sumo_home: str, run_dir: str) -> dict[str, str]:
    """LOCAL_SANDBOX=off: still nothing of the worker's environment (no credentials, no URLs)."""
    return sumo_env(sumo_home, run_dir, os.environ.get("TMPDIR", "/tmp"))