"""Bounded readers of archive members: declared sizes enforced, gzip inflated against one budget.

``BoundedReader`` refuses to deliver more bytes than a member's (already
checked) declared size, so a lying header gets a 413 instead of filling
memory or disk. ``XmlMemberReader`` passes XML inputs through, or inflates
them when they are gzip (sumo recognizes ``.xml.gz`` by its magic bytes),
piece by piece, charging every inflated byte to the archive's one
``InflationBudget``: a gzip bomb, or many, costs bounded CPU and no memory.
Every read failure of a corrupt member is a 422 naming it.
"""

from __future__ import annotations

import zipfile
import zlib
from typing import IO, Iterator

from .errors import ScenarioError

__all__ = ["BoundedReader", "InflationBudget", "XmlMemberReader", "open_member", "read_member", "CHUNK"]

CHUNK = 64 * 1024
#: Largest piece handed out by the member readers (the XML scanner reads this much at a time).
_READ_MAX = 1 << 20


class BoundedReader:
    """File-like wrapper that refuses to deliver more than ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int, name: str) -> None:
        self._stream = stream
        self._limit = limit
        self._count = 0
        self._name = name

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK
        try:
            data = self._stream.read(min(size, _READ_MAX))
        except Exception as exc:  # BadZipFile (bad CRC), zlib.error, lzma.LZMAError, EOFError...
            raise ScenarioError(f"entry {self._name!r} is corrupt ({exc})") from None
        self._count += len(data)
        if self._count > self._limit:
            raise ScenarioError(
                f"entry {self._name!r} expands beyond its declared size of {self._limit} bytes", 413
            )
        return data

    def close(self) -> None:
        self._stream.close()

    def chunks(self) -> Iterator[bytes]:
        while True:
            data = self.read(CHUNK)
            if not data:
                return
            yield data


class InflationBudget:
    """Bytes that gzip members of one archive may still inflate to, shared by all of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, n: int, name: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise ScenarioError(
                f"{name} inflates beyond what is left of the {self.limit} bytes the archive's "
                "gzip-compressed files may inflate to in total", 413
            )


class XmlMemberReader:
    """Reader for an XML input member that may be gzip-compressed (sumo reads ``.xml.gz``).

    Plain members are passed through; gzip members (recognized by their magic
    bytes, as sumo does) are inflated on the fly, piece by piece, each
    inflated byte charged to the archive's shared :class:`InflationBudget`.
    Concatenated gzip members are inflated like ``gzip`` does.
    """

    def __init__(self, raw: BoundedReader, budget: InflationBudget, name: str) -> None:
        self._raw = raw
        self._name = name
        self._budget = budget
        self._pending = raw.read(_READ_MAX)
        self._inflater = zlib.decompressobj(47) if self._pending[:2] == b"\x1f\x8b" else None

    def read(self, size: int = -1) -> bytes:
        size = _READ_MAX if size is None or size < 0 else min(size, _READ_MAX)
        if self._inflater is None:
            if self._pending:
                data, self._pending = self._pending[:size], self._pending[size:]
                return data
            return self._raw.read(size)
        while True:
            if self._inflater.eof:
                rest = self._inflater.unused_data + self._pending
                self._pending = b""
                if not rest:
                    rest = self._raw.read(_READ_MAX)
                if rest[:2] != b"\x1f\x8b":
                    return b""  # end of the gzip stream (trailing garbage is ignored, like zlib does)
                self._inflater = zlib.decompressobj(47)
                self._pending = rest
            if not self._pending:
                self._pending = self._raw.read(_READ_MAX)
                if not self._pending:
                    return b""  # truncated stream: the XML parser reports what is missing
            try:
                data = self._inflater.decompress(self._pending, size)
            except zlib.error as exc:
                raise ScenarioError(f"{self._name} is not a valid gzip file ({exc})") from None
            self._pending = self._inflater.unconsumed_tail
            self._budget.charge(len(data), self._name)
            if data:
                return data

    def close(self) -> None:
        self._raw.close()


def open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> IO[bytes]:
    try:
        return zf.open(info)
    except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError, EOFError) as exc:
        raise ScenarioError(f"entry {name!r} is corrupt ({exc})") from None


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    with open_member(zf, info, name) as raw:
        return b"".join(BoundedReader(raw, info.file_size, name).chunks())
