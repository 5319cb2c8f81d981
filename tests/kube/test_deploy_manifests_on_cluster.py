"""The deployment manifests of ``k8s/`` on the real dev control plane (marker ``kube``).

* The API server accepts every document: namespace.yaml and rbac.yaml are
  server-side applied for real (idempotent: the same field manager each time),
  config.yaml and controller.yaml as a server-side dry run (nothing runs them
  here, and the Secret holds placeholders); all with ``fieldValidation=Strict``,
  so an unknown or misspelled field is refused rather than dropped.
* Their RBAC is enough: every call a process makes in production is made here
  with the identity of the Deployment that runs it (its ``serviceAccountName``
  in controller.yaml, impersonated by the admin client).  A call refused by RBAC
  fails the test with the identity and the permission it lacked, also when the
  code swallows the refusal (the watcher's streams and Lease retry quietly).

Every wait is a bounded condition (``wait_for``), never a fixed sleep.
"""
from __future__ import annotations

import json
import threading
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from core.domain.states import JobStatus
from core.executors.base import JobSpec
from core.executors.kubernetes import manifests as m
from core.bootstrap import archive_limits
from devcluster.procs import wait_for
from tests.devcluster.conftest import gone
from tests.kube.conftest import SQUARE, Recorder, square_variant

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]

K8S = Path(__file__).resolve().parents[2] / "k8s"
APPLIED = ("namespace.yaml", "rbac.yaml")  # what an admin creates first; harmless to create here for real
DRY_RUN = ("network.yaml", "config.yaml", "controller.yaml")  # validated and admitted, not stored
FIELD_MANAGER = "sumo-k8-manifest-test"


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def describe(doc: dict) -> str:
    return f"{doc['kind']} {doc['metadata']['name']}"


def message(exc: ApiException) -> str:
    """The Status message of an API error (what the server says was wrong)."""
    try:
        return json.loads(exc.body).get("message") or f"{exc.status} {exc.reason}"
    except (TypeError, ValueError):
        return f"{exc.status} {exc.reason}: {exc.body!r}"


def apply(dyn, doc: dict, *, dry_run: bool):
    """Server-side apply one document with strict field validation (only validated and admitted if ``dry_run``)."""
    resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    return dyn.server_side_apply(resource, body=doc, field_manager=FIELD_MANAGER, force_conflicts=True,
                                 dry_run="All" if dry_run else None,
                                 query_params=[("fieldValidation", "Strict")])


def pod_service_accounts(kind: str | None = None) -> dict[str, tuple[str, str]]:
    """``{name: (namespace, ServiceAccount)}`` of every workload in controller.yaml whose pods run as it:
    its ``serviceAccountName``, or the namespace's ``default`` when it names none."""
    found = {}
    for doc in documents("controller.yaml"):
        template = doc.get("spec", {}).get("template")
        if template is None or (kind is not None and doc["kind"] != kind):
            continue
        found[doc["metadata"]["name"]] = (doc["metadata"]["namespace"],
                                          template["spec"].get("serviceAccountName", "default"))
    return found


def controller_namespace() -> str:
    cfg = next(d for d in documents("config.yaml") if d["kind"] == "ConfigMap")
    return cfg["data"]["CONTROLLER_NAMESPACE"]


# -- the manifests --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dyn(cluster, tmp_path_factory):
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(cluster.api_client(), cache_file=str(tmp_path_factory.mktemp("discovery") / "cache.json"))


def apply_files(dyn, names, *, dry_run: bool) -> list[str]:
    """Apply every document of ``names``; what the server refused of them, file and object named."""
    refused = []
    for name in names:
        for doc in documents(name):
            try:
                apply(dyn, doc, dry_run=dry_run)
            except ApiException as exc:
                refused.append(f"{name}: {describe(doc)}: {message(exc)}")
    return refused


@pytest.fixture(scope="module")
def deployed(dyn) -> list[str]:
    """namespace.yaml and rbac.yaml applied for real, as an admin would; what the server refused of them."""
    return apply_files(dyn, APPLIED, dry_run=False)


def test_every_manifest_is_accepted_by_the_api_server(deployed, dyn, api):
    refused = deployed + apply_files(dyn, DRY_RUN, dry_run=True)
    if refused:
        pytest.fail("the API server refused:\n" + "\n".join(refused), pytrace=False)

    # A pod template naming a ServiceAccount that does not exist never gets pods (ServiceAccount admission).
    declared = {(d["metadata"]["namespace"], d["metadata"]["name"])
                for n in APPLIED for d in documents(n) if d["kind"] == "ServiceAccount"}
    core = client.CoreV1Api(api)
    for workload, (ns, sa) in pod_service_accounts().items():
        assert sa == "default" or (ns, sa) in declared, \
            f"{workload} runs as ServiceAccount {ns}/{sa}, which no manifest in k8s/ creates"
        wait_for(f"ServiceAccount {ns}/{sa} of {workload}", lambda: core.read_namespaced_service_account(sa, ns), 30)


# -- the RBAC, by impersonation -------------------------------------------------------------------------
@dataclass
class Identity:
    """A ServiceAccount the Deployments run as, and every request RBAC refused it."""

    user: str
    kubeconfig: Path
    deployments: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Tenant namespaces of this test.  The cluster is shared by the session: other tests' tenants bind the
    #: roles to their own controller namespace's accounts, so what these accounts may not do there is not
    #: a gap of k8s/rbac.yaml (the watcher sees every managed Job and tries to lift their finalizers).
    own_namespaces: set[str] = field(default_factory=set)

    def counts(self, path: str) -> bool:
        """Whether a refusal of ``path`` is one of this deployment's."""
        parts = path.split("/")
        if "namespaces" in parts and parts.index("namespaces") + 1 < len(parts):
            ns = parts[parts.index("namespaces") + 1]
            return not ns.startswith("sumo-") or ns in self.own_namespaces or ns == controller_namespace()
        return True

    def client(self) -> "ActingAs":
        """A new API client (like each process has its own) acting as this identity."""
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg, persist_config=False)
        return ActingAs(cfg, self)

    def describe(self) -> str:
        return f"{self.user} (Deployment{'s' if len(self.deployments) > 1 else ''} {', '.join(self.deployments)})"


class ActingAs(client.ApiClient):
    """The admin's credentials with ``Impersonate-User``: the server authorizes every request as that user.

    Refusals are remembered before the caller sees them: the watcher retries its
    streams and Lease quietly, so a missing permission would otherwise only show as
    a timeout.  Every 403 counts but quota's, which the executor waits out: RBAC's
    (the message names the user, and the verb and resource it lacks) and
    OwnerReferencesPermissionEnforcement's (it names neither; the hint below does).
    """

    def __init__(self, configuration, identity: Identity):
        super().__init__(configuration, header_name="Impersonate-User", header_value=identity.user)
        self.identity = identity

    def request(self, method, url, query_params=None, headers=None, post_params=None, body=None, **kwargs):
        try:
            return super().request(method, url, query_params=query_params, headers=headers,
                                   post_params=post_params, body=body, **kwargs)
        except ApiException as exc:
            text = message(exc)
            if exc.status == 403 and (f'User "{self.identity.user}"' in text or "quota" not in text) \
                    and self.identity.counts(urlsplit(url).path):
                selector = "".join(f" {k}={v}" for k, v in query_params or ()
                                   if k in ("labelSelector", "fieldSelector", "watch"))
                if "blockOwnerDeletion" in text:
                    owners = ((body or {}).get("metadata") or {}).get("ownerReferences") or []
                    text += " [needs update on " + ", ".join(
                        f"{o['kind'].lower()}s/finalizers ({o['apiVersion']})" for o in owners) + "]"
                with self.identity.lock:
                    self.identity.refused.append(f"{method} {urlsplit(url).path}{selector}: {text}")
            raise


def identities(kubeconfig: Path) -> dict[str, Identity]:
    """Deployment name -> its pods' identity (Deployments running as one ServiceAccount share one)."""
    by_user: dict[str, Identity] = {}
    found = {}
    for deployment, (ns, sa) in pod_service_accounts("Deployment").items():
        user = f"system:serviceaccount:{ns}:{sa}"
        found[deployment] = by_user.setdefault(user, Identity(user, kubeconfig))
        found[deployment].deployments.append(deployment)
    return found


def refusals(idents) -> list[str]:
    lines = []
    for ident in idents:
        with ident.lock:
            seen = list(dict.fromkeys(ident.refused))  # the watcher retries: each refusal once
        lines += [f"{ident.describe()} lacks a permission: {r}" for r in seen]
    return lines


def fail_if_refused(idents) -> None:
    if found := refusals(idents):
        pytest.fail("RBAC of k8s/rbac.yaml refused:\n" + "\n".join(found), pytrace=False)


@contextmanager
def refusals_fail(idents):
    """Any refusal fails the test with the refusals' messages, whatever error it caused (or not)."""
    try:
        yield
    except Exception:
        if not refusals(idents):
            raise
    try:
        fail_if_refused(idents)
    except pytest.fail.Exception as failed:
        raise failed from None  # the refusal is the story, not what it broke


def wait_as(idents, what: str, cond, timeout: float):
    """``wait_for(cond)`` that stops at once when RBAC refused one of ``idents`` something."""
    value = wait_for(what, lambda: refusals(idents) or cond(), timeout)
    fail_if_refused(idents)
    return value


def event(recorder: Recorder, job_id: str, status: JobStatus):
    return next((e for e in recorder.of(job_id) if e.status is status), None)


def new_job(store, tenant: dict, archive: Path) -> JobSpec:
    job_id = str(uuid.uuid4())
    key = f"inputs/{tenant['tenant_id']}/{job_id}.zip"
    store.put_file(key, archive)
    with zipfile.ZipFile(archive) as zf:
        config_file = next(n for n in zf.namelist() if n.endswith(".sumocfg"))
    return JobSpec(job_id=job_id, tenant_id=tenant["tenant_id"], namespace=tenant["namespace"], cpu_request=1,
                   memory_gi=1, config_file=config_file, input_key=key, deadline_seconds=600)


def test_each_deployment_can_do_its_part_as_its_service_account(deployed, cluster, api, settings, store, tmp_path,
                                                                 receiver):
    """Who does what in production: the workers' actors reconcile tenants and start, collect, release and
    cancel jobs (workers/actors.py); the watcher holds the Lease and watches (workers/watcher.py; at startup
    it asks the workers to reconcile every tenant); the API reads live logs and the cluster's capacity
    (core/services/logs.py, api/routes/admin.py); the sweeper reads what a stalled job's Job says and clears
    what a collection given up left (core/services/sweeper.py).  Nothing else calls the Kubernetes API."""
    from core.executors.kubernetes import KubernetesExecutor
    from core.executors.kubernetes.lease import LeaderLease
    from core.executors.kubernetes.watcher import Watcher

    assert not deployed, "namespace.yaml / rbac.yaml were refused:\n" + "\n".join(deployed)
    ids = identities(cluster.kubeconfig)
    workers, watching, serving = ids["sumo-k8-workers"], ids["sumo-k8-watcher"], ids["sumo-k8-api"]
    sweeping = ids["sumo-k8-sweeper"]
    every = list({i.user: i for i in ids.values()}.values())

    suffix = uuid.uuid4().hex[:8]
    tenant = {"tenant_id": f"t{suffix}", "namespace": f"sumo-t{suffix}", "max_cpu": 3, "max_memory_gi": 3,
              "max_concurrent_jobs": 3}
    for identity in every:
        identity.own_namespaces.add(tenant["namespace"])
    ctl_ns, lease_name = controller_namespace(), f"sumo-k8-watcher-{suffix}"  # not the Lease other tests' watchers take
    recorder = Recorder()
    lease = LeaderLease(watching.client(), ctl_ns, f"test-{suffix}", name=lease_name)
    watcher = Watcher(watching.client(), recorder, resync_seconds=5, log_tail_lines=5, lease=lease, watch_timeout=5)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)  # releases its Lease when stopped
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    try:
        with refusals_fail(every):
            try:
                # The workers reconcile a tenant on registration, on each PATCH, and for every tenant when a
                # watcher starts.
                for limits in (tenant, {**tenant, "max_cpu": 4}):
                    KubernetesExecutor(settings, None, limits=archive_limits(settings), store=store,
                                       api=workers.client()).ensure_tenant(limits)
                thread.start()
                wait_as(every, f"the watcher leads (Lease {ctl_ns}/{lease_name})", watcher.leading.is_set, 30)

                # Another worker process starts the jobs: its first start in the namespace re-creates the basics.
                ex = KubernetesExecutor(settings, None, limits=archive_limits(settings), store=store, api=workers.client(),
                                        uploads=receiver.uploads)
                ok = new_job(store, tenant, SQUARE)
                routes = b'<routes><vehicle id="v" depart="0"><route edges="no-such-edge"/></vehicle></routes>'
                bad = new_job(store, tenant, square_variant(tmp_path, "bad.zip", routes=routes))
                ex.start(ok)
                ex.start(ok)  # a re-delivered start reads the Job and finds its ConfigMaps
                ex.start(bad)
                done = wait_as(every, "SUCCEEDED published", lambda: event(recorder, ok.job_id, JobStatus.SUCCEEDED),
                               180)
                assert done.exit_code == 0
                failed = wait_as(every, "FAILED published", lambda: event(recorder, bad.job_id, JobStatus.FAILED), 120)
                assert "no-such-edge" in (failed.log_tail or ""), failed  # the watcher read the pod's log

                receiver.expect(ok)
                results = ex.collect(ok, store)
                assert {"sumo.log", "sumo-statistics.xml"} <= {f["name"] for f in results.files}
                ex.release(ok)
                assert not gone(batch.read_namespaced_job, m.cleanup_name(ok.job_id), ok.namespace)

                long = new_job(store, tenant, square_variant(tmp_path, "long.zip", end="1000000000"))
                ex.start(long)
                wait_as(every, "RUNNING published", lambda: event(recorder, long.job_id, JobStatus.RUNNING), 120)
                front = KubernetesExecutor(settings, None, limits=archive_limits(settings), store=store, api=serving.client())
                assert wait_as(every, "the live log through the API's identity",
                               lambda: front.read_live_log(long, 0, 1000), 60)
                capacity = front.capacity()
                assert capacity["nodes"] and capacity["nodes"][0]["ready"], capacity
                sweeper = KubernetesExecutor(settings, None, limits=archive_limits(settings), store=store,
                                             api=sweeping.client())
                assert sweeper.observe(long).status is JobStatus.RUNNING  # a stalled job's Job, read again
                sweeper.release(ok)  # what a collection given up left: the cleanup Job (already there: normal)
                fail_if_refused(every)

                ex.cancel(long)
                wait_as(every, "the cancelled Job gone (the watcher lifts its finalizer)", lambda: gone(
                    batch.read_namespaced_job, m.job_name(long.job_id), long.namespace), 120)
                wait_as(every, "CANCELLED published", lambda: event(recorder, long.job_id, JobStatus.CANCELLED), 30)
            finally:
                stop.set()
                if thread.ident is not None:
                    thread.join(timeout=30)
            assert not thread.is_alive()
            assert client.CoordinationV1Api(api).read_namespaced_lease(lease_name, ctl_ns).spec.holder_identity \
                is None, "the watcher released its Lease"
    finally:
        for delete, args in ((core.delete_namespace, (tenant["namespace"],)),
                             (client.CoordinationV1Api(api).delete_namespaced_lease, (lease_name, ctl_ns))):
            try:
                delete(*args)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def _acting_as(cluster, user: str) -> client.ApiClient:
    """A client impersonating ``user``, for calls that must be refused (ActingAs would count them)."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg, persist_config=False)
    return client.ApiClient(cfg, header_name="Impersonate-User", header_value=user)


def _refused(call) -> str:
    """The message of the refusal ``call`` must get: 403 from RBAC, 422 from the admission policy."""
    try:
        call()
    except ApiException as exc:
        assert exc.status in (403, 422), (exc.status, message(exc))
        return message(exc)
    raise AssertionError("the call was allowed")


def test_the_controller_writes_in_tenant_namespaces_only(deployed, cluster, api, settings, store):
    """Writes go through the RoleBindings of tenant namespaces: a process can create nothing elsewhere, and
    the workers, who create those RoleBindings, cannot create one outside a tenant namespace (the
    ValidatingAdmissionPolicy of rbac.yaml) nor a namespace that is not a tenant's."""
    from core.executors.kubernetes import KubernetesExecutor

    assert not deployed, "namespace.yaml / rbac.yaml were refused:\n" + "\n".join(deployed)
    ns = controller_namespace()
    suffix = uuid.uuid4().hex[:8]
    tenant = {"tenant_id": f"r{suffix}", "namespace": f"sumo-r{suffix}", "max_cpu": 1, "max_memory_gi": 1,
              "max_concurrent_jobs": 1}
    workers = _acting_as(cluster, f"system:serviceaccount:{ns}:sumo-k8-workers")
    admin_core = client.CoreV1Api(api)
    try:
        KubernetesExecutor(settings, None, limits=archive_limits(settings), store=store,
                           api=workers).ensure_tenant(tenant)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"probe-{suffix}"},
               "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}
        for account in ("sumo-k8-workers", "sumo-k8-watcher", "sumo-k8-api", "sumo-k8-sweeper"):
            core = client.CoreV1Api(_acting_as(cluster, f"system:serviceaccount:{ns}:{account}"))
            for where in ("default", "kube-system", ns):
                assert "cannot create resource \"pods\"" in _refused(lambda: core.create_namespaced_pod(where, pod))
        for account in ("sumo-k8-watcher", "sumo-k8-api", "sumo-k8-sweeper"):  # only the workers start pods
            core = client.CoreV1Api(_acting_as(cluster, f"system:serviceaccount:{ns}:{account}"))
            _refused(lambda: core.create_namespaced_pod(tenant["namespace"], pod))

        rbac = client.RbacAuthorizationV1Api(workers)
        binding = m.tenant_role_bindings(tenant, controller_namespace=ns)[0]
        for where in ("kube-system", "default", ns):
            text = wait_for(f"the policy to refuse a RoleBinding in {where}",
                            lambda: _refused(lambda: rbac.create_namespaced_role_binding(where, binding)), 30)
            assert "tenant namespaces" in text and where in text, text
        role_to_any = {**binding, "metadata": {"name": f"escalate-{suffix}"},
                       "roleRef": {**binding["roleRef"], "name": "cluster-admin"}}
        _refused(lambda: rbac.create_namespaced_role_binding(tenant["namespace"], role_to_any))  # bind: no

        core = client.CoreV1Api(workers)
        for name in ("kube-evil", "sumo-k8-system", f"other-{suffix}"):
            text = _refused(lambda: core.create_namespace({"metadata": {"name": name, "labels": dict(
                m.labels(tenant["tenant_id"]))}}))
            assert "tenant namespaces" in text, text
        _refused(lambda: core.patch_namespace("default", {"metadata": {"labels": {"x": "y"}}}))
    finally:
        try:
            admin_core.delete_namespace(tenant["namespace"])
        except ApiException as exc:
            if exc.status != 404:
                raise
