"""Fixtures for the storage contract tests.

Each emulator is a real server process, started at most once per session and
only when a selected test needs it (so ``-k local`` starts none).
"""
from __future__ import annotations

import uuid

import pytest

from core.settings import Settings
from core.storage.base import ObjectStore
from core.storage.factory import build_store
from devstack import emulators


@pytest.fixture(scope="session")
def s3_emulator():
    emu = emulators.start_s3()
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def gcs_emulator():
    emu = emulators.start_gcs()
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def azurite_emulator():
    emu = emulators.start_azurite()
    yield emu
    emu.stop()


def _unique_name() -> str:
    # Valid as an S3 bucket, a GCS bucket and an Azure container name.
    return f"t-{uuid.uuid4().hex[:20]}"


@pytest.fixture
def store_settings(request, tmp_path, monkeypatch) -> Settings:
    """Settings for the backend named by ``request.param``, in a fresh namespace."""
    backend = request.param
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "STORAGE_EMULATOR_HOST", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    name = _unique_name()
    if backend in ("local", "pvc"):
        return Settings(result_storage_type=backend, result_storage_path=tmp_path / "store", data_dir=tmp_path)
    if backend == "s3":
        emu = request.getfixturevalue("s3_emulator")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", emulators.S3_ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", emulators.S3_SECRET_KEY)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        return Settings(result_storage_type="s3", s3_bucket=name, s3_endpoint_url=emu.endpoint, s3_region="us-east-1")
    if backend == "gcs":
        emu = request.getfixturevalue("gcs_emulator")
        return Settings(result_storage_type="gcs", gcs_bucket=name, gcs_endpoint_url=emu.endpoint, gcs_project="test")
    if backend == "azure":
        emu = request.getfixturevalue("azurite_emulator")
        return Settings(
            result_storage_type="azure", azure_container=name, azure_connection_string=emu.connection_string
        )
    raise AssertionError(backend)


@pytest.fixture
def store(store_settings) -> ObjectStore:
    return build_store(store_settings)
