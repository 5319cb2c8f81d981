"""A machine-wide cap on concurrent simulations, and the sandbox uids of the runs, as pools of file locks.

Each slot is a file under the work root held with ``flock``; the kernel
releases it when the holder dies, so a SIGKILLed worker never leaks a slot,
and every worker process on the machine shares the same pool.

A sandboxed run also leases a uid of its own from :class:`UidPool`, whose
locks live in one folder for the whole machine (not under a work root): two
services on one machine (``make run`` beside a test stack) never give two runs
the same uid, so stopping one run by its uid cannot touch another's processes.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


class SlotPool:
    def __init__(self, directory: Path, size: int) -> None:
        self.directory = directory
        self.size = size
        directory.mkdir(parents=True, exist_ok=True)

    def try_acquire(self) -> "Slot | None":
        for index in range(self.size):
            fd = os.open(self.directory / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return Slot(index, fd)
        return None

    def in_use(self) -> int:
        busy = 0
        for index in range(self.size):
            fd = os.open(self.directory / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                busy += 1
            finally:
                os.close(fd)
        return busy


class Slot:
    def __init__(self, index: int, fd: int) -> None:
        self.index = index
        self._fd = fd
        #: The sandbox uid leased for this slot's run (None: unconfined, or not leased yet).
        self.uid_lease: UidLease | None = None

    @property
    def uid(self) -> int | None:
        return self.uid_lease.uid if self.uid_lease is not None else None

    def release(self) -> None:
        if self.uid_lease is not None:
            self.uid_lease.release()
            self.uid_lease = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


#: Where the uid leases of the whole machine are kept (root's; the sandbox needs root anyway).
UID_LEASES_DIR = Path("/run/sumo-k8/sandbox-uids")
#: How many uids from LOCAL_SANDBOX_UID_BASE on the leases use: far more than runs at once on one machine.
UID_POOL_SIZE = 1024


class UidPool:
    """Leases of the uids ``base .. base + size - 1``, one run each, for the whole machine."""

    def __init__(self, base: int, size: int = UID_POOL_SIZE, directory: Path = UID_LEASES_DIR) -> None:
        self.base, self.size, self.directory = base, size, directory

    def try_acquire(self) -> "UidLease | None":
        """A free uid, or None when every one is leased.  A uid's lock is only free when no run holds it,
        so processes still running under it belong to a run whose worker died: the caller stops them."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for uid in range(self.base, self.base + self.size):
            fd = try_lock_file(self.directory / f"{uid}.lock")
            if fd is not None:
                return UidLease(uid, fd)
        return None


class UidLease:
    def __init__(self, uid: int, fd: int) -> None:
        self.uid = uid
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def try_lock_file(path: Path) -> int | None:
    """An exclusive, non-blocking lock on ``path``; the fd to close, or None if held elsewhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
