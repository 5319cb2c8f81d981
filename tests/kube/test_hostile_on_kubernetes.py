"""The hostile-scenario corpus (tests/hostile/scenarios.py) through the service with EXECUTOR=kubernetes.

Each case is refused with a 4xx naming its option, or runs and is contained, checked on the host: nothing
named after the corpus's token outside the cluster's volumes and the result store, no secret of the service
in the job's status, log or results. The run caps (MAX_OUTPUT_MB, MAX_LOG_MB) are the simulation pod's own.

The memory bomb is left out here: the dev cluster's node agent runs pods as host processes and enforces no
memory limit (a real kubelet's cgroups would; see devcluster/README.md), so that case would take the host's
memory instead of meeting its pod's limit. The local executor's sandbox contains it (tests/hostile,
tests/integration/test_sandbox_local.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.waits import free_port
from tests.hostile.fixtures import corpus_fixtures
from tests.hostile.scenarios import describe, leaked_paths, names_an_option, secrets_in
from tests.integration.harness import Api

pytestmark = pytest.mark.kube

TOKEN, listener, cases = corpus_fixtures("hk")
NOT_ON_THE_NODE_AGENT = {"memory-bomb"}
NAMES = [n for n in describe()[0] if n not in NOT_ON_THE_NODE_AGENT]


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

    texts = [json.dumps(job), api.http.get(f"/jobs/{job_id}/logs", headers=api.auth(tenant)).text]
    for f in results["files"]:
        texts.append(f["name"])
        got = api.http.get(f"/jobs/{job_id}/results/{f['name']}", headers=api.auth(tenant))
        assert got.status_code == 200, got.text
        texts.append(got.content.decode(errors="replace"))
    assert secrets_in(texts, secrets) == []
    if case.listener:
        with pytest.raises(BlockingIOError):
            listener.accept()
