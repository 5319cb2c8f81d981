"""A whole running service (embedded PostgreSQL and Redis, API, workers, sweeper) per test session.

Stacks come from ``make_stack`` (``tests/conftest.py``).  Tests that kill
parts of the stack start their own so the shared one stays healthy.
"""
from __future__ import annotations

import pytest

from tests.integration.harness import Api

@pytest.fixture(scope="session")
def stack(make_stack):
    return make_stack("shared")


@pytest.fixture(scope="session")
def api(stack) -> Api:
    return Api(stack.url, stack.env["ADMIN_KEY"])


@pytest.fixture
def tenant(api) -> dict:
    return api.register()
