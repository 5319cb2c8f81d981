"""A whole running service (embedded PostgreSQL and Redis, API, workers, sweeper) per test session.

Settings are tightened so recovery paths run in seconds: the sweeper looks
every second for jobs idle for 3 s, and a dead worker's messages come back
after 3 s.  Tests that kill parts of the stack start their own with
``make_stack`` so the shared one stays healthy.
"""
from __future__ import annotations

import pytest

from devstack.stack import start_stack
from tests.integration.harness import Api

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

    def make(name: str = "stack", **env):
        stack = start_stack(
            tmp_path_factory.mktemp(name), env_overrides={**BASE_ENV, **env}, api_workers=1, persistent=False, fast_db=True
        )
        started.append(stack)
        return stack

    yield make
    for stack in started:
        stack.stop()


@pytest.fixture(scope="session")
def stack(make_stack):
    return make_stack("shared")


@pytest.fixture(scope="session")
def api(stack) -> Api:
    return Api(stack.url, stack.env["ADMIN_KEY"])


@pytest.fixture
def tenant(api) -> dict:
    return api.register()
