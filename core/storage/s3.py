"""Amazon S3 (or any S3-compatible endpoint: MinIO, moto) as the object store.

Credentials come from boto3's usual chain (environment, shared config, the
pod's IAM role) unless given explicitly.  ``endpoint_url`` points the client
at a non-AWS server; path-style addressing is then used so that bucket names
need no DNS.  The bucket is created on first use if it does not exist.

When S3 cannot be reached or cannot serve now (refused, reset, timed out, 5xx,
429, ``SlowDown``) a call raises :class:`~core.storage.base.StoreUnavailable`.
Each request is tried at most 3 times (botocore's standard mode: a random
backoff of up to 50 ms × 2ⁿ, 1 s × 2ⁿ when throttled), with 5 s to connect
and 20 s per read (60 s each by default); so a refused port fails in under a
second, an address that never answers in about 15 s, and a server that
accepts and then says nothing in about 60 s.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from core.storage.base import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    check_key,
    unavailable_when,
)

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_BUSY_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
_DELETE_BATCH = 1000  # the most keys one DeleteObjects request accepts


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unreachable(exc: Exception) -> bool:
    """S3 cannot serve now: no connection (refused, reset, closed, timed out, a body cut short), or an answer
    that says so (5xx, 429, a busy code).  Any other answer (403, 404, ...) refuses this request."""
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, Exception):
        exc = exc.__context__  # upload_file's wrapper around the ClientError it caught
    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or status == 429 or _error_code(exc) in _BUSY_CODES
    return False


_reachable = unavailable_when("S3", _unreachable)


class S3Store(ObjectStore):
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.region = region or "us-east-1"
        if client is None:
            config = Config(
                signature_version="s3v4",
                retries={"total_max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=20,
                # An explicit endpoint (MinIO, an emulator) is rarely reachable
                # under virtual-host names such as <bucket>.127.0.0.1.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
            )
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url or None,
                region_name=self.region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        self.client = client
        self._transfer = TransferConfig(multipart_chunksize=8 * CHUNK_SIZE, max_concurrency=4)

    # -- bucket -------------------------------------------------------------
    def _create_namespace(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES:
                raise
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self.client.create_bucket(**kwargs)
            except ClientError as create_exc:
                if _error_code(create_exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    # -- writes ---------------------------------------------------------------
    @_reachable
    def put_file(self, key: str, path: Path) -> None:
        check_key(key)
        self._ensure_ready()
        self.client.upload_file(str(path), self.bucket, key, Config=self._transfer)

    @_reachable
    def put_stream(self, key: str, stream: BinaryIO) -> None:
        check_key(key)
        self._ensure_ready()
        self.client.upload_fileobj(stream, self.bucket, key, Config=self._transfer)

    # -- reads ----------------------------------------------------------------
    @_reachable
    def iter_bytes(self, key: str, chunk_size: int = CHUNK_SIZE, start: int = 0) -> Iterator[bytes]:
        check_key(key)
        self._ensure_ready()
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start > 0:
            kwargs["Range"] = f"bytes={start}-"
        try:
            response = self.client.get_object(**kwargs)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from None
            if code == "InvalidRange":
                # ``start`` is at or past the end of an existing object.
                return iter(())
            raise
        body = response["Body"]

        def gen() -> Iterator[bytes]:
            try:
                for chunk in body.iter_chunks(chunk_size):
                    if chunk:
                        yield chunk
            finally:
                body.close()

        return gen()

    @_reachable
    def read_range(self, key: str, start: int, length: int) -> bytes:
        check_key(key)
        self._ensure_ready()
        if length <= 0:
            self.size(key)  # ObjectNotFound all the same
            return b""
        start = max(start, 0)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from None
            if code == "InvalidRange":
                return b""  # ``start`` is at or past the end of an existing object
            raise
        body = response["Body"]
        try:
            return body.read()
        finally:
            body.close()

    @_reachable
    def size(self, key: str) -> int:
        check_key(key)
        self._ensure_ready()
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from None
            raise
        return int(response["ContentLength"])

    @_reachable
    def list(self, prefix: str) -> list[ObjectInfo]:
        self._ensure_ready()
        out = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out.append(ObjectInfo(key=item["Key"], size=int(item["Size"])))
        return sorted(out, key=lambda o: o.key)

    @_reachable
    def delete_prefix(self, prefix: str) -> None:
        keys = [info.key for info in self.list(prefix)]
        for i in range(0, len(keys), _DELETE_BATCH):
            batch = keys[i : i + _DELETE_BATCH]
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = [e for e in response.get("Errors", []) if e.get("Code") not in _NOT_FOUND_CODES]
            if errors:
                # One error for the batch, with a refusal's code if there is one (retrying will not help), else
                # the busy code, which the store's classification turns into StoreUnavailable.
                worst = next((e for e in errors if e.get("Code") not in _BUSY_CODES), errors[0])
                raise ClientError({"Error": {"Code": worst.get("Code", ""), "Message": (
                    f"S3 refused to delete {len(errors)} object(s), e.g. {worst}")}}, "DeleteObjects")

    @_reachable
    def presigned_url(self, key: str, expires_seconds: int = 3600) -> str | None:
        check_key(key)
        self._ensure_ready()
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=int(expires_seconds),
        )
