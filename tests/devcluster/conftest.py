"""Fixtures for the dev-cluster tests (marker ``kube``): an API client and a namespace per test.

The cluster itself is the session fixture ``cluster`` of ``tests/conftest.py``,
shared by every Kubernetes tier.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

# The harness lives in <repo>/devcluster; make it importable under plain `pytest`.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from devcluster.procs import wait_for  # noqa: E402


def gone(read, *args) -> bool:
    """True once ``read(*args)`` answers 404 (the object is deleted); False while it still reads."""
    from kubernetes.client.rest import ApiException

    try:
        read(*args)
    except ApiException as exc:
        return exc.status == 404
    return False


@pytest.fixture(scope="session")
def api(cluster):
    return cluster.api_client()


@pytest.fixture
def namespace(api):
    """A fresh namespace whose default ServiceAccount exists (pods need it)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(f"ServiceAccount {name}/default",
             lambda: core.read_namespaced_service_account("default", name), 30)
    yield name
    core.delete_namespace(name)
