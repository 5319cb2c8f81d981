"""A directory-backed store: the embedded default, and PVC storage on clusters.

Writes go to a temporary sibling and are renamed into place, so a reader
never sees a half-written object.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator

from core.storage.base import CHUNK_SIZE, ObjectInfo, ObjectNotFound, ObjectStore, check_key


class LocalStore(ObjectStore):
    kind = "local"

    def __init__(self, root: Path, kind: str = "local") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.kind = kind

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, writer) -> None:
        dest = self._path(key)
        tmp = dest.parent / f".tmp-{uuid.uuid4().hex}"  # unique: no mkstemp retry loop on the submission path
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # the first object under this prefix
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(fd, "wb") as fh:
                writer(fh)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> None:
        def copy(fh):
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh, CHUNK_SIZE)

        self._write(key, copy)

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        self._write(key, lambda fh: shutil.copyfileobj(stream, fh, CHUNK_SIZE))

    def iter_bytes(self, key: str, chunk_size: int = CHUNK_SIZE, start: int = 0) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fh = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

        def gen():
            with fh:
                fh.seek(start)
                while chunk := fh.read(chunk_size):
                    yield chunk

        return gen()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as fh:
                return os.pread(fh.fileno(), max(length, 0), max(start, 0))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        return path.stat().st_size

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Plain string-prefix semantics, like the cloud stores: ``a/j1`` also matches ``a/j10/x``."""
        directory = self._prefix_dir(prefix)
        if not directory.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(directory):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(ObjectInfo(key=key, size=full.stat().st_size))
        return sorted(out, key=lambda o: o.key)

    def delete_prefix(self, prefix: str) -> None:
        if not prefix:
            raise ValueError("refusing to delete the whole store (empty prefix)")
        for info in self.list(prefix):
            (self.root / info.key).unlink(missing_ok=True)
        directory = self._prefix_dir(prefix)
        # Drop directories emptied by the deletion, deepest first, never the root itself.
        if directory != self.root and directory.is_dir():
            for dirpath, _dirs, _files in sorted(os.walk(directory), key=lambda w: -len(w[0])):
                try:
                    Path(dirpath).rmdir()
                except OSError:
                    pass

    def _prefix_dir(self, prefix: str) -> Path:
        """The deepest directory that can hold keys starting with ``prefix`` (validated)."""
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if not head:
            return self.root
        return self._path(head)
