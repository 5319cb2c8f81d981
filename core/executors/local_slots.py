"""A machine-wide cap on concurrent simulations, as a pool of file locks.

Each slot is a file under the work root held with ``flock``; the kernel
releases it when the holder dies, so a SIGKILLed worker never leaks a slot,
and every worker process on the machine shares the same pool.
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
