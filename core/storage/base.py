"""The object-store interface every storage backend implements.

Keys are ``/``-separated relative paths such as ``inputs/acme/<job>.zip`` or
``results/acme/<job>/tripinfos.xml``.  Backends never interpret them beyond
mapping them onto their own namespace (a directory, a bucket prefix, a
container).  Keys are validated by :func:`check_key` so that a crafted result
path can never escape the store's root.

A cloud store that cannot be reached, or answers that it cannot serve now,
surfaces as :class:`StoreUnavailable` (the API's 503).
"""
from __future__ import annotations

import abc
import functools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from core.unavailable import Unavailable

CHUNK_SIZE = 1024 * 1024


class ObjectNotFound(KeyError):
    """Raised when a key does not exist in the store."""


class StoreUnavailable(Unavailable):
    """The object store cannot be reached, or answers that it cannot serve now (5xx, 429, throttling).

    A refusal of the request itself (403, an invalid key) and :class:`ObjectNotFound` stay what they are.
    """


def unavailable_when(label: str, unreachable: Callable[[Exception], bool]):
    """A decorator for a cloud backend's public methods: an error that ``unreachable`` recognises becomes
    :class:`StoreUnavailable` naming the store (``label``: "S3", "GCS", "Azure Blob").

    An iterator the method returns is watched the same way while it is read, since a streamed download can
    lose its connection halfway.
    """
    message = f"the {label} result store cannot be reached; try again shortly"

    @contextmanager
    def translated() -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if unreachable(exc):
                raise StoreUnavailable(message) from exc
            raise

    def watched(chunks: Iterator[bytes]) -> Iterator[bytes]:
        with translated():
            yield from chunks

    def decorate(method):
        @functools.wraps(method)
        def call(*args, **kwargs):
            with translated():
                result = method(*args, **kwargs)
            return watched(result) if isinstance(result, Iterator) else result

        return call

    return decorate


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ValueError."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid storage key: {key!r}")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


class ObjectStore(abc.ABC):
    """Where the service keeps input archives, results and logs."""

    #: The value of ``storage_type`` reported by the results endpoint.
    kind: str = "abstract"

    _ready = False

    def _ensure_ready(self) -> None:
        """Create the bucket/container on first use.

        Creating is idempotent, so concurrent first calls may each check.  No lock is held over the call:
        while the store is away, callers queued behind one would each wait out the attempts of all before them.
        """
        if not self._ready:
            self._create_namespace()
            self._ready = True

    def _create_namespace(self) -> None:
        """Create the bucket or container if it is missing (backends that have one override this)."""

    @abc.abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Upload the local file at ``path`` under ``key`` (overwrites)."""

    @abc.abstractmethod
    def put_stream(self, key: str, stream: BinaryIO) -> None:
        """Upload everything readable from ``stream`` under ``key``."""

    @abc.abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = CHUNK_SIZE, start: int = 0) -> Iterator[bytes]:
        """Yield the object's bytes from offset ``start``; ObjectNotFound if absent."""

    @abc.abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes of the object from offset ``start``, in one ranged read: b"" at or past its
        end; ObjectNotFound if absent.  What reads a log from its end (``?tail=N``) and resumes a stream at an
        offset uses, in memory O(``length``) whatever the object's size."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; ObjectNotFound if absent."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key.

        A plain string prefix: ``results/t/j1`` also matches ``results/t/j10/...``,
        so end a directory-like prefix with ``/``.
        """

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix``; absent objects are fine.

        Same prefix rule as :meth:`list`: end a directory-like prefix with ``/``.
        """

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_bytes(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        import io

        self.put_stream(key, io.BytesIO(data))

    def download_file(self, key: str, dest: Path) -> None:
        """Write the object to ``dest`` (parents created)."""
        chunks = self.iter_bytes(key)  # raises ObjectNotFound before any file is created
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def presigned_url(self, key: str, expires_seconds: int = 3600) -> str | None:
        """A time-limited direct download URL, or None when the API must serve it."""
        return None
