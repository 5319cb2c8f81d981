"""One running simulation under watch: its console output, what it writes, how it is stopped.

The runner (:mod:`core.executors.local_runner`) starts the process and asks these helpers, every
poll, whether a cap is passed; they never hold more than one read of output in memory and never
follow a link the run may have planted.
"""
from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 5.0
CHUNK = 65536
BLOCK = 4096


class LogPump(threading.Thread):
    """Copy the child's output to the log as it arrives (unbuffered, so followers see it), up to ``cap``
    bytes; past it the log stops growing and :attr:`over_cap` is set.

    The pipe is drained to the end whatever happens to the file: a child blocked on a full pipe would
    otherwise hang until its deadline.
    """

    def __init__(self, stream, out, cap: int) -> None:
        super().__init__(daemon=True, name="log-pump")
        self.stream, self.out, self.cap = stream, out, cap
        self.written = 0
        self.over_cap = threading.Event()

    def run(self) -> None:
        writable = True
        while chunk := self.stream.read1(CHUNK):
            if not writable:
                continue
            room = self.cap - self.written
            if len(chunk) > room:
                chunk = chunk[:max(0, room)]
                self.over_cap.set()
                writable = False
            try:
                self.out.write(chunk)
                self.written += len(chunk)
            except OSError:
                log.exception("log file unwritable; discarding the rest of the output")
                writable = False


def written_bytes(folders: list[Path], inputs: dict[str, list[int]]) -> int:
    """What a run wrote into ``folders`` (the run folder first, whose unchanged inputs ``inputs`` lists):
    file sizes rounded up to whole blocks, a block per folder it made, links and other entries one block.

    Walks with an explicit stack and never follows links, so neither a deep tree nor a link out of the
    folder changes what is counted.
    """
    total = 0
    for index, top in enumerate(folders):
        stack = [(top, "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                rel = prefix + entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    total += BLOCK
                    stack.append((Path(entry.path), rel + "/"))
                elif index == 0 and inputs.get(rel) == [st.st_size, st.st_mtime_ns]:
                    continue
                else:
                    total += max(BLOCK, -(-st.st_size // BLOCK) * BLOCK)
    return total


def pids_of_uid(uid: int | range) -> list[int]:
    """Processes (not zombies) whose real uid is ``uid`` (or in the range): a sandboxed run's, since each
    run has a uid of its own."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as fh:
                status = fh.read(4096)
        except OSError:
            continue
        fields = dict(line.split(b":", 1) for line in status.splitlines() if b":" in line)
        if fields.get(b"State", b"").strip().startswith(b"Z"):
            continue
        real = int(fields.get(b"Uid", b"-1 ").split()[0])
        if real in uid if isinstance(uid, range) else real == uid:
            found.append(int(name))
    return found


def stop(proc: subprocess.Popen, uid: int | None) -> None:
    """SIGTERM the run (SUMO closes its outputs on it), SIGKILL it after a grace period.

    Confined (``uid`` given): SIGTERM goes to every process of the run's uid but bwrap's own (bwrap
    would die of it at once, taking SUMO with it before it can finish its files); the SIGKILL goes to
    bwrap, whose death ends its pid namespace and so everything in it.  Unconfined: to the process group.
    """
    try:
        if uid is None:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            for pid in pids_of_uid(uid):
                if pid != proc.pid:
                    _kill(pid, signal.SIGTERM)
        proc.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        kill(proc, uid)
    except ProcessLookupError:
        pass


def kill(proc: subprocess.Popen, uid: int | None) -> None:
    if uid is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
    proc.kill()
    for pid in pids_of_uid(uid):  # belt and braces: nothing of the uid outlives bwrap
        _kill(pid, signal.SIGKILL)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(uid: int, timeout: float = 10.0) -> bool:
    """Whether every process of ``uid`` is gone within ``timeout`` (the namespace's teardown is asynchronous)."""
    end = time.monotonic() + timeout
    while pids_of_uid(uid):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def exit_signal(code: int, confined: bool) -> int | None:
    """The signal that ended SUMO, from the exit status of what the runner started (bwrap reports a
    child killed by signal n as 128 + n), or None."""
    if code < 0:
        return -code
    if confined and 128 < code < 128 + 65:
        return code - 128
    return None


def open_beneath(root: Path, rel: str) -> int:
    """A descriptor for writing ``root/rel`` (created or truncated), refusing any link on the way: the
    run may have planted one to make the runner, as root, write elsewhere."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise OSError(f"not a path below the run folder: {rel!r}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        # O_NONBLOCK: a planted FIFO fails (no reader: the run is gone) instead of blocking the runner
        out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(out).st_mode):
        os.close(out)
        raise OSError(f"{rel!r} in the run folder is not a regular file")
    os.ftruncate(out, 0)
    os.set_blocking(out, True)
    return out
