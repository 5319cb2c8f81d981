"""Container log files as a CRI runtime writes them and the kubelet rotates them.

Each record is one line of the file: ``<RFC3339Nano, 9 digits, UTC> <stream> <P|F> <content>``.  Output is
cut into records at each newline and every :data:`MAX_RECORD` bytes (containerd's 16 KiB): ``F`` ends a line
(its newline is the record's), ``P`` is part of a longer one (no newline of its own).  A final piece without a
newline is written as ``F``, as containerd does.

When the file passes ``max_size`` (the kubelet's containerLogMaxSize, 10 MiB by default) it is renamed to
``<name>.<n>`` and a new one is started; ``max_files`` (containerLogMaxFiles, 5) are kept, the current one
included.  As on a real node, ``pods/log`` then reads the current file only (:mod:`devcluster.logserver`); a
follower moves on to the new file.  Unlike the kubelet (which looks every 10 s), the writer rotates at once.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

MAX_RECORD = 16 * 1024
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5


def timestamp(ns: int | None = None) -> str:
    """RFC3339 with nanoseconds, fixed width, UTC (what the kubelet prints with ``timestamps=true``)."""
    ns = time.time_ns() if ns is None else ns
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def parse_size(text: str) -> int:
    """``10Mi``, ``512Ki``, ``1Gi``, ``10M`` or a plain byte count."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


class LogWriter:
    """The log file of one container attempt; ``pump`` it from the container's stdout and stderr."""

    def __init__(self, path: Path, max_size: int = DEFAULT_MAX_SIZE, max_files: int = DEFAULT_MAX_FILES) -> None:
        self.path, self.max_size, self.max_files = path, max_size, max(1, max_files)
        self.lock = threading.Lock()
        self.fh = open(path, "ab", buffering=0)
        self.rotations = 0

    def write(self, stream: str, piece: bytes, full: bool) -> None:
        record = f"{timestamp()} {stream} {'F' if full else 'P'} ".encode() + piece + b"\n"
        with self.lock:
            if self.fh.tell() and self.fh.tell() + len(record) > self.max_size:
                self._rotate()
            self.fh.write(record)

    def _rotate(self) -> None:
        self.fh.close()
        self.rotations += 1
        os.replace(self.path, self.path.with_name(f"{self.path.name}.{self.rotations}"))
        stale = self.rotations - (self.max_files - 1)
        if stale >= 1:
            self.path.with_name(f"{self.path.name}.{stale}").unlink(missing_ok=True)
        self.fh = open(self.path, "ab", buffering=0)

    def pump(self, pipe, stream: str) -> None:
        """Copy ``pipe`` into records until it closes."""
        while True:
            piece = pipe.readline(MAX_RECORD)
            if not piece:
                break
            full = piece.endswith(b"\n")
            self.write(stream, piece[:-1] if full else piece, full or len(piece) < MAX_RECORD)
        pipe.close()

    def close(self) -> None:
        with self.lock:
            self.fh.close()


def parse_record(record: bytes) -> tuple[bytes, int, str, bool, bytes] | None:
    """``(timestamp, its nanoseconds, stream, full, content)`` of one record (its newline taken off), or None."""
    try:
        ts, stream, tag, content = record.split(b" ", 3)
    except ValueError:
        return None
    ns = parse_timestamp(ts)
    if ns is None or tag not in (b"P", b"F"):
        return None
    return ts, ns, stream.decode(), tag == b"F", content


def parse_timestamp(ts: bytes) -> int | None:
    """Nanoseconds since the epoch of an RFC3339 timestamp in UTC (``Z``, with or without a fraction)."""
    import calendar

    try:
        text = ts.decode()
        if not text.endswith("Z"):
            return None
        whole, _, fraction = text[:-1].partition(".")
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        return seconds * 1_000_000_000 + int((fraction or "0")[:9].ljust(9, "0"))
    except ValueError:
        return None
