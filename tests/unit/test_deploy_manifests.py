"""The deployment files name queues, modules and settings that exist.

No Docker engine runs here, so these checks keep docker-compose.yml and
k8s/ from drifting away from the code.  What the API server makes of k8s/
(every document accepted, with strict field validation) and whether its RBAC
covers what each Deployment's process calls is tested on the dev cluster:
tests/kube/test_deploy_manifests_on_cluster.py.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from core.messaging import QUEUES
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _commands() -> list[list[str]]:
    cmds = []
    for svc in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"].values():
        if "command" in svc:
            cmds.append(svc["command"])
    for doc in _docs(ROOT / "k8s" / "controller.yaml"):
        if "template" not in doc.get("spec", {}):
            continue  # a Service
        spec = doc["spec"]["template"]["spec"]
        for c in spec["containers"]:
            if "command" in c:
                cmds.append(c["command"])
    return cmds


def test_dramatiq_commands_consume_every_queue_and_only_real_ones():
    consumed = set()
    for cmd in _commands():
        if cmd[0] == "dramatiq":
            assert importlib.util.find_spec(cmd[1]) is not None, cmd
            queues = cmd[cmd.index("--queues") + 1 :]
            assert set(queues) <= set(QUEUES), queues
            consumed |= set(queues)
    compose_queues = set()
    for svc in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"].values():
        cmd = svc.get("command", [])
        if cmd and cmd[0] == "dramatiq":
            compose_queues |= set(cmd[cmd.index("--queues") + 1 :])
    assert compose_queues == set(QUEUES), "docker-compose runs a consumer for every queue"


def test_python_module_entrypoints_exist():
    for cmd in _commands():
        if cmd[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(cmd[2]) is not None or cmd[2] == "workers.watcher", cmd


def test_configured_settings_are_real_settings():
    known = {name.upper() for name in Settings.model_fields} | {"dramatiq_worker_timeout"}
    for doc in _docs(ROOT / "k8s" / "config.yaml"):
        for key in {**doc.get("data", {}), **doc.get("stringData", {})}:
            assert key in known, key
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for key in compose["x-service"]["environment"]:
        assert key in known, key


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((ROOT / "k8s" / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in (ROOT / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


class _NoDuplicateKeys(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; kubectl and the API server's clients refuse the file."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: merged keys may be overridden on purpose
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def test_no_deployment_file_repeats_a_key():
    for path in [ROOT / "docker-compose.yml", *sorted((ROOT / "k8s").glob("*.yaml"))]:
        with path.open() as fh:
            list(yaml.load_all(fh, Loader=_NoDuplicateKeys))  # raises naming the file, line and key


def test_the_duplicate_key_check_catches_one():
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'image'"):
        list(yaml.load_all("spec: {image: a, image: b}", Loader=_NoDuplicateKeys))



def test_no_secret_is_shipped():
    """The operator creates sumo-k8-secrets; a committed one would carry a value (a placeholder at best)."""
    for path in sorted((ROOT / "k8s").glob("*.yaml")):
        kinds = {d.get("kind") for d in _docs(path)}
        assert "Secret" not in kinds, path


@pytest.mark.parametrize("placeholder", ["CHANGE-ME", "changeme", " change-me ", "Replace-Me"])
def test_a_placeholder_admin_key_is_refused_at_start(placeholder):
    with pytest.raises(ValueError, match="ADMIN_KEY is the placeholder"):
        Settings(admin_key=placeholder)
    assert Settings(admin_key="3f1c9e").admin_key == "3f1c9e"


def _workloads() -> list[dict]:
    return [d for d in _docs(ROOT / "k8s" / "controller.yaml") if "template" in d.get("spec", {})]


@pytest.mark.parametrize("workload", _workloads(), ids=lambda d: d["metadata"]["name"])
def test_every_controller_pod_runs_unprivileged_on_a_read_only_root(workload):
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    tmp = {v["name"]: v for v in pod["volumes"]}["tmp"]
    assert "sizeLimit" in tmp["emptyDir"], "a bounded /tmp: the root filesystem is read-only"
    for c in pod["containers"]:
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}, c["name"]
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], c["name"]
        assert set(c["resources"]["limits"]) == {"cpu", "memory"}, c["name"]


def test_only_the_api_accepts_connections_in_the_controller_namespace():
    policies = {d["metadata"]["name"]: d["spec"] for d in _docs(ROOT / "k8s" / "network.yaml")}
    assert policies["sumo-k8-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    api = policies["sumo-k8-api-ingress"]
    assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert api["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_each_process_has_its_own_account_and_a_tenant_role_the_workers_may_bind():
    from core.executors.kubernetes.manifests import CONTROLLER_ACCOUNTS, TENANT_ROLE_PREFIX

    docs = _docs(ROOT / "k8s" / "rbac.yaml")
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    assert accounts == set(CONTROLLER_ACCOUNTS.values())
    cluster_roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    tenant_roles = {f"{TENANT_ROLE_PREFIX}{process}" for process in CONTROLLER_ACCOUNTS}
    assert tenant_roles <= set(cluster_roles)
    bind = [r for r in cluster_roles["sumo-k8-workers"]["rules"] if r["verbs"] == ["bind"]]
    assert [set(r["resourceNames"]) for r in bind] == [tenant_roles], "the workers bind the tenant roles only"
    # Cluster-wide, nobody writes inside a namespace: those verbs come with the tenant roles only.
    writes = {"create", "patch", "update", "delete"}
    for name, role in cluster_roles.items():
        if name in tenant_roles:
            continue
        for rule in role["rules"]:
            if writes & set(rule["verbs"]):
                assert set(rule["resources"]) <= {"namespaces", "rolebindings"}, (name, rule)
    running_as = {d["metadata"]["name"]: d["spec"]["template"]["spec"].get("serviceAccountName")
                  for d in _workloads() if d["kind"] == "Deployment"}
    assert running_as == {account: account for account in CONTROLLER_ACCOUNTS.values()}, \
        "each Deployment runs as the account of its own name"
