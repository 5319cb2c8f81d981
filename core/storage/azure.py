"""Azure Blob Storage (or Azurite) as the object store.

Configured by a connection string.  The container is created on first use if
it does not exist.  ``presigned_url`` returns a read-only blob SAS URL when
the connection string carries an ``AccountKey``; with a SAS-token or
credential-less connection string nothing can sign and it returns None.

When the account cannot be reached or cannot serve now (refused, reset, timed
out, 5xx, 429) a call raises :class:`~core.storage.base.StoreUnavailable`.
Each request is tried at most 3 times, 2–4 s then 4–6 s apart (the SDK's
default: 4 times, about 18, 24 and 42 s apart), with 5 s to connect and 20 s
per read; so a refused port fails in under 10 s, an address that never
answers in about 25 s, and a server that accepts and then says nothing in
about 70 s.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from azure.core.exceptions import (
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, ExponentialRetry, generate_blob_sas

from core.storage.base import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    check_key,
    unavailable_when,
)

_MAX_CONCURRENCY = 4


def _unreachable(exc: Exception) -> bool:
    """The account cannot serve now: no connection (refused, reset, timed out, a body cut short), or an answer
    that says so (5xx, 429).  Any other answer (403, 404, ...) refuses this request."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
        return True
    if isinstance(exc, HttpResponseError):
        if exc.status_code is None:  # how the downloader reports a chunk it failed to read 3 times
            inner = exc.inner_exception
            return isinstance(inner, Exception) and inner is not exc and _unreachable(inner)
        return exc.status_code >= 500 or exc.status_code == 429
    return False


_reachable = unavailable_when("Azure Blob", _unreachable)


def _rechunk(chunks: Iterator[bytes], chunk_size: int) -> Iterator[bytes]:
    """Re-cut an iterator of byte strings into pieces of ``chunk_size``."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= chunk_size:
            yield bytes(buf[:chunk_size])
            del buf[:chunk_size]
    if buf:
        yield bytes(buf)


class AzureBlobStore(ObjectStore):
    kind = "azure"

    def __init__(self, container: str, *, connection_string: str = "", service_client: Any = None) -> None:
        if service_client is None:
            if not connection_string:
                raise ValueError("azure storage needs AZURE_CONNECTION_STRING")
            service_client = BlobServiceClient.from_connection_string(
                connection_string,
                # A download holds several times its current range while it reads it (the SDK joins the
                # response's pieces, and keeps what it has not yet handed out): ranges of one chunk keep a
                # streamed download or log in the API's memory as small as the other backends'.
                max_single_get_size=CHUNK_SIZE,
                max_chunk_get_size=CHUNK_SIZE,
                connection_timeout=5,
                read_timeout=20,
                retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2,
                                              random_jitter_range=1),
            )
        self.service = service_client
        self.container_name = container
        self.container = self.service.get_container_client(container)

    # -- container ------------------------------------------------------------
    def _create_namespace(self) -> None:
        try:
            self.container.create_container()
        except ResourceExistsError:
            pass

    def _blob(self, key: str):
        check_key(key)
        self._ensure_ready()
        return self.container.get_blob_client(key)

    # -- writes ---------------------------------------------------------------
    @_reachable
    def put_file(self, key: str, path: Path) -> None:
        blob = self._blob(key)
        path = Path(path)
        with open(path, "rb") as fh:
            blob.upload_blob(fh, length=path.stat().st_size, overwrite=True, max_concurrency=_MAX_CONCURRENCY)

    @_reachable
    def put_stream(self, key: str, stream: BinaryIO) -> None:
        blob = self._blob(key)
        blob.upload_blob(stream, overwrite=True, max_concurrency=_MAX_CONCURRENCY)

    # -- reads ----------------------------------------------------------------
    @_reachable
    def iter_bytes(self, key: str, chunk_size: int = CHUNK_SIZE, start: int = 0) -> Iterator[bytes]:
        blob = self._blob(key)
        try:
            downloader = blob.download_blob(offset=start if start > 0 else None)
        except ResourceNotFoundError:
            raise ObjectNotFound(key) from None
        except HttpResponseError as exc:
            if exc.status_code == 416:
                # ``start`` is at or past the end; 416 is only returned for an existing blob.
                return iter(())
            raise
        return _rechunk(downloader.chunks(), chunk_size)

    @_reachable
    def read_range(self, key: str, start: int, length: int) -> bytes:
        blob = self._blob(key)
        start = max(start, 0)
        try:
            if length <= 0:
                blob.get_blob_properties()  # ResourceNotFoundError all the same
                return b""
            return blob.download_blob(offset=start, length=length).readall()
        except ResourceNotFoundError:
            raise ObjectNotFound(key) from None
        except HttpResponseError as exc:
            if exc.status_code == 416:
                return b""  # ``start`` is at or past the end; 416 is only returned for an existing blob
            raise

    @_reachable
    def size(self, key: str) -> int:
        blob = self._blob(key)
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            raise ObjectNotFound(key) from None
        return int(props.size)

    @_reachable
    def list(self, prefix: str) -> list[ObjectInfo]:
        self._ensure_ready()
        out = [
            ObjectInfo(key=item.name, size=int(item.size))
            for item in self.container.list_blobs(name_starts_with=prefix or None)
        ]
        return sorted(out, key=lambda o: o.key)

    @_reachable
    def delete_prefix(self, prefix: str) -> None:
        for info in self.list(prefix):
            try:
                self.container.delete_blob(info.key, delete_snapshots="include")
            except ResourceNotFoundError:
                pass

    @_reachable
    def presigned_url(self, key: str, expires_seconds: int = 3600) -> str | None:
        blob = self._blob(key)
        credential = self.service.credential
        account_key = getattr(credential, "account_key", None)
        if not account_key:
            return None
        sas = generate_blob_sas(
            account_name=blob.account_name,
            container_name=self.container_name,
            blob_name=key,
            account_key=account_key,
            permission=BlobSasPermissions(read=True),
            expiry=_dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=int(expires_seconds)),
            start=_dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=5),
        )
        return f"{blob.url}?{sas}"
