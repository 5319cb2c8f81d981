"""Executor pieces that need no cluster: the input re-pack, starts against a fake API, and which API server
failures mean "away, try again"."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError

from core.executors.base import ExecutorUnavailable, JobSpec
from core.executors.kubernetes.client import api_server
from core.executors.kubernetes.executor import KubernetesExecutor
from core.settings import Settings
from core.storage.local import LocalStore
from core.bootstrap import archive_limits

BOLOGNA = Path(__file__).resolve().parents[2] / "test_networks" / "zips" / "bologna-acosta.zip"


def test_repack_is_deterministic_and_keeps_only_the_scenario(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_file("inputs/t/j.zip", BOLOGNA)
    ex = KubernetesExecutor(Settings(), None, limits=archive_limits(Settings()), store=store, api=client.ApiClient())
    spec = JobSpec("j", "t", "ns", 1, 1, "run.sumocfg", "inputs/t/j.zip", 60)
    first, config, log_file = ex.starter.repack(spec)
    second, _, _ = ex.starter.repack(spec)
    assert first == second  # a re-delivered start re-creates byte-identical ConfigMaps
    assert (config, log_file) == ("run.sumocfg", "sumo_log.txt")
    import io

    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert "run.sumocfg" in names and "acosta_buslanes.net.xml" in names


def test_an_upload_that_is_exactly_the_scenario_is_used_as_is(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_file("inputs/t/j.zip", BOLOGNA)
    ex = KubernetesExecutor(Settings(), None, limits=archive_limits(Settings()), store=store, api=client.ApiClient())
    archive, _, _ = ex.starter.repack(JobSpec("j", "t", "ns", 1, 1, "run.sumocfg", "inputs/t/j.zip", 60))
    assert archive == BOLOGNA.read_bytes()


def test_a_root_folder_and_ignored_entries_are_stripped(tmp_path):
    """An upload with a root folder, folder entries and junk is re-packed: only the scenario's files, plain names."""
    src = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(BOLOGNA) as zin, zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zout:
        zout.writestr("scenario/", b"")
        for info in zin.infolist():
            zout.writestr("scenario/" + info.filename, zin.read(info))
        zout.writestr("scenario/.DS_Store", b"junk")
        zout.writestr("__MACOSX/scenario/._run.sumocfg", b"junk")
    store = LocalStore(tmp_path / "store")
    store.put_file("inputs/t/j.zip", src)
    ex = KubernetesExecutor(Settings(), None, limits=archive_limits(Settings()), store=store, api=client.ApiClient())
    spec = JobSpec("j", "t", "ns", 1, 1, "run.sumocfg", "inputs/t/j.zip", 60)
    first, config, _ = ex.starter.repack(spec)
    assert first == ex.starter.repack(spec)[0] and config == "run.sumocfg"
    import io

    with zipfile.ZipFile(BOLOGNA) as zin, zipfile.ZipFile(io.BytesIO(first)) as packed:
        assert sorted(packed.namelist()) == sorted(i.filename for i in zin.infolist() if not i.is_dir())
        assert all(packed.read(n) == zin.read(n) for n in packed.namelist())


def _api_error(status: int, reason: str):
    import json as _json

    from kubernetes.client.rest import ApiException

    exc = ApiException(status=status, reason=reason)
    exc.body = _json.dumps({"kind": "Status", "reason": reason, "message": f"{reason} for the test"})
    return exc


def test_a_write_conflict_is_retried_but_already_exists_is_done():
    """409 AlreadyExists is a re-delivered start; 409 Conflict (e.g. on the quota's usage) must be retried."""
    from core.executors.base import JobSpec
    from kubernetes import client

    from core.executors.kubernetes import KubernetesExecutor
    from core.settings import Settings

    ex = KubernetesExecutor(Settings(), None, limits=archive_limits(Settings()), api=client.ApiClient(), publish=lambda e: None)
    spec = JobSpec("j", "t", "ns", 1, 1, "a.sumocfg", "inputs/t/j.zip", 60)
    body = {"kind": "ConfigMap", "metadata": {"name": "cm"}}

    calls = []

    def conflict_once(ns, b):
        calls.append(ns)
        if len(calls) == 1:
            raise _api_error(409, "Conflict")

    ex.starter.create_quota_aware(spec, conflict_once, body)
    assert len(calls) == 2, "the conflicting create was tried again"

    calls.clear()

    def exists(ns, b):
        calls.append(ns)
        raise _api_error(409, "AlreadyExists")

    ex.starter.create_quota_aware(spec, exists, body)
    assert len(calls) == 1


class _Resp:
    """A ``_preload_content=False`` answer."""

    def __init__(self, body: dict | None = None):
        import json as _json

        self.data = _json.dumps(body or {}).encode()
        self.released = False

    def release_conn(self):
        self.released = True


class _FakeCluster:
    """Just enough of BatchV1Api/CoreV1Api for ``start``: one Job, its ConfigMaps, the calls made."""

    def __init__(self, job: dict | None = None):
        self.job, self.cms, self.calls = job, {}, []

    def create_namespaced_job(self, ns, body, **kw):
        self.calls.append("create job")
        if self.job is not None:
            raise _api_error(409, "AlreadyExists")
        self.job = {**body, "metadata": {**body["metadata"], "uid": "uid-1"}}
        return _Resp(self.job)

    def read_namespaced_job(self, name, ns, **kw):
        self.calls.append("read job")
        if self.job is None:
            raise _api_error(404, "NotFound")
        return _Resp(self.job)

    def patch_namespaced_job(self, name, ns, body, **kw):
        self.calls.append("patch job")
        self.job["spec"].update(body["spec"])
        return _Resp(self.job)

    def create_namespaced_config_map(self, ns, body, **kw):
        self.calls.append("create configmap")
        if body["metadata"]["name"] in self.cms:
            raise _api_error(409, "AlreadyExists")
        self.cms[body["metadata"]["name"]] = body
        return _Resp(body)


def _executor_on(fake, tmp_path, published):
    store = LocalStore(tmp_path / "store")
    store.put_file("inputs/t/j.zip", BOLOGNA)
    ex = KubernetesExecutor(Settings(), None, limits=archive_limits(Settings()), store=store, api=client.ApiClient(), publish=published.append)
    ex.kube.batch = ex.kube.core = fake
    ex.tenants.ready_namespaces.add("ns")
    return ex, JobSpec("j", "t", "ns", 1, 1, "run.sumocfg", "inputs/t/j.zip", 60)


def test_a_quota_refusal_waits_but_an_authorization_refusal_is_raised():
    """Quota admission's 403 means "wait for quota" (PENDING with the reason); RBAC's 403 is a deployment error."""
    import json as _json

    from kubernetes.client.rest import ApiException

    events = []
    ex = KubernetesExecutor(Settings(), None, limits=archive_limits(Settings()), api=client.ApiClient(), publish=events.append)
    spec = JobSpec("j", "t", "sumo-quota-team", 1, 1, "a.sumocfg", "inputs/t/j.zip", 60)
    body = {"kind": "ConfigMap", "metadata": {"name": "cm"}}

    def forbidden(message):
        exc = ApiException(status=403, reason="Forbidden")
        exc.body = _json.dumps({"kind": "Status", "reason": "Forbidden", "message": message})
        return exc

    calls = []

    def over_quota_once(ns, b):
        calls.append(ns)
        if len(calls) == 1:
            raise forbidden('configmaps "cm" is forbidden: exceeded quota: sumo-quota, requested: configmaps=1, '
                            'used: configmaps=3, limited: configmaps=3')

    ex.starter.create_quota_aware(spec, over_quota_once, body)
    assert len(calls) == 2 and events[0].reason.startswith("Forbidden: configmaps \"cm\" is forbidden: exceeded quota")

    def rbac(ns, b):  # the namespace's name contains "quota": only the plugin's wording counts
        raise forbidden('configmaps is forbidden: User "system:serviceaccount:sumo-k8-system:sumo-k8" cannot create '
                        'resource "configmaps" in API group "" in the namespace "sumo-quota-team"')

    with pytest.raises(ApiException):
        ex.starter.create_quota_aware(spec, rbac, body)


def test_start_creates_the_job_then_its_owned_configmaps(tmp_path):
    fake, published = _FakeCluster(), []
    ex, spec = _executor_on(fake, tmp_path, published)
    ex.start(spec)
    assert fake.calls == ["create job", "create configmap"]  # no read before the create, nothing to resume
    assert fake.job["spec"]["suspend"] is False
    (cm,) = fake.cms.values()
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert published == []

    fake.calls.clear()
    ex.start(spec)  # re-delivered: the create says AlreadyExists, the read gives the uid, the ConfigMap exists
    assert fake.calls == ["create job", "read job", "create configmap"]
    assert len(fake.cms) == 1


def test_a_start_interrupted_before_its_configmaps_is_finished_by_the_redelivery(tmp_path):
    fake, published = _FakeCluster(), []
    ex, spec = _executor_on(fake, tmp_path, published)
    ex.start(spec)
    fake.cms.clear()  # as if the worker died between the Job and its ConfigMap
    ex.start(spec)
    (cm,) = fake.cms.values()
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_a_job_left_suspended_is_resumed(tmp_path):
    fake, published = _FakeCluster(), []
    ex, spec = _executor_on(fake, tmp_path, published)
    ex.start(spec)
    fake.job["spec"]["suspend"] = True  # created suspended by an earlier version that died before resuming it
    fake.calls.clear()
    ex.start(spec)
    assert fake.calls == ["create job", "read job", "create configmap", "patch job"]
    assert fake.job["spec"]["suspend"] is False


def test_a_lost_input_fails_the_job_unless_it_already_started(tmp_path):
    fake, published = _FakeCluster(), []
    ex, spec = _executor_on(fake, tmp_path, published)
    ex.start(spec)
    ex.store.delete_prefix("inputs/")
    ex.start(spec)  # started already: a re-delivery without its input is a no-op
    assert published == []
    fake.job["spec"]["suspend"] = True
    ex.start(spec)  # suspended (an earlier version's start, interrupted): without its input it cannot run
    assert [e.status.value for e in published] == ["FAILED"]
    published.clear()
    fake.job = None
    ex.start(spec)
    assert [e.status.value for e in published] == ["FAILED"] and "input" in published[0].reason


def test_a_namespace_deleted_since_it_was_ensured_is_recreated_by_the_retry(tmp_path):
    from kubernetes.client.rest import ApiException

    fake, published = _FakeCluster(), []
    ex, spec = _executor_on(fake, tmp_path, published)

    def no_namespace(ns, body, **kw):
        raise _api_error(404, "NotFound")

    fake.create_namespaced_job = no_namespace
    with pytest.raises(ApiException):
        ex.start(spec)
    assert "ns" not in ex.tenants.ready_namespaces  # the next delivery runs _ensure_basics again


def test_an_upload_lying_about_a_size_is_not_used_as_is(tmp_path):
    """A member that inflates to more than its header says must not reach the pod as is (the re-pack refuses it)."""
    from core.executors.kubernetes.job_start import usable_as_is
    from core.scenario import inspect_archive

    src = tmp_path / "ok.zip"
    src.write_bytes(BOLOGNA.read_bytes())
    scenario = inspect_archive(src, "run.sumocfg", archive_limits(Settings()))
    assert usable_as_is(src, scenario)

    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    # lower the uncompressed size in the central directory entry of the biggest member
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        name_len = int.from_bytes(data[pos + 28:pos + 30], "little")
        if data[pos + 46:pos + 46 + name_len].decode() == info.filename:
            break
        pos += 4
    data[pos + 24:pos + 28] = (info.file_size // 2).to_bytes(4, "little")
    lying = tmp_path / "lying.zip"
    lying.write_bytes(bytes(data))
    assert not usable_as_is(lying, scenario)


def test_quota_wait_lasts_until_the_controller_applied_the_new_values():
    """After a change of limits the quota's status still has the old values (same keys) for a while:
    quota admission would refuse pods by them, so ensure_tenant waits for the values, not only the keys."""
    spec = client.V1ResourceQuotaSpec(hard={"requests.cpu": "3100m", "pods": "5"})
    reads = [client.V1ResourceQuota(spec=spec, status=client.V1ResourceQuotaStatus(hard=hard))
             for hard in ({"requests.cpu": "2100m", "pods": "5"}, {"requests.cpu": "3100m", "pods": "5"})]

    class Core:
        calls = 0

        def read_namespaced_resource_quota(self, name, namespace):
            Core.calls += 1
            return reads[min(Core.calls, len(reads)) - 1]

    ex = KubernetesExecutor(Settings(), None, limits=archive_limits(Settings()), api=client.ApiClient())
    ex.kube.core = Core()
    ex.tenants.wait_quota_settled("ns")
    assert Core.calls == 2


@pytest.mark.parametrize("failure", [
    MaxRetryError(None, "/api/v1/pods", reason=NewConnectionError(None, "Connection refused")),
    ReadTimeoutError(None, "/api/v1/pods", "read timed out"),
    ApiException(status=503, reason="Service Unavailable"),
    ApiException(status=500, reason="Internal Server Error"),
    ApiException(status=429, reason="Too Many Requests"),
])
def test_an_api_server_away_is_unavailable_not_an_error(failure):
    with pytest.raises(ExecutorUnavailable, match="Kubernetes API server"):
        with api_server():
            raise failure


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_a_refusal_stays_what_it_is(status):
    with pytest.raises(ApiException) as raised:
        with api_server():
            raise ApiException(status=status, reason="refused")
    assert raised.value.status == status
