"""A minimal process-based "kubelet" for the dev cluster.

* registers Node ``--node-name`` (capacity from flags, InternalIP 127.0.0.1,
  Ready, kubelet port in ``status.daemonEndpoints``) and heartbeats through a
  Lease in ``kube-node-lease`` plus periodic Node status updates, so the
  node-lifecycle controller keeps it Ready;
* watches pods with ``spec.nodeName`` = this node and runs each one
  (init containers in order, then containers in parallel) through
  :mod:`devcluster.podrun`, honouring ``restartPolicy`` and
  ``activeDeadlineSeconds``;
* reports pod status: phase, conditions, (init)container statuses with exit
  codes, reasons, start/finish times, restart counts;
* pulls no images (a container runs its command on this machine), but an
  image from a registry under ``.invalid`` fails to pull as on a real node
  (:func:`pull_error`): the container waits in ``ErrImagePull`` /
  ``ImagePullBackOff`` until the pod is deleted or overruns its deadline;
* honours deletion: SIGTERM, SIGKILL after the pod's grace period, final
  status, then removes the object with a grace-0 delete;
* serves ``/containerLogs`` over HTTPS (:mod:`devcluster.logserver`), the
  logs written and rotated as a kubelet does (``--container-log-max-size``,
  :mod:`devcluster.containerlog`);
* reports each container's termination message (its ``terminationMessagePath``);
* enforces no NetworkPolicy (pods share the host's network) and no resource
  limit (no cgroups): a pod's memory or ephemeral storage is not capped here;
* binds PersistentVolumeClaims to per-claim host directories
  (:mod:`devcluster.pvc_binder`), since no volume controller runs.

Run: ``python -m devcluster.node_agent --kubeconfig ... --state-dir ...``
(normally started by :class:`devcluster.cluster.Cluster`).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import platform
import signal
import sys
import threading
import time
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from . import logserver, memcg, pvc_binder
from .containerlog import parse_size
from .podrun import Attempt, PodRuntime, now
from .toolwrappers import make_tool_wrappers

log = logging.getLogger("node-agent")
KUBE_VERSION = "v1.34.4"
TERMINAL = ("Succeeded", "Failed")
MERGE = "application/merge-patch+json"
#: The kubelet's image pull back-off: 10 s, doubling, at most 300 s.
PULL_BACKOFF_S, PULL_BACKOFF_MAX_S = 10.0, 300.0


def pull_error(image: str | None) -> str | None:
    """Why ``image`` cannot be pulled, or None when it can.

    The agent has every image (it runs commands, not images) except those of a
    registry under the ``.invalid`` top-level domain, which never resolves
    (RFC 2606) and so fails for a real kubelet too: a test gets a genuine
    ``ErrImagePull`` by naming e.g. ``registry.invalid/sumo:1``.
    """
    first, _, rest = (image or "").partition("/")
    if not rest or not ("." in first or ":" in first):
        return None  # no registry host: Docker Hub
    host = first.split(":")[0]
    return f"dial tcp: lookup {host}: no such host" if host.endswith(".invalid") else None


def micro_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PodWorker(threading.Thread):
    """Runs one pod to completion (or deletion) and reports its status."""

    def __init__(self, agent: "NodeAgent", pod):
        super().__init__(name=f"pod-{pod.metadata.namespace}/{pod.metadata.name}", daemon=True)
        self.agent, self.pod = agent, pod
        self.key = (pod.metadata.namespace, pod.metadata.name)
        self.rt = PodRuntime(pod, agent.state_dir, agent.core, agent.tools_dir, agent.venv,
                             parse_size(agent.args.container_log_max_size), agent.args.container_log_max_files)
        self.attempts: dict[str, list[Attempt]] = {}
        self.delete_grace: float | None = None
        self.wake = threading.Event()
        self.started_at = now()
        self.phase, self.reason, self.message = "Pending", None, None
        self.initialized = False
        self.pulling: dict[str, tuple[str, str]] = {}  # container -> (waiting reason, message) of a failed pull
        self._last_status = None
        self._transitions: dict[str, tuple[str, str]] = {}  # condition type -> (status, lastTransitionTime)

    # ------------------------------------------------------------ control
    def request_delete(self, grace: float) -> None:
        self.delete_grace = grace if self.delete_grace is None else min(grace, self.delete_grace)
        self.wake.set()

    def _deadline_passed(self) -> bool:
        ads = self.pod.spec.active_deadline_seconds
        return bool(ads) and time.monotonic() - self._t0 > ads

    def _interrupted(self, live: list[Attempt]) -> bool:
        """Kill running containers if the pod is being deleted or overran."""
        if self.delete_grace is not None:
            self.rt.kill(live, self.delete_grace)
            return True
        if self._deadline_passed():
            self.rt.kill(live, 0, reason="DeadlineExceeded")
            self.phase, self.reason = "Failed", "DeadlineExceeded"
            self.message = (f"Pod was active on the node longer than the specified "
                            f"deadline ({self.pod.spec.active_deadline_seconds}s)")
            return True
        return False

    def _latest(self) -> list[Attempt]:
        return [v[-1] for v in self.attempts.values() if v]

    # ---------------------------------------------------------------- run
    def run(self) -> None:
        self._t0 = time.monotonic()
        try:
            self._run()
        except Exception:  # noqa: BLE001 - never let a pod kill the agent
            log.exception("pod %s/%s failed in the agent", *self.key)
            self.phase, self.reason, self.message = "Failed", "NodeAgentError", "see node-agent log"
        if self.delete_grace is not None and self.phase not in TERMINAL:
            self.phase = "Failed"  # stopped by deletion before finishing, as kubelet reports
        # The final status must reach the API server (a kubelet keeps syncing it): while the server is away,
        # retry every second until it is posted, the pod is gone or the agent stops.
        while not self.report() and not self.agent.stop.wait(1):
            pass
        if self.delete_grace is not None:
            self.agent.finalize(self.pod)

    def _run(self) -> None:
        self.report()
        while True:  # volumes (e.g. a ConfigMap created later) - retry like kubelet
            try:
                self.rt.prepare_volumes()
                self.message = None
                break
            except ApiException as e:
                self.message = f"volume setup: {e.reason}"
                self.report()
                if self.wake.wait(2) and self.delete_grace is not None:
                    self.phase = "Failed"
                    return
        policy = self.pod.spec.restart_policy or "Always"
        for c in self.pod.spec.init_containers or []:
            if not self._run_to_completion(c, policy):
                return
        self.initialized = True
        self._run_main(self.pod.spec.containers, policy)

    def _pulled(self, c) -> bool:
        """The container's image pulled, as the kubelet does before its first start: an image that cannot be
        pulled leaves it waiting (``ErrImagePull``, then ``ImagePullBackOff`` until the next attempt, the
        back-off doubling) until the pod is deleted or overruns its deadline (False then)."""
        error = pull_error(c.image)
        if error is None:
            return True
        backoff, next_try, tried = PULL_BACKOFF_S, 0.0, 0.0
        while True:
            t = time.monotonic()
            if t >= next_try:
                self.pulling[c.name] = ("ErrImagePull", f'Failed to pull image "{c.image}": {error}')
                tried, next_try, backoff = t, t + backoff, min(2 * backoff, PULL_BACKOFF_MAX_S)
            elif t - tried >= 1:
                self.pulling[c.name] = ("ImagePullBackOff",
                                        f'Back-off pulling image "{c.image}": ErrImagePull: {error}')
            self.report()
            if self._interrupted([]):
                return False
            self.wake.wait(0.5)

    def _run_to_completion(self, c, policy: str) -> bool:
        if not self._pulled(c):
            return False
        restart = 0
        while True:
            a = self.rt.start(c, restart)
            self.attempts.setdefault(c.name, []).append(a)
            self.report()
            while not self.rt.wait(a, 0.2):
                if self._interrupted([a]):
                    return False
                self.report()
            self.report()
            if a.exit_code == 0:
                return True
            if policy == "Never":
                self.phase = "Failed"
                return False
            restart += 1
            if self.wake.wait(min(10, restart)) and self._interrupted([]):
                return False

    def _run_main(self, containers, policy: str) -> None:
        if not all(self._pulled(c) for c in containers):  # they start together, once every image is there
            return
        for c in containers:
            self.attempts.setdefault(c.name, []).append(self.rt.start(c, 0))
        self.phase = "Running"
        by_name = {c.name: c for c in containers}
        while True:
            live = [a for a in self._latest() if not a.done]
            if self._interrupted(live):
                break
            for a in live:
                self.rt.wait(a, 0)
            for a in self._latest():
                if a.done and (policy == "Always" or (policy == "OnFailure" and a.exit_code)):
                    self.report()
                    if self.wake.wait(1):  # deletion requested during the restart backoff
                        break
                    self.attempts[a.name].append(self.rt.start(by_name[a.name], a.restart + 1))
            if all(a.done for a in self._latest()):
                break
            self.report()
            self.wake.wait(0.2)
        if self.reason is None:  # not DeadlineExceeded
            self.phase = "Succeeded" if all(a.exit_code == 0 for a in self._latest()) else "Failed"

    # ------------------------------------------------------------- status
    def _cstatus(self, c, init: bool) -> dict:
        tries = self.attempts.get(c.name, [])
        st: dict = {"name": c.name, "image": c.image or "devcluster",
                    "imageID": "devcluster://local", "restartCount": max(len(tries) - 1, 0),
                    "ready": False, "started": False}
        if not tries and c.name in self.pulling:
            reason, message = self.pulling[c.name]
            st["state"] = {"waiting": {"reason": reason, "message": message}}
            return st
        if not tries:
            waiting = "PodInitializing" if init or (self.pod.spec.init_containers and not self.initialized) \
                else "ContainerCreating"
            st["state"] = {"waiting": {"reason": waiting}}
            return st
        a = tries[-1]
        st["containerID"] = f"devcluster://{self.pod.metadata.uid}/{c.name}/{a.restart}"
        st["state"] = self._state(a)
        if len(tries) > 1:
            st["lastState"] = self._state(tries[-2])
        st["started"] = not a.done
        st["ready"] = not a.done and not init
        return st

    def _state(self, a: Attempt) -> dict:
        if not a.done:
            return {"running": {"startedAt": a.started}}
        t = {"exitCode": a.exit_code, "reason": a.reason, "startedAt": a.started,
             "finishedAt": a.finished,
             "containerID": f"devcluster://{self.pod.metadata.uid}/{a.name}/{a.restart}"}
        if a.message:
            t["message"] = a.message
        return {"terminated": t}

    def _conditions(self, ready: bool) -> list[dict]:
        t = now()
        not_ready = None if ready else ("PodCompleted" if self.phase in TERMINAL else "ContainersNotReady")
        mine = {
            "PodReadyToStartContainers": ("True", None),
            "Initialized": ("True" if self.initialized else "False",
                            None if self.initialized else "ContainersNotInitialized"),
            "ContainersReady": ("True" if ready else "False", not_ready),
            "Ready": ("True" if ready else "False", not_ready),
        }
        old = {c.type: c for c in (self.pod.status.conditions or [])} if self.pod.status else {}
        out = []
        for typ, (status, reason) in mine.items():
            # Transition times are kept here (not read back from the server's copy, which lags our patches).
            prev = self._transitions.get(typ)
            if prev is None and old.get(typ) is not None and old[typ].last_transition_time:
                prev = (old[typ].status, old[typ].last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ"))
            if prev is None or prev[0] != status:
                prev = self._transitions[typ] = (status, t)
            c = {"type": typ, "status": status, "lastTransitionTime": prev[1]}
            if reason:
                c["reason"] = reason
            out.append(c)
        for typ, c in old.items():  # keep PodScheduled, DisruptionTarget, ...
            if typ not in mine:
                out.append(self.agent.api.sanitize_for_serialization(c))
        return out

    def status_body(self) -> dict:
        spec = self.pod.spec
        cs = [self._cstatus(c, False) for c in spec.containers]
        ready = self.phase == "Running" and all(s["ready"] for s in cs)
        st = {"phase": self.phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
              "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
              "startTime": self.started_at,
              "qosClass": self.pod.status.qos_class if self.pod.status else None,
              "conditions": self._conditions(ready), "containerStatuses": cs,
              "reason": self.reason, "message": self.message}
        if spec.init_containers:
            st["initContainerStatuses"] = [self._cstatus(c, True) for c in spec.init_containers]
        return {"status": st}

    def report(self) -> bool:
        """Post the pod's status if it changed; False when the API server could not take it (try again)."""
        body = self.status_body()
        if body == self._last_status:
            return True
        try:
            # The answer (the whole Pod) is not turned into a client model: that was most of the agent's CPU
            # per status update; the watch brings the Pod back anyway.
            resp = self.agent.core.patch_namespaced_pod_status(
                self.key[1], self.key[0], body, _content_type=MERGE, _preload_content=False)
            try:
                resp.data  # noqa: B018 — read, so the connection goes back to the pool
            finally:
                resp.release_conn()
            self._last_status = body
            return True
        except ApiException as e:
            if e.status == 404:
                return True  # the pod is gone: nothing left to report to
            log.warning("status update of %s/%s failed: %s", *self.key, e.reason)
        except Exception as e:  # noqa: BLE001
            log.warning("status update of %s/%s failed: %r", *self.key, e)
        return False

    def log_file(self, container: str, previous: bool):
        tries = self.attempts.get(container, [])
        idx = -2 if previous else -1
        if len(tries) < (2 if previous else 1):
            return None
        a = tries[idx]
        return a.log, (lambda: a.done)


class NodeAgent:
    """Registers the node, keeps it alive and runs the pods bound to it."""

    def __init__(self, a: argparse.Namespace):
        self.args = a
        self.node = a.node_name
        self.state_dir = Path(a.state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.venv = Path(a.venv or sys.prefix).resolve()
        self.tools_dir = self.state_dir / "tools"
        make_tool_wrappers(self.venv, self.tools_dir)
        self.api = config.new_client_from_config(config_file=a.kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        self.workers: dict[str, PodWorker] = {}
        self.finalizing: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()

    # ------------------------------------------------------------- node
    def node_status(self) -> dict:
        a = self.args
        res = {"cpu": a.cpu, "memory": a.memory, "pods": a.pods, "ephemeral-storage": "100Gi"}
        t = now()
        cond = [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "devcluster node agent is posting ready status"},
        ]
        for c in cond:
            c.update(lastHeartbeatTime=t, lastTransitionTime=self._t_start)
        return {"status": {
            "capacity": res, "allocatable": res, "conditions": cond,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": a.port}},
            "nodeInfo": {"machineID": "devcluster", "systemUUID": "devcluster",
                         "bootID": "devcluster", "kernelVersion": platform.release(),
                         "osImage": "devcluster node agent", "containerRuntimeVersion": "devcluster://0",
                         "kubeletVersion": KUBE_VERSION, "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64"},
        }}

    def register(self) -> None:
        self._t_start = now()
        body = {"metadata": {"name": self.node, "labels": {
            "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "devcluster"}}}
        try:
            self.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        self.core.patch_node_status(self.node, self.node_status(), _content_type=MERGE)
        self.renew_lease()

    def renew_lease(self) -> None:
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": micro_now()}
        try:
            self.coord.patch_namespaced_lease(self.node, "kube-node-lease", {"spec": spec},
                                              _content_type=MERGE)
        except ApiException as e:
            if e.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", {
                "metadata": {"name": self.node, "namespace": "kube-node-lease"}, "spec": spec})

    def heartbeat_loop(self) -> None:
        n = 0
        while not self.stop.wait(10):
            try:
                self.renew_lease()
                n += 1
                if n % 3 == 0:
                    self.core.patch_node_status(self.node, self.node_status(), _content_type=MERGE)
            except Exception as e:  # noqa: BLE001 - keep trying
                log.warning("heartbeat failed: %r", e)

    # ------------------------------------------------------------- pods
    def handle(self, pod) -> None:
        uid = pod.metadata.uid
        with self.lock:
            w = self.workers.get(uid)
            if pod.metadata.deletion_timestamp:
                if w and w.is_alive():
                    w.pod = pod
                    w.request_delete(pod.metadata.deletion_grace_period_seconds or 0)
                elif uid not in self.finalizing:
                    threading.Thread(target=self.finalize, args=(pod,), daemon=True).start()
                return
            if w is None and (pod.status is None or pod.status.phase not in TERMINAL):
                w = self.workers[uid] = PodWorker(self, pod)
                log.info("starting pod %s/%s", *w.key)
                w.start()
            elif w is not None and w.is_alive():
                w.pod = pod

    def gone(self, uid: str) -> None:
        with self.lock:
            w = self.workers.pop(uid, None)
            self.finalizing.discard(uid)
        if w:
            if w.is_alive():
                w.request_delete(0)
                w.join(30)
            w.rt.cleanup()

    def finalize(self, pod) -> None:
        """Remove a pod whose containers are stopped (grace-period 0 delete)."""
        with self.lock:
            self.finalizing.add(pod.metadata.uid)
        while True:  # until the API server took it (it may be away for a while) or the agent stops
            try:
                self.core.delete_namespaced_pod(
                    pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                    body=client.V1DeleteOptions(grace_period_seconds=0,
                                                preconditions=client.V1Preconditions(uid=pod.metadata.uid)))
                return
            except ApiException as e:
                if e.status in (404, 409):
                    return  # gone already, or another pod of that name now
                log.warning("delete of %s/%s failed: %s", pod.metadata.namespace, pod.metadata.name, e.reason)
            except Exception as e:  # noqa: BLE001
                log.warning("delete of %s/%s failed: %r", pod.metadata.namespace, pod.metadata.name, e)
            if self.stop.wait(1):
                return

    def lookup_log(self, ns: str, name: str, container: str, previous: bool):
        with self.lock:
            ws = [w for w in self.workers.values() if w.key == (ns, name)]
        for w in reversed(ws):
            found = w.log_file(container, previous)
            if found:
                return found
        return None

    def watch_loop(self) -> None:
        sel = f"spec.nodeName={self.node}"
        while not self.stop.is_set():
            try:
                lst = self.core.list_pod_for_all_namespaces(field_selector=sel)
                present = {p.metadata.uid for p in lst.items}
                for p in lst.items:
                    self.handle(p)
                for uid in set(self.workers) - present:
                    self.gone(uid)
                w = watch.Watch()
                for ev in w.stream(self.core.list_pod_for_all_namespaces, field_selector=sel,
                                   resource_version=lst.metadata.resource_version,
                                   timeout_seconds=30):
                    if self.stop.is_set():
                        w.stop()
                        break
                    if ev["type"] == "DELETED":
                        threading.Thread(target=self.gone, args=(ev["object"].metadata.uid,),
                                         daemon=True).start()
                    elif ev["type"] in ("ADDED", "MODIFIED"):
                        self.handle(ev["object"])
            except Exception as e:  # noqa: BLE001 - relist after any watch failure
                log.warning("pod watch interrupted (%r); relisting", e)
                self.stop.wait(1)

    def shutdown(self) -> None:
        """Kill all running pods (they are lost with the agent)."""
        self.stop.set()
        with self.lock:
            ws = list(self.workers.values())
        for w in ws:
            if w.is_alive():
                w.request_delete(0)
        for w in ws:
            w.join(10)

    def run(self) -> None:
        logserver.serve(self.args.port, Path(self.args.tls_cert), Path(self.args.tls_key),
                        Path(self.args.client_ca), self.lookup_log)
        self.register()
        log.info("node %s registered (kubelet port %d, venv %s)", self.node, self.args.port, self.venv)
        unlimited = memcg.available()
        if unlimited:
            log.warning("containers' memory limits are not enforced: %s", unlimited)
        threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=pvc_binder.bind_loop, args=(self.core, self.state_dir, self.stop),
                         name="pvc-binder", daemon=True).start()
        self.watch_loop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devcluster.node_agent", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--node-name", default="devnode")
    ap.add_argument("--cpu", default="4")
    ap.add_argument("--memory", default="8Gi")
    ap.add_argument("--pods", default="20")
    ap.add_argument("--port", type=int, required=True, help="HTTPS port for /containerLogs")
    ap.add_argument("--tls-cert", required=True)
    ap.add_argument("--tls-key", required=True)
    ap.add_argument("--client-ca", required=True, help="CA verifying the apiserver's client cert")
    ap.add_argument("--venv", help="venv whose bin/ (sumo...) pods get on PATH; default: this Python's")
    ap.add_argument("--container-log-max-size", default="10Mi",
                    help="the kubelet's containerLogMaxSize: a container's log file is rotated past it")
    ap.add_argument("--container-log-max-files", type=int, default=5,
                    help="the kubelet's containerLogMaxFiles: log files kept per container, the current one included")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s: %(message)s")
    agent = NodeAgent(a)

    def _term(*_):
        agent.stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    finally:
        agent.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
