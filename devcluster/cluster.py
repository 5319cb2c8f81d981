"""Start/stop a real Kubernetes v1.34 control plane on loopback for tests.

Components (all local processes, each in its own process group):

* etcd (Debian ``etcd-server`` or ``$ETCD_BIN``), plain HTTP on 127.0.0.1;
* kube-apiserver, secure port only, client-certificate auth against our CA,
  ``--authorization-mode=RBAC``; every component and the tests use one admin
  certificate in group ``system:masters`` (so RBAC never gets in the way,
  while service-account tokens minted for pods still go through RBAC);
* kube-controller-manager with only the controllers a Job-runner needs;
* kube-scheduler;
* optionally the node agent (``devcluster.node_agent``), our stand-in kubelet.

Readiness is decided by conditions with deadlines: etcd ``/health``,
apiserver ``/readyz``, the controller-manager and scheduler leader-election
Leases being held, and the ``default`` ServiceAccount existing (pods are
refused by the ServiceAccount admission plugin until it does), plus the
Node being Ready when the agent runs.

Binaries: ``$KUBE_BIN_DIR`` or ``${SUMO_K8_CACHE:-~/.cache/sumo-k8}/kube/<ver>/bin``
(filled by ``devcluster/build.sh``).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.waits import free_port

from . import pki as _pki
from .procs import Proc, wait_for

KUBE_VERSION = "v1.34.4"
SERVICE_CIDR = "10.0.0.0/24"
# Canonical v1.34 names (see cmd/kube-controller-manager/names); the short
# aliases ("job", "garbagecollector", ...) are accepted too but deprecated.
CONTROLLERS = (
    "job-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "resourcequota-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "node-lifecycle-controller",
    # Not in the original wish list but cheap and realistic: publishes the
    # kube-root-ca.crt ConfigMap that projected service-account volumes use,
    # and garbage-collects orphaned/terminated pods.
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
)


def cache_dir() -> Path:
    return Path(os.environ.get("SUMO_K8_CACHE", Path.home() / ".cache" / "sumo-k8"))


def kube_bin_dir() -> Path:
    env = os.environ.get("KUBE_BIN_DIR")
    return Path(env) if env else cache_dir() / "kube" / KUBE_VERSION / "bin"


def etcd_bin() -> str:
    found = os.environ.get("ETCD_BIN") or shutil.which("etcd")
    if not found:
        raise FileNotFoundError("etcd not found: apt-get install etcd-server or set ETCD_BIN")
    return found


@dataclass
class NodeSettings:
    """What the node agent advertises (scheduler fits pods against it)."""

    name: str = "devnode"
    cpu: str = "4"
    memory: str = "8Gi"
    pods: str = "20"
    #: The kubelet's containerLogMaxSize: each container's log file is rotated past it, and ``pods/log`` then
    #: returns the current file only.
    container_log_max_size: str = "10Mi"


@dataclass
class Cluster:
    """One control plane rooted at ``workdir`` (certs, data, logs, kubeconfig).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    workdir: Path
    with_node_agent: bool = True
    node: NodeSettings = field(default_factory=NodeSettings)
    start_timeout: float = 120.0
    verbosity: int = 1
    #: Serve the API server's Go profiles at /debug/pprof (for benchmarks: where its CPU goes).
    profiling: bool = False
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.logs = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.apiserver_url = ""

    # ------------------------------------------------------------------ start
    def start(self) -> "Cluster":
        bins = kube_bin_dir()
        for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            if not (bins / b).exists():
                raise FileNotFoundError(f"{bins / b} missing: run devcluster/build.sh")
        marker = self.workdir / ".devcluster-workdir"
        if self.workdir.exists() and any(self.workdir.iterdir()):
            if not marker.exists():  # never wipe a directory we did not create
                raise FileExistsError(f"{self.workdir} is not empty and not a devcluster workdir")
            shutil.rmtree(self.workdir)  # state from a previous run is useless
        self.logs.mkdir(parents=True)
        marker.touch()
        (self.workdir / ".gitignore").write_text("*\n")  # e.g. <repo>/.devcluster
        try:
            self.pki = _pki.generate(self.workdir / "pki")
            self._start_etcd()
            self._start_apiserver(bins)
            self._write_kubeconfig()
            self._start_controller_manager(bins)
            self._start_scheduler(bins)
            self._wait_control_plane()
            if self.with_node_agent:
                self._start_node_agent()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str], **kw) -> Proc:
        p = Proc(name, argv, self.logs / f"{name}.log", **kw)
        self.procs.append(p)
        return p

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        p = self._spawn("etcd", [
            etcd_bin(), "--name=devcluster",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=devcluster={peer_url}",
            "--initial-cluster-state=new",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ])
        wait_for("etcd /health", lambda: b'"true"' in _get(self.etcd_url + "/health"),
                 30, alive=[p])

    def _start_apiserver(self, bins: Path, port: int | None = None) -> None:
        port = port or free_port()
        self.apiserver_port = port
        self.apiserver_url = f"https://127.0.0.1:{port}"
        k = self.pki
        self.apiserver = p = self._spawn("kube-apiserver", [
            str(bins / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={k.apiserver.cert}", f"--tls-private-key-file={k.apiserver.key}",
            f"--client-ca-file={k.ca.cert}",
            "--authorization-mode=RBAC",
            # Added to the default plugins: setting blockOwnerDeletion (the executor's input ConfigMaps)
            # then needs update on the owner's finalizers, so k8s/rbac.yaml's jobs/finalizers rule is tested.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            "--anonymous-auth=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={k.sa_pub}",
            f"--service-account-signing-key-file={k.sa_key}",
            "--allow-privileged=true",
            # apiserver -> node agent (logs): verify the agent's serving cert
            # against our CA, and authenticate with a client cert.
            f"--kubelet-certificate-authority={k.ca.cert}",
            f"--kubelet-client-certificate={k.apiserver_kubelet_client.cert}",
            f"--kubelet-client-key={k.apiserver_kubelet_client.key}",
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-priority-and-fairness=false",
            # The "kubernetes" Service endpoints cannot be a loopback IP, so the
            # default lease reconciler would fail (and warn) every 10s.
            "--endpoint-reconciler-type=none",
            f"--profiling={str(self.profiling).lower()}",
            f"--v={self.verbosity}",
        ])
        wait_for("kube-apiserver /readyz", lambda: _get(
            self.apiserver_url + "/readyz", self._ssl()) == b"ok",
            self.start_timeout, interval=0.5, alive=[p])

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        ctx.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        return ctx

    def _write_kubeconfig(self) -> None:
        """Admin kubeconfig with embedded-by-path credentials (JSON is YAML)."""
        k = self.pki
        self._kubeconfig_file(self.kubeconfig, "devcluster", "admin",
                              {"client-certificate": str(k.admin.cert), "client-key": str(k.admin.key)})

    def token_kubeconfig(self, name: str, token: str) -> Path:
        """A kubeconfig next to the admin's that authenticates with ``token`` (e.g. a ServiceAccount's)."""
        return self._kubeconfig_file(self.workdir / f"kubeconfig-{name}", name, name, {"token": token})

    def _kubeconfig_file(self, path: Path, context: str, user: str, credentials: dict) -> Path:
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "devcluster", "cluster": {
                "server": self.apiserver_url, "certificate-authority": str(self.pki.ca.cert)}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": context, "context": {"cluster": "devcluster", "user": user}}],
        }
        path.write_text(json.dumps(cfg, indent=2))
        path.chmod(0o600)
        return path

    def _start_controller_manager(self, bins: Path) -> None:
        kc = str(self.kubeconfig)
        self._spawn("kube-controller-manager", [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--secure-port=0",  # no metrics/healthz server: no fixed port clash
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={self.pki.sa_key}",
            f"--root-ca-file={self.pki.ca.cert}",
            "--use-service-account-credentials=false",
            "--leader-elect=true",
            f"--v={self.verbosity}",
        ])

    def _start_scheduler(self, bins: Path) -> None:
        kc = str(self.kubeconfig)
        self._spawn("kube-scheduler", [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--secure-port=0",
            "--leader-elect=true",
            f"--v={self.verbosity}",
        ])

    def _wait_control_plane(self) -> None:
        from kubernetes import client

        api = self.api_client()
        coord, core = client.CoordinationV1Api(api), client.CoreV1Api(api)

        def lease_held(name: str):
            def check() -> bool:
                lease = coord.read_namespaced_lease(name, "kube-system")
                return bool(lease.spec.holder_identity)
            return check

        for name in ("kube-controller-manager", "kube-scheduler"):
            wait_for(f"leader lease kube-system/{name}", lease_held(name),
                     self.start_timeout, interval=0.5, alive=self.procs)
        wait_for("ServiceAccount default/default",
                 lambda: core.read_namespaced_service_account("default", "default"),
                 self.start_timeout, interval=0.5, alive=self.procs)

    def _start_node_agent(self) -> None:
        from kubernetes import client

        port = free_port()
        k, n = self.pki, self.node
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent)]
            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self._spawn("node-agent", [
            sys.executable, "-m", "devcluster.node_agent",
            f"--kubeconfig={self.kubeconfig}", f"--state-dir={self.workdir / 'node'}",
            f"--node-name={n.name}", f"--cpu={n.cpu}", f"--memory={n.memory}",
            f"--pods={n.pods}", f"--port={port}", f"--container-log-max-size={n.container_log_max_size}",
            f"--tls-cert={k.kubelet.cert}", f"--tls-key={k.kubelet.key}",
            f"--client-ca={k.ca.cert}",
        ], env=env)
        core = client.CoreV1Api(self.api_client())

        def node_ready() -> bool:
            node = core.read_node(n.name)
            return any(c.type == "Ready" and c.status == "True"
                       for c in node.status.conditions or [])

        wait_for(f"Node {n.name} Ready", node_ready, 60, interval=0.5, alive=self.procs)

    # ------------------------------------------------------------------- use
    def api_client(self):
        """A fresh ``kubernetes.client.ApiClient`` for the admin user."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def apiserver_cpu_profile(self, seconds: float) -> bytes:
        """A CPU profile of the API server over the next ``seconds`` (``go tool pprof`` reads it); needs ``profiling``."""
        url = f"{self.apiserver_url}/debug/pprof/profile?seconds={max(1, round(seconds))}"
        with urllib.request.urlopen(url, context=self._ssl(), timeout=seconds + 30) as resp:
            return resp.read()

    @contextlib.contextmanager
    def apiserver_down(self) -> Iterator[None]:
        """The API server killed for the block (as by a crash), then started again at the same address on
        the same etcd, so every client's kubeconfig still works.

        The controller-manager and the scheduler exit when they cannot renew their leader Lease for 10 s,
        as in any cluster, where the kubelet starts them again; here the components that exited are started
        again, and the block ends once both hold their Lease anew.
        """
        self.apiserver.popen.kill()
        self.apiserver.stop(grace=0)
        self.procs.remove(self.apiserver)
        try:
            yield
        finally:
            restarted = datetime.now(timezone.utc)
            bins = kube_bin_dir()
            self._start_apiserver(bins, port=self.apiserver_port)
            self._renew_or_restart(restarted, bins)

    def _renew_or_restart(self, since: datetime, bins: Path) -> None:
        """Wait until the controller-manager and the scheduler renewed their Leases after ``since``,
        starting again those that exited meanwhile."""
        from kubernetes import client

        coord = client.CoordinationV1Api(self.api_client())
        starts = {"kube-controller-manager": self._start_controller_manager, "kube-scheduler": self._start_scheduler}

        def settled() -> bool:
            renewed = 0
            for name, start in starts.items():
                proc = next(p for p in self.procs if p.name == name)
                if not proc.alive():
                    proc.stop(grace=0)
                    self.procs.remove(proc)
                    start(bins)
                    continue
                at = coord.read_namespaced_lease(name, "kube-system").spec.renew_time
                renewed += at is not None and at >= since
            return renewed == len(starts)

        wait_for("the controller-manager and the scheduler holding their Leases after the API server's restart",
                 settled, self.start_timeout, interval=0.5, alive=[self.apiserver])

    def running(self, name: str) -> bool:
        """Whether the component ``name`` (e.g. ``kube-controller-manager``) is running."""
        return any(p.name == name and p.alive() for p in self.procs)

    def check_alive(self) -> None:
        for p in self.procs:
            p.check()

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stop components in reverse start order (agent first, etcd last)."""
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _get(url: str, ctx: ssl.SSLContext | None = None) -> bytes:
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        return r.read().strip()


def temp_cluster(**kw) -> Cluster:
    """A cluster in a fresh temporary directory (for tests)."""
    return Cluster(Path(tempfile.mkdtemp(prefix="devcluster-")), **kw)
