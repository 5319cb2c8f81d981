"""Google Cloud Storage as the object store.

Without an endpoint the client uses Application Default Credentials (the
pod's workload identity, ``GOOGLE_APPLICATION_CREDENTIALS``...).  With
``endpoint_url`` (an emulator such as fake-gcs-server) it talks to that
server with anonymous credentials, since emulators check none.

``presigned_url`` returns a V4 signed URL when the credentials can sign
(a service-account key, or a token that may call ``signBlob``), and None
otherwise — in particular against an emulator with anonymous credentials,
where nothing can sign; the API then streams the object itself.

The bucket is created on first use if it does not exist.

When GCS cannot be reached or cannot serve now (refused, reset, timed out,
5xx, 429) a call raises :class:`~core.storage.base.StoreUnavailable`.  Each
request is retried with the library's own backoff (up to 1 s, doubling) for
at most 15 s instead of its default 120 s, with 5 s to connect and 20 s per
read; so a refused port fails within 15 s, an address that never answers in
15–20 s, and a server that accepts and then says nothing in 20–35 s.
"""
from __future__ import annotations

import datetime as _dt
import http.client
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import requests
import urllib3
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from core.storage.base import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    check_key,
    unavailable_when,
)

#: Bytes fetched per ranged GET while streaming; yielded in ``chunk_size`` pieces.
_FETCH_SIZE = 8 * CHUNK_SIZE
#: Streams are uploaded in resumable sessions of chunks this large (a multiple of 256 KiB).
_UPLOAD_CHUNK = 8 * CHUNK_SIZE
#: Passed to every call that reaches GCS: the library's retry for transient errors, within 15 s in all,
#: and (connect, read) timeouts per request.
_BOUNDED = {"retry": DEFAULT_RETRY.with_timeout(15.0), "timeout": (5.0, 20.0)}

_TRANSPORT_ERRORS = (
    ConnectionError,  # refused, reset
    TimeoutError,
    http.client.HTTPException,  # a connection closed mid-answer
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    auth_exceptions.TransportError,  # the token could not be fetched
)


def _unreachable(exc: Exception) -> bool:
    """GCS cannot serve now: no connection, an answer that says so (5xx, 429), or the retry's 15 s spent on
    such errors.  Any other answer (403, 404, ...) refuses this request."""
    if isinstance(exc, gexc.RetryError):  # only raised when the deadline passes while retrying transient errors
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        return exc.code is not None and (exc.code >= 500 or exc.code == 429)
    return isinstance(exc, _TRANSPORT_ERRORS)


_reachable = unavailable_when("GCS", _unreachable)


def _at_start_of_seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable()) and stream.tell() == 0
    except (AttributeError, OSError, ValueError):
        return False


class GCSStore(ObjectStore):
    kind = "gcs"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        project: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket_name = bucket
        self.endpoint_url = (endpoint_url or "").rstrip("/") or None
        self._anonymous = False
        if client is None:
            if self.endpoint_url:
                client = storage.Client(
                    project=project or "emulator",
                    credentials=AnonymousCredentials(),
                    client_options={"api_endpoint": self.endpoint_url},
                )
                self._anonymous = True
            else:
                client = storage.Client(project=project or None)
        self.client = client
        self._bucket = self.client.bucket(bucket)

    # -- bucket -------------------------------------------------------------
    def _create_namespace(self) -> None:
        if self.client.lookup_bucket(self.bucket_name, **_BOUNDED) is None:
            try:
                self.client.create_bucket(self.bucket_name, **_BOUNDED)
            except gexc.Conflict:
                pass  # created concurrently by another process

    def _blob(self, key: str) -> storage.Blob:
        check_key(key)
        self._ensure_ready()
        return self._bucket.blob(key)

    # -- writes ---------------------------------------------------------------
    @_reachable
    def put_file(self, key: str, path: Path) -> None:
        blob = self._blob(key)
        blob.chunk_size = _UPLOAD_CHUNK
        blob.upload_from_filename(str(path), content_type="application/octet-stream", **_BOUNDED)

    @_reachable
    def put_stream(self, key: str, stream: BinaryIO) -> None:
        blob = self._blob(key)
        # With a chunk size and no known length the upload is a resumable
        # session fed chunk by chunk, so the stream is never held in memory.
        blob.chunk_size = _UPLOAD_CHUNK
        if _at_start_of_seekable(stream):
            blob.upload_from_file(stream, content_type="application/octet-stream", rewind=False, **_BOUNDED)
            return
        # The client needs ``tell() == 0`` and seeks back to retry a chunk, so
        # a one-way stream (a request body) is spooled to a temporary file first.
        with tempfile.TemporaryFile(prefix="sumo-k8-gcs-") as spool:
            shutil.copyfileobj(stream, spool, CHUNK_SIZE)
            size = spool.tell()
            spool.seek(0)
            blob.upload_from_file(spool, size=size, content_type="application/octet-stream", rewind=False,
                                  **_BOUNDED)

    # -- reads ----------------------------------------------------------------
    @_reachable
    def iter_bytes(self, key: str, chunk_size: int = CHUNK_SIZE, start: int = 0) -> Iterator[bytes]:
        blob = self._existing_blob(key)
        total = int(blob.size or 0)
        generation = blob.generation
        fetch = max(chunk_size, _FETCH_SIZE)

        def gen() -> Iterator[bytes]:
            pinned = self._bucket.blob(key, generation=generation)
            offset = max(start, 0)
            while offset < total:
                end = min(offset + fetch, total) - 1
                try:
                    data = pinned.download_as_bytes(start=offset, end=end, raw_download=True, checksum=None,
                                                    **_BOUNDED)
                except gexc.NotFound:
                    raise ObjectNotFound(key) from None
                if not data:
                    raise OSError(f"GCS returned no bytes for {key!r} at offset {offset}")
                offset += len(data)
                for i in range(0, len(data), chunk_size):
                    yield data[i : i + chunk_size]

        return gen()

    @_reachable
    def read_range(self, key: str, start: int, length: int) -> bytes:
        blob = self._blob(key)
        start = max(start, 0)
        if length <= 0:
            self._existing_blob(key)  # ObjectNotFound all the same
            return b""
        try:
            return blob.download_as_bytes(start=start, end=start + length - 1, raw_download=True, checksum=None,
                                          **_BOUNDED)
        except gexc.NotFound:
            raise ObjectNotFound(key) from None
        except gexc.RequestRangeNotSatisfiable:
            return b""  # ``start`` is at or past the end of an existing object

    @_reachable
    def size(self, key: str) -> int:
        return int(self._existing_blob(key).size or 0)

    def _existing_blob(self, key: str):
        """The blob's metadata; ObjectNotFound when it does not exist."""
        check_key(key)
        self._ensure_ready()
        try:
            blob = self._bucket.get_blob(key, **_BOUNDED)
        except gexc.NotFound:
            blob = None
        if blob is None:
            raise ObjectNotFound(key)
        return blob

    @_reachable
    def list(self, prefix: str) -> list[ObjectInfo]:
        self._ensure_ready()
        out = [
            ObjectInfo(key=blob.name, size=int(blob.size or 0))
            for blob in self.client.list_blobs(self.bucket_name, prefix=prefix or None, **_BOUNDED)
        ]
        return sorted(out, key=lambda o: o.key)

    @_reachable
    def delete_prefix(self, prefix: str) -> None:
        for info in self.list(prefix):
            try:
                self._bucket.blob(info.key).delete(**_BOUNDED)
            except gexc.NotFound:
                pass

    @_reachable
    def presigned_url(self, key: str, expires_seconds: int = 3600) -> str | None:
        blob = self._blob(key)
        if self._anonymous:
            return None
        kwargs: dict[str, Any] = {}
        if self.endpoint_url:
            kwargs["api_access_endpoint"] = self.endpoint_url
        try:
            return blob.generate_signed_url(
                version="v4",
                expiration=_dt.timedelta(seconds=int(expires_seconds)),
                method="GET",
                **kwargs,
            )
        except (AttributeError, TypeError, ValueError, NotImplementedError):
            # Credentials that cannot sign (e.g. plain user credentials).
            return None
