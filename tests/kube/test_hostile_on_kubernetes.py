"""The hostile-scenario corpus (tests/hostile/scenarios.py) through the service with EXECUTOR=kubernetes.

Each case is refused with a 4xx naming its option, or runs and is contained, checked on the host: nothing
named after the corpus's token outside the cluster's volumes and the result store, no secret of the service
in the job's status, log or results. The run caps (MAX_OUTPUT_MB, MAX_LOG_MB) are the simulation pod's own.

The memory bomb meets its pod's memory limit: the node agent runs each container in a memory cgroup of its
limit (devcluster/memcg.py), and the job FAILS saying OOMKilled and naming memory_gi.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from core.waits import free_port
from tests.hostile.fixtures import assert_nothing_came_back, corpus_fixtures
from tests.hostile.scenarios import describe, leaked_paths, names_an_option, secrets_in
from tests.integration.harness import Api

pytestmark = pytest.mark.kube

TOKEN, listener, cases = corpus_fixtures("hk")
NAMES = describe()[0]


@pytest.fixture(scope="module")
def hostile_kstack(make_stack, cluster):
    port = free_port()  # the collector pods upload to it (COLLECT_URL)
    stack = make_stack("kube-hostile", EXECUTOR="kubernetes", KUBECONFIG=str(cluster.kubeconfig),
                       JOB_TTL_SECONDS="5", RESULT_STORAGE_SIZE_GI="1", WATCH_RESYNC_SECONDS="5",
                       CONTROLLER_NAMESPACE="sumo-k8-hostile-test", PORT=str(port),
                       COLLECT_URL=f"http://127.0.0.1:{port}", **describe()[1])
    yield stack
    stack.stop()


@pytest.mark.parametrize("name", NAMES)
def test_a_hostile_scenario_on_kubernetes(name, hostile_kstack, cases, listener, cluster):
    stack, case = hostile_kstack, cases[name]
    api = Api(stack.url, stack.env["ADMIN_KEY"])
    tenant = api.register()
    secrets = [stack.env["ADMIN_KEY"], stack.env["DATABASE_URL"], stack.env["REDIS_URL"]]
    r = api.submit(tenant, case.archive, config_file=case.config_file, memory=case.memory_gi)
    if 400 <= r.status_code < 500:
        assert names_an_option(r.json()["detail"], case.options), r.text
        assert secrets_in([r.text], secrets) == []
        return
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    job = api.wait_status(tenant, job_id, timeout=case.timeout + 120)
    if case.must_fail:
        assert job["status"] == "FAILED" and case.must_fail.split(" exceeded")[0] in job["error"], job
    results = api.wait_results(tenant, job_id, timeout=180)

    # Nothing named after the token outside the tenant's volume (the node agent's PVC folders) and the store.
    allowed = [stack.data_dir / "storage", cluster.workdir]
    assert leaked_paths(TOKEN, roots=[Path("/"), Path("/tmp"), Path.home()], deep=[stack.data_dir],
                        allowed=allowed) == []

    assert_nothing_came_back(api, tenant, job, results, secrets, case, listener)
