"""The embedded stack's start: a start that fails halfway stops whatever it had started."""
from __future__ import annotations

import pytest

from devstack import stack as devstack
from tests.conftest import BASE_ENV

pytestmark = pytest.mark.integration


def test_failed_start_leaves_no_process_behind(tmp_path, monkeypatch):
    started: list[devstack.Stack] = []

    def api_never_ready(self, workers):  # the workers, simulations and sweeper are up by now
        started.append(self)
        raise TimeoutError("the API never got ready")

    monkeypatch.setattr(devstack.Stack, "start_api", api_never_ready)
    with pytest.raises(TimeoutError):
        devstack.start_stack(tmp_path, env_overrides=BASE_ENV, api_workers=1, persistent=False, fast_db=True)
    (stack,) = started
    assert {"workers", "simulations", "sweeper"} <= set(stack.procs)
    running = {name for name, proc in stack.procs.items() if proc.process and proc.process.poll() is None}
    assert running == set()
    assert all(service.process.poll() is not None for service in stack.services)


@pytest.mark.parametrize("entrypoint", [["-m", "uvicorn", "api.app:app", "--port", "0"], ["-m", "workers.sweeper"],
                                        ["-m", "dramatiq", "workers.actors", "--processes", "1", "--threads", "1"]])
def test_a_placeholder_admin_key_keeps_every_process_from_starting(entrypoint, tmp_path):
    """The example deployment once shipped ADMIN_KEY: CHANGE-ME; a service started with it refuses to."""
    import os
    import subprocess
    import sys

    env = {**os.environ, **BASE_ENV, "ADMIN_KEY": "CHANGE-ME", "DATA_DIR": str(tmp_path),
           "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run([sys.executable, *entrypoint], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "ADMIN_KEY is the placeholder 'CHANGE-ME'" in done.stderr + done.stdout
