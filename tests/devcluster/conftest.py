"""Session fixtures for the dev-cluster tests (marker ``kube``).

One real control plane (etcd, kube-apiserver, controller-manager, scheduler)
plus the process-based node agent is started per test session in a temp dir
and stopped at the end; each test gets its own namespace.  The tests are
skipped when the binaries have not been built yet (``devcluster/build.sh``)
or when not running as root (the node agent needs mount namespaces) — except
under ``make test``, which builds them first and makes a missing piece fail.
"""
from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

# The harness lives in <repo>/devcluster; make it importable under plain `pytest`.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from devcluster.cluster import kube_bin_dir, temp_cluster  # noqa: E402
from devcluster.procs import wait_for  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "kube: needs the local Kubernetes dev cluster (devcluster/)")


@pytest.fixture(scope="session")
def cluster():
    missing = [b for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
               if not (kube_bin_dir() / b).exists()]
    # `make test` sets SUMO_K8_REQUIRE_KUBE=1 after building everything: there a missing piece fails.
    unavailable = pytest.fail if os.environ.get("SUMO_K8_REQUIRE_KUBE") == "1" else pytest.skip
    if missing:
        unavailable(f"{', '.join(missing)} not in {kube_bin_dir()}: run devcluster/build.sh")
    if not (os.environ.get("ETCD_BIN") or shutil.which("etcd")):
        unavailable("etcd not installed (apt-get install etcd-server)")
    if os.geteuid() != 0:
        unavailable("the node agent needs root for mount namespaces")
    cl = temp_cluster()
    cl.start()
    try:
        yield cl
    finally:
        cl.stop()
        if os.environ.get("DEVCLUSTER_KEEP") != "1":
            shutil.rmtree(cl.workdir, ignore_errors=True)


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
