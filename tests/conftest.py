"""Fixtures shared by every test tier.

``make_stack``: starts the whole service (embedded PostgreSQL and Redis, API,
workers, sweeper) with settings tightened so recovery paths run in seconds:
the sweeper looks every second for jobs idle for 3 s, and a dead worker's
messages come back after 3 s.

``cluster``: one real control plane (etcd, kube-apiserver, controller-manager,
scheduler) plus the process-based node agent, started once per session for
all Kubernetes tiers (``tests/devcluster``, ``tests/kube``).  Those tests are
skipped when the binaries have not been built yet (``devcluster/build.sh``)
or when not running as root (the node agent needs mount namespaces) — except
under ``make test``, which builds them first and makes a missing piece fail.
"""
from __future__ import annotations

import os
import shutil

import pytest

from devcluster.cluster import kube_bin_dir, temp_cluster
from devstack.stack import start_stack

BASE_ENV = {
    "ADMIN_KEY": "test-admin-key",
    "EXECUTOR": "local",
    "LOCAL_MAX_PARALLEL": "2",
    "SWEEP_INTERVAL_SECONDS": "1",
    "SWEEP_GRACE_SECONDS": "3",
    "REDIS_HEARTBEAT_TIMEOUT_MS": "3000",
    "MAX_FILE_SIZE_MB": "5",
    "MAX_UNCOMPRESSED_MB": "64",
    "LOG_LEVEL": "INFO",
    "PORT": "0",
    "DATABASE_URL": "",
    "REDIS_URL": "",
}


@pytest.fixture(scope="session")
def make_stack(tmp_path_factory):
    started = []

    def make(name: str = "stack", *, durable: bool = False, **env):
        """A stack; its PostgreSQL skips fsync and synchronous commits unless ``durable`` (a test that crashes
        PostgreSQL needs what was committed to survive, as it does in production)."""
        stack = start_stack(
            tmp_path_factory.mktemp(name), env_overrides={**BASE_ENV, **env}, api_workers=1, persistent=False,
            fast_db=not durable,
        )
        started.append(stack)
        return stack

    yield make
    for stack in started:
        stack.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "kube: needs the local Kubernetes dev cluster (devcluster/)")


def unavailable(why: str):
    """Skip for a missing tool (kube binaries, etcd, bombardier), except under ``make test``
    (SUMO_K8_REQUIRE_KUBE=1), which installs every tool first: there a missing piece fails."""
    (pytest.fail if os.environ.get("SUMO_K8_REQUIRE_KUBE") == "1" else pytest.skip)(why)


def require_kube() -> None:
    """What a dev cluster needs on this machine: the built binaries, etcd, root (for the node agent)."""
    missing = [b for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
               if not (kube_bin_dir() / b).exists()]
    if missing:
        unavailable(f"{', '.join(missing)} not in {kube_bin_dir()}: run devcluster/build.sh")
    if not (os.environ.get("ETCD_BIN") or shutil.which("etcd")):
        unavailable("etcd not installed (apt-get install etcd-server)")
    if os.geteuid() != 0:
        unavailable("the node agent needs root for mount namespaces")


@pytest.fixture(scope="session")
def cluster():
    require_kube()
    cl = temp_cluster()
    cl.start()
    try:
        yield cl
    finally:
        cl.stop()
        if os.environ.get("DEVCLUSTER_KEEP") != "1":
            shutil.rmtree(cl.workdir, ignore_errors=True)
