"""Which object-store failures mean "the store is away, try again" (the API's 503) and which stay errors.

The real thing (each backend pointed at a port that refuses connections) is in tests/storage/test_backends.py,
a whole stack losing its store in tests/integration/test_store_outage.py; here the answers a running store
would give: S3's through botocore's Stubber, GCS's and Azure's raised by fakes of their clients.
"""
from __future__ import annotations

import io

import boto3
import pytest
import requests
import urllib3
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from google.api_core import exceptions as gexc

from core.storage.azure import AzureBlobStore
from core.storage.base import ObjectNotFound, StoreUnavailable
from core.storage.gcs import GCSStore
from core.storage.s3 import S3Store

KEY = "results/acme/job-1/tripinfos.xml"


# -- S3 ---------------------------------------------------------------------------------------------
@pytest.fixture
def s3():
    client = boto3.session.Session().client(
        "s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",  # never contacted: the Stubber answers
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        stubber.add_response("head_bucket", {}, {"Bucket": "bucket"})  # the store's first call checks its bucket
        yield S3Store("bucket", client=client), stubber


@pytest.mark.parametrize("code,status", [
    ("SlowDown", 503),
    ("ServiceUnavailable", 503),
    ("InternalError", 500),
    ("BadGateway", 502),
    ("TooManyRequests", 429),
    ("RequestTimeout", 400),  # S3's own "the connection was idle too long", a transient answer
])
def test_s3_busy_answers_are_unavailable(s3, code, status):
    store, stubber = s3
    stubber.add_client_error("head_object", service_error_code=code, http_status_code=status)
    with pytest.raises(StoreUnavailable, match="the S3 result store cannot be reached") as raised:
        store.size(KEY)
    assert isinstance(raised.value.__cause__, ClientError)  # what the API logs


@pytest.mark.parametrize("code,status", [("AccessDenied", 403), ("InvalidArgument", 400), ("InvalidBucketName", 400)])
def test_s3_refusals_stay_errors(s3, code, status):
    store, stubber = s3
    stubber.add_client_error("head_object", service_error_code=code, http_status_code=status)
    with pytest.raises(ClientError) as raised:
        store.size(KEY)
    assert not isinstance(raised.value, StoreUnavailable)


def test_s3_missing_object_stays_not_found(s3):
    store, stubber = s3
    stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
    with pytest.raises(ObjectNotFound):
        store.size(KEY)


@pytest.mark.parametrize("status,unavailable", [(503, True), (403, False)])
def test_s3_upload_file_error_is_seen_through_its_wrapper(s3, tmp_path, status, unavailable):
    """upload_file wraps the ClientError it caught in S3UploadFailedError."""
    store, stubber = s3
    stubber.add_client_error("put_object", service_error_code="SlowDown" if unavailable else "AccessDenied",
                             http_status_code=status)
    src = tmp_path / "out.xml"
    src.write_bytes(b"<x/>")
    with pytest.raises(StoreUnavailable if unavailable else S3UploadFailedError):
        store.put_file(KEY, src)


class BrokenAfter(io.RawIOBase):
    """A response body whose connection breaks after ``data`` was read."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, amt=-1) -> bytes:
        if self.data:
            out, self.data = self.data, b""
            return out
        raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")


def test_s3_stream_broken_while_read_is_unavailable(s3):
    store, stubber = s3
    body = StreamingBody(BrokenAfter(b"first"), content_length=10)
    stubber.add_response("get_object", {"Body": body, "ContentLength": 10}, {"Bucket": "bucket", "Key": KEY})
    chunks = store.iter_bytes(KEY, chunk_size=5)
    assert next(chunks) == b"first"
    with pytest.raises(StoreUnavailable, match="S3"):
        next(chunks)


# -- GCS --------------------------------------------------------------------------------------------
class FakeGCSBlob:
    def __init__(self, size: int, reads) -> None:
        self.size = size
        self.generation = 1
        self.reads = list(reads)  # what each ranged download returns, or raises if an exception

    def download_as_bytes(self, **_):
        result = self.reads.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


class FakeGCSBucket:
    def __init__(self, blob_or_error) -> None:
        self.blob_or_error = blob_or_error

    def get_blob(self, key, **_):
        if isinstance(self.blob_or_error, Exception):
            raise self.blob_or_error
        return self.blob_or_error

    def blob(self, key, generation=None):
        return self.blob_or_error


class FakeGCSClient:
    def __init__(self, blob_or_error) -> None:
        self._bucket = FakeGCSBucket(blob_or_error)

    def bucket(self, name):
        return self._bucket

    def lookup_bucket(self, name, **_):
        return self._bucket


def gcs_store(blob_or_error) -> GCSStore:
    return GCSStore("bucket", client=FakeGCSClient(blob_or_error))


@pytest.mark.parametrize("error", [
    gexc.ServiceUnavailable("backend unavailable"),
    gexc.InternalServerError("backend error"),
    gexc.BadGateway("bad gateway"),
    gexc.TooManyRequests("rate limit exceeded"),
    gexc.RetryError("Timeout of 15.0s exceeded", requests.exceptions.ConnectionError("refused")),
    requests.exceptions.ConnectionError("Connection refused"),
    requests.exceptions.ReadTimeout("Read timed out"),
    ConnectionResetError("Connection reset by peer"),
])
def test_gcs_outages_are_unavailable(error):
    with pytest.raises(StoreUnavailable, match="the GCS result store cannot be reached") as raised:
        gcs_store(error).size(KEY)
    assert raised.value.__cause__ is error


@pytest.mark.parametrize("error", [gexc.Forbidden("no access"), gexc.BadRequest("invalid"), gexc.Unauthorized("who")])
def test_gcs_refusals_stay_errors(error):
    with pytest.raises(type(error)) as raised:
        gcs_store(error).size(KEY)
    assert raised.value is error


def test_gcs_missing_object_stays_not_found():
    with pytest.raises(ObjectNotFound):
        gcs_store(gexc.NotFound("no such object")).size(KEY)


def test_gcs_stream_broken_while_read_is_unavailable():
    blob = FakeGCSBlob(20, reads=[b"0123456789", requests.exceptions.ChunkedEncodingError("Connection broken")])
    chunks = gcs_store(blob).iter_bytes(KEY, chunk_size=10)
    assert next(chunks) == b"0123456789"
    with pytest.raises(StoreUnavailable, match="GCS"):
        next(chunks)


# -- Azure ------------------------------------------------------------------------------------------
class FakeAzureResponse:
    """What HttpResponseError reads of a response."""

    def __init__(self, status: int, reason: str) -> None:
        self.status_code = status
        self.reason = reason

    def text(self) -> str:
        return ""


def answered(status: int, reason: str, kind=HttpResponseError) -> HttpResponseError:
    return kind(message=reason, response=FakeAzureResponse(status, reason))


class FakeAzureDownloader:
    def __init__(self, chunks) -> None:
        self._chunks = chunks

    def chunks(self):
        for chunk in self._chunks:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk


class FakeAzureBlob:
    def __init__(self, error=None, chunks=()) -> None:
        self.error = error
        self._chunks = chunks

    def get_blob_properties(self):
        raise self.error

    def download_blob(self, offset=None):
        return FakeAzureDownloader(self._chunks)


class FakeAzureContainer:
    def __init__(self, blob) -> None:
        self.blob = blob

    def create_container(self):
        pass

    def get_blob_client(self, key):
        return self.blob


class FakeAzureService:
    credential = None

    def __init__(self, blob) -> None:
        self.container = FakeAzureContainer(blob)

    def get_container_client(self, name):
        return self.container


def azure_store(blob: FakeAzureBlob) -> AzureBlobStore:
    return AzureBlobStore("container", service_client=FakeAzureService(blob))


@pytest.mark.parametrize("error", [
    answered(503, "Server Busy"),
    answered(500, "Internal Server Error"),
    answered(429, "Too Many Requests"),
    ServiceRequestError("Connection refused"),
    ServiceResponseError("Read timed out"),
    IncompleteReadError("Connection broken"),
    # How the downloader reports a chunk it failed to read three times: no status, the cause inside.
    HttpResponseError(ServiceResponseError("reset"), error=ServiceResponseError("reset")),
])
def test_azure_outages_are_unavailable(error):
    with pytest.raises(StoreUnavailable, match="the Azure Blob result store cannot be reached") as raised:
        azure_store(FakeAzureBlob(error)).size(KEY)
    assert raised.value.__cause__ is error


@pytest.mark.parametrize("error", [
    answered(403, "Server failed to authenticate the request", ClientAuthenticationError),
    answered(400, "InvalidHeaderValue"),
    answered(409, "Conflict"),
])
def test_azure_refusals_stay_errors(error):
    with pytest.raises(HttpResponseError) as raised:
        azure_store(FakeAzureBlob(error)).size(KEY)
    assert raised.value is error


def test_azure_missing_object_stays_not_found():
    with pytest.raises(ObjectNotFound):
        azure_store(FakeAzureBlob(answered(404, "The specified blob does not exist.", ResourceNotFoundError))).size(KEY)


def test_azure_stream_broken_while_read_is_unavailable():
    blob = FakeAzureBlob(chunks=[b"0123456789", ServiceResponseError("Connection reset by peer")])
    chunks = azure_store(blob).iter_bytes(KEY, chunk_size=10)
    assert next(chunks) == b"0123456789"
    with pytest.raises(StoreUnavailable, match="Azure Blob"):
        next(chunks)


def _stub_deletion(stubber, *codes):
    keys = [f"results/acme/job-1/{n}.xml" for n in range(len(codes))]
    stubber.add_response("list_objects_v2", {"Contents": [{"Key": k, "Size": 1} for k in keys], "IsTruncated": False})
    stubber.add_response("delete_objects", {"Errors": [{"Key": k, "Code": c, "Message": c} for k, c in zip(keys, codes)]})


def test_s3_deletions_refused_as_busy_are_unavailable(s3):
    store, stubber = s3
    _stub_deletion(stubber, "SlowDown", "InternalError", "NoSuchKey")
    with pytest.raises(StoreUnavailable, match="S3"):
        store.delete_prefix("results/acme/job-1/")


def test_s3_a_deletion_refused_for_good_stays_an_error(s3):
    store, stubber = s3
    _stub_deletion(stubber, "SlowDown", "AccessDenied")
    with pytest.raises(ClientError, match="refused to delete 2 object") as raised:
        store.delete_prefix("results/acme/job-1/")
    assert not isinstance(raised.value, StoreUnavailable) and "AccessDenied" in str(raised.value)
