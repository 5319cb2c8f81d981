"""``python -m workers.watcher`` as a real process publishing to Redis (marker ``kube``).

It is SIGKILLed (keeping its Lease) while nothing is watched; the next process
takes the Lease over once it expires and reports what happened meanwhile.
The published ``apply_status`` messages are read straight from the Redis queue.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from core.domain.states import JobStatus
from devcluster.procs import wait_for
from tests.kube.conftest import REPO, square_variant

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]


@pytest.fixture
def redis(tmp_path):
    from devstack.services import start_redis

    service = start_redis(tmp_path / "redis", persistent=False)
    yield service
    service.stop()


def statuses(redis_url: str, job_id: str) -> list[str]:
    import redis as redis_lib

    r = redis_lib.Redis.from_url(redis_url)
    found = []
    for key in r.keys("*status*msgs"):
        for raw in r.hvals(key):  # a hash: no order, so sort by the time the message was sent
            msg = json.loads(raw)
            if msg.get("actor_name") == "apply_status" and msg["args"][0]["job_id"] == job_id:
                found.append((msg["message_timestamp"], msg["args"][0]["status"]))
    return [status for _, status in sorted(found)]


def start_watcher(cluster, redis_url: str, log_path) -> subprocess.Popen:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "REDIS_URL": redis_url,
           "CONTROLLER_NAMESPACE": "sumo-k8-system", "WATCH_RESYNC_SECONDS": "5", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "workers.watcher"], cwd=REPO, env=env,
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def test_watcher_process_publishes_and_survives_sigkill(executor, submit, cluster, redis, tmp_path):
    log_path = tmp_path / "watcher.log"
    first = start_watcher(cluster, redis.url, log_path)
    second = None
    try:
        spec = submit(square_variant(tmp_path, "a.zip"))
        executor.start(spec)
        # Order matters, repeats do not: a resync may publish the final status again (the status actor ignores it).
        def running_then_succeeded():
            seen = statuses(redis.url, spec.job_id)
            return "SUCCEEDED" in seen and "RUNNING" in seen[: seen.index("SUCCEEDED")]

        wait_for("RUNNING then SUCCEEDED in Redis", running_then_succeeded, 180)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)

        spec2 = submit(square_variant(tmp_path, "b.zip"))
        executor.start(spec2)
        second = start_watcher(cluster, redis.url, log_path)
        found = wait_for("the new watcher reports the job run while none was active",
                         lambda: JobStatus.SUCCEEDED.value in statuses(redis.url, spec2.job_id)
                         and statuses(redis.url, spec2.job_id), 180)
        assert found.index("RUNNING") < found.index("SUCCEEDED"), found
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    assert second.returncode == 0, log_path.read_text()[-3000:]
