"""Build the object store that ``RESULT_STORAGE_TYPE`` names.

Cloud SDKs are imported inside their branch only, so a process configured
for local storage never pays for (or needs) boto3, google-cloud-storage or
azure-storage-blob.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from core.storage.base import ObjectStore
from core.storage.local import LocalStore

if TYPE_CHECKING:
    from core.settings import Settings


def build_store(settings: Settings) -> ObjectStore:
    kind = settings.result_storage_type
    if kind == "local":
        return LocalStore(settings.storage_root)
    if kind == "pvc":
        return LocalStore(settings.storage_root, kind="pvc")
    if kind == "s3":
        from core.storage.s3 import S3Store

        return S3Store(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
        )
    if kind == "gcs":
        from core.storage.gcs import GCSStore

        return GCSStore(
            settings.gcs_bucket,
            endpoint_url=settings.gcs_endpoint_url or None,
            project=settings.gcs_project or None,
        )
    if kind == "azure":
        from core.storage.azure import AzureBlobStore

        return AzureBlobStore(settings.azure_container, connection_string=settings.azure_connection_string)
    raise ValueError(f"unknown result_storage_type: {kind!r}")
