"""Run one pod's containers as local processes (the node agent's "runtime").

Images are ignored: each container's ``command`` + ``args`` run on the host,
with the pod's ``env``/``envFrom`` and ``workingDir``, inside a private mount
namespace (``unshare --mount``; we are root) whose root is a recursive bind
of the host ``/`` with the pod's volumes bind-mounted at their mount paths.
That makes ``/work``, ``/results``... resolve per pod without touching the
host.  Because a volume at ``/work`` would hide ``/work/main/.venv``, the
Python venv holding ``sumo`` is bind-mounted at ``/mnt/devcluster/venv`` (on a
private tmpfs over ``/mnt``) and ``/mnt/devcluster/bin`` - first on PATH -
holds wrappers for its console scripts (``sumo``, ``netconvert``, ``python``...).

Volumes: configMap/secret (files from data/binaryData/items), emptyDir
(a per-pod dir), persistentVolumeClaim (the hostPath of the PV that
:mod:`devcluster.pvc_binder` bound it to: a dir per claim, shared by pods),
hostPath, projected service-account token (token via TokenRequest, ca.crt,
namespace).  Others become empty dirs.

Logs are written as a CRI runtime writes them (``<RFC3339Nano> <stream> <P|F>
<content>`` records) and rotated at containerLogMaxSize (:mod:`devcluster.containerlog`),
so the log server can honour ``timestamps``/``sinceTime``/``tailLines``/``limitBytes``
as the kubelet does.

A container with ``resources.limits.memory`` runs in a memory cgroup of that size (:mod:`devcluster.memcg`):
past it the kernel kills it and its state says ``OOMKilled``, as a kubelet's does.

Each container gets a private ``/dev`` (a tmpfs with the usual device nodes bound
in, as a container runtime makes one) and its ``terminationMessagePath`` bound to
a file of the pod's: what the container writes there (at most 4096 bytes) becomes
its terminated state's ``message``, as a kubelet reports it (with
``FallbackToLogsOnError``, the log's tail when it wrote nothing and failed).
"""
from __future__ import annotations

import base64
import datetime as _dt
import os
import shlex
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .containerlog import DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE, LogWriter
from .memcg import MemoryCgroup
from .toolwrappers import TOOLS_MNT

MOUNT, CHROOT, UNSHARE = (shutil.which(b) or f"/usr/bin/{b}" for b in ("mount", "chroot", "unshare"))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Device nodes bound into each container's private /dev.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: The kubelet's bounds on a termination message: per container, and the log tail it falls back to.
MESSAGE_MAX_BYTES, FALLBACK_LINES = 4096, 80


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_nano() -> str:
    from .containerlog import timestamp

    return timestamp()


@dataclass
class Attempt:
    """One run of one container."""

    name: str
    log: Path
    restart: int
    proc: subprocess.Popen | None = None
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    readers: list[threading.Thread] = field(default_factory=list)
    out: LogWriter | None = None
    termination: Path | None = None
    fallback_to_logs: bool = False
    cgroup: MemoryCgroup | None = None

    @property
    def done(self) -> bool:
        return self.exit_code is not None


class PodRuntime:
    """Materialises volumes and starts/stops container processes of a pod."""

    def __init__(self, pod, state_dir: Path, core_api, tools_dir: Path, venv: Path,
                 log_max_size: int = DEFAULT_MAX_SIZE, log_max_files: int = DEFAULT_MAX_FILES):
        self.pod, self.core, self.tools_dir, self.venv = pod, core_api, tools_dir, venv
        self.log_max_size, self.log_max_files = log_max_size, log_max_files
        self.uid = pod.metadata.uid
        self.dir = state_dir / "pods" / self.uid
        self.root = self.dir / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        (self.dir / "termination").mkdir(exist_ok=True)
        self.volumes: dict[str, Path] = {}

    # --------------------------------------------------------------- volumes
    def prepare_volumes(self) -> None:
        for v in self.pod.spec.volumes or []:
            d = self.dir / "volumes" / v.name
            if v.persistent_volume_claim:  # bound by pvc_binder to a hostPath PV
                claim = self.core.read_namespaced_persistent_volume_claim(
                    v.persistent_volume_claim.claim_name, self.pod.metadata.namespace)
                pv = self.core.read_persistent_volume(claim.spec.volume_name)
                d = Path(pv.spec.host_path.path) if pv.spec.host_path else self.dir / "volumes" / v.name
                d.mkdir(parents=True, exist_ok=True)
            elif v.host_path:
                d = Path(v.host_path.path)
                if v.host_path.type in (None, "", "DirectoryOrCreate"):
                    d.mkdir(parents=True, exist_ok=True)
            elif v.config_map:
                cm = self._get(self.core.read_namespaced_config_map, v.config_map.name,
                               v.config_map.optional)
                data = {**(cm.data or {}), **{k: base64.b64decode(x)
                                              for k, x in (cm.binary_data or {}).items()}} if cm else {}
                self._write_files(d, data, v.config_map.items, v.config_map.default_mode)
            elif v.secret:
                s = self._get(self.core.read_namespaced_secret, v.secret.secret_name,
                              v.secret.optional)
                data = {k: base64.b64decode(x) for k, x in ((s.data if s else None) or {}).items()}
                self._write_files(d, data, v.secret.items, v.secret.default_mode)
            elif v.projected:
                self._projected(d, v.projected)
            else:  # emptyDir and anything unsupported
                d.mkdir(parents=True, exist_ok=True)
            self.volumes[v.name] = d

    def _get(self, fn, name, optional):
        from kubernetes.client.rest import ApiException

        try:
            return fn(name, self.pod.metadata.namespace)
        except ApiException as e:
            if e.status == 404 and optional:
                return None
            raise

    @staticmethod
    def _write_files(d: Path, data: dict, items, mode) -> None:
        d.mkdir(parents=True, exist_ok=True)
        pairs = [(i.key, i.path, i.mode) for i in items] if items else [(k, k, None) for k in data]
        for key, rel, m in pairs:
            if key not in data:
                continue
            f = d / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            val = data[key]
            f.write_bytes(val if isinstance(val, bytes) else val.encode())
            f.chmod(m or mode or 0o644)

    def _projected(self, d: Path, proj) -> None:
        d.mkdir(parents=True, exist_ok=True)
        for src in proj.sources or []:
            try:
                if src.service_account_token:
                    from kubernetes import client

                    tr = self.core.create_namespaced_service_account_token(
                        self.pod.spec.service_account_name or "default",
                        self.pod.metadata.namespace,
                        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
                            audiences=[],
                            expiration_seconds=src.service_account_token.expiration_seconds or 3600,
                            bound_object_ref=client.V1BoundObjectReference(
                                kind="Pod", api_version="v1", name=self.pod.metadata.name,
                                uid=self.uid))))
                    (d / (src.service_account_token.path or "token")).write_text(tr.status.token)
                elif src.config_map:
                    cm = self._get(self.core.read_namespaced_config_map, src.config_map.name, True)
                    self._write_files(d, (cm.data or {}) if cm else {}, src.config_map.items, None)
                elif src.downward_api:
                    for it in src.downward_api.items or []:
                        if it.field_ref and it.field_ref.field_path == "metadata.namespace":
                            (d / it.path).write_text(self.pod.metadata.namespace)
            except Exception:  # noqa: BLE001 - best effort, like an optional source
                pass

    # ----------------------------------------------------------------- env
    def container_env(self, c) -> dict[str, str]:
        env: dict[str, str] = {}
        for ef in c.env_from or []:
            pre = ef.prefix or ""
            if ef.config_map_ref:
                cm = self._get(self.core.read_namespaced_config_map, ef.config_map_ref.name,
                               ef.config_map_ref.optional)
                env.update({pre + k: v for k, v in ((cm.data if cm else None) or {}).items()})
            if ef.secret_ref:
                s = self._get(self.core.read_namespaced_secret, ef.secret_ref.name,
                              ef.secret_ref.optional)
                env.update({pre + k: base64.b64decode(v).decode()
                            for k, v in ((s.data if s else None) or {}).items()})
        for e in c.env or []:
            env[e.name] = self._env_value(e, env)
        env.setdefault("HOSTNAME", self.pod.metadata.name)
        env["PATH"] = f"{TOOLS_MNT}/bin:" + env.get("PATH", DEFAULT_PATH)
        env.setdefault("HOME", "/root")
        return env

    def _env_value(self, e, env: dict[str, str]) -> str:
        if e.value is not None:  # $(VAR) expansion of earlier variables
            out = e.value
            for k, v in env.items():
                out = out.replace(f"$({k})", v)
            return out
        vf = e.value_from
        if vf is None:
            return ""
        if vf.field_ref:
            p = vf.field_ref.field_path
            md = self.pod.metadata
            simple = {"metadata.name": md.name, "metadata.namespace": md.namespace,
                      "metadata.uid": md.uid, "spec.nodeName": self.pod.spec.node_name,
                      "spec.serviceAccountName": self.pod.spec.service_account_name,
                      "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}
            if p in simple:
                return simple[p] or ""
            if p.startswith("metadata.labels['"):
                return (md.labels or {}).get(p[17:-2], "")
            if p.startswith("metadata.annotations['"):
                return (md.annotations or {}).get(p[22:-2], "")
            return ""
        if vf.config_map_key_ref:
            r = vf.config_map_key_ref
            cm = self._get(self.core.read_namespaced_config_map, r.name, r.optional)
            return ((cm.data if cm else None) or {}).get(r.key, "")
        if vf.secret_key_ref:
            r = vf.secret_key_ref
            s = self._get(self.core.read_namespaced_secret, r.name, r.optional)
            raw = ((s.data if s else None) or {}).get(r.key)
            return base64.b64decode(raw).decode() if raw else ""
        return ""

    # ------------------------------------------------------------- process
    def launch_script(self, c, termination: Path | None = None, cgroup: MemoryCgroup | None = None) -> str:
        """Shell script run by ``unshare --mount``: join the container's memory cgroup, build the pod's view
        of the filesystem, then ``chroot`` into it and exec the container."""
        r = shlex.quote(str(self.root))
        lines = [
            "set -e",
            *([f"echo $$ > {shlex.quote(str(cgroup.procs))}"] if cgroup is not None else []),
            f"{MOUNT} --rbind / {r}",
            f"{MOUNT} -t tmpfs devcluster {r}/mnt",
            f"mkdir -p {r}{TOOLS_MNT}/venv {r}{TOOLS_MNT}/bin",
            f"{MOUNT} --bind {shlex.quote(str(self.venv))} {r}{TOOLS_MNT}/venv",
            f"{MOUNT} --bind {shlex.quote(str(self.tools_dir))} {r}{TOOLS_MNT}/bin",
            *self._private_dev(r),
        ]
        mounts = sorted(c.volume_mounts or [], key=lambda m: m.mount_path.rstrip("/").count("/"))
        for m in mounts:
            src = self.volumes.get(m.name)
            if src is None:
                continue
            if m.sub_path:
                src = src / m.sub_path
                if not src.exists():
                    src.mkdir(parents=True)
            # Resolve symlinks as the pod would see them (the pod root is a bind
            # of the host root): /var/run/secrets/... must land on <root>/run/...,
            # not follow the absolute /var/run -> /run link out of the pod root.
            tgt = shlex.quote(str(self.root) + os.path.realpath(m.mount_path))
            if src.is_dir():
                lines.append(f"mkdir -p {tgt}")
            else:
                lines.append(f"mkdir -p $(dirname {tgt}); [ -e {tgt} ] || touch {tgt}")
            lines.append(f"{MOUNT} --bind {shlex.quote(str(src))} {tgt}")
            if m.read_only:
                lines.append(f"{MOUNT} -o remount,bind,ro {tgt}")
        if termination is not None:
            lines += self._termination_mount(c, termination, mounts)
        argv = list(c.command or []) + list(c.args or [])
        wd = c.working_dir or "/"
        lines.append(
            f"exec {CHROOT} {r} /bin/sh -c 'cd \"$0\" && exec \"$@\"' "
            + " ".join(shlex.quote(x) for x in [wd, *argv]))
        return "\n".join(lines) + "\n"

    @staticmethod
    def _private_dev(r: str) -> list[str]:
        """A tmpfs over the pod's /dev with the usual nodes bound in: what the container writes there (its
        termination message) stays the pod's, never the host's /dev."""
        lines = [f"{MOUNT} -t tmpfs -o mode=755,size=1m devcluster-dev {r}/dev"]
        for n in DEVICES:
            lines += [f"touch {r}/dev/{n}", f"{MOUNT} --bind /dev/{n} {r}/dev/{n}"]
        lines += [f"mkdir -p {r}/dev/pts {r}/dev/shm {r}/dev/mqueue",
                  f"{MOUNT} --bind /dev/pts {r}/dev/pts",
                  f"{MOUNT} -t tmpfs -o mode=1777,size=64m devcluster-shm {r}/dev/shm",
                  f"ln -s /proc/self/fd {r}/dev/fd", f"ln -s /proc/self/fd/0 {r}/dev/stdin",
                  f"ln -s /proc/self/fd/1 {r}/dev/stdout", f"ln -s /proc/self/fd/2 {r}/dev/stderr",
                  f"ln -s pts/ptmx {r}/dev/ptmx"]
        return lines

    def _termination_mount(self, c, termination: Path, mounts) -> list[str]:
        """Bind the attempt's message file at the container's terminationMessagePath, when that lies in a
        directory of the pod's own (its /dev, or a volume): never a file created on the host."""
        path = os.path.normpath(c.termination_message_path or "/dev/termination-log")
        inside = [m.mount_path.rstrip("/") for m in mounts if self.volumes.get(m.name) is not None]
        if not (path.startswith("/dev/") or any(path.startswith(p + "/") for p in inside)):
            return []
        tgt = shlex.quote(str(self.root) + path)
        return [f"mkdir -p $(dirname {tgt}); [ -e {tgt} ] || touch {tgt}",
                f"{MOUNT} --bind {shlex.quote(str(termination))} {tgt}"]

    def start(self, c, restart: int) -> Attempt:
        """Start container ``c`` (a V1Container) and its log readers."""
        a = Attempt(c.name, self.dir / "logs" / f"{c.name}.{restart}.log", restart)
        a.log.touch()
        a.termination = self.dir / "termination" / f"{c.name}.{restart}"
        a.termination.touch()
        a.termination.chmod(0o666)  # the container may run as any user
        a.fallback_to_logs = c.termination_message_policy == "FallbackToLogsOnError"
        try:
            env = self.container_env(c)
            if not (c.command or c.args):
                raise ValueError("container has no command/args (images are not run)")
            a.cgroup = self._memory_cgroup(c, restart)
            script = self.dir / f"{c.name}.sh"
            script.write_text(self.launch_script(c, a.termination, a.cgroup))
            a.proc = subprocess.Popen(
                [UNSHARE, "--mount", "--propagation", "private", "/bin/sh", str(script)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, start_new_session=True)
        except Exception as exc:  # noqa: BLE001 - reported as a failed start
            a.started = a.finished = now()
            a.exit_code, a.reason, a.message = 128, "StartError", str(exc)
            return a
        a.started = now()
        out = a.out = LogWriter(a.log, self.log_max_size, self.log_max_files)
        for stream, pipe in (("stdout", a.proc.stdout), ("stderr", a.proc.stderr)):
            t = threading.Thread(target=out.pump, args=(pipe, stream), daemon=True)
            t.start()
            a.readers.append(t)
        return a

    def _memory_cgroup(self, c, restart: int) -> MemoryCgroup | None:
        """The container's memory cgroup, sized by its memory limit; None without a limit (or a machine
        that cannot limit memory: :func:`devcluster.memcg.available`)."""
        limit = ((c.resources.limits if c.resources else None) or {}).get("memory")
        if not limit:
            return None
        from kubernetes.utils.quantity import parse_quantity

        return MemoryCgroup.create(f"{self.uid}-{c.name}-{restart}", int(parse_quantity(limit)))

    def wait(self, a: Attempt, timeout: float | None) -> bool:
        """Wait for attempt ``a``; record its exit. True if it finished."""
        if a.done:
            return True
        try:
            rc = a.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        for t in a.readers:
            t.join(5)
        if a.out:
            a.out.close()
        a.finished = now()
        if a.cgroup is not None:
            if a.reason is None and rc != 0 and a.cgroup.oom_killed():
                a.reason = "OOMKilled"
            a.cgroup.remove()
        if a.reason is None:
            a.exit_code = rc if rc >= 0 else 128 - rc  # killed by signal N -> 128+N
            a.reason = "Completed" if rc == 0 else "Error"
        else:
            a.exit_code = rc if rc >= 0 else 128 - rc
        a.message = a.message or self._termination_message(a)
        return True

    @staticmethod
    def _termination_message(a: Attempt) -> str | None:
        """What the container wrote to its terminationMessagePath (its first 4096 bytes); with
        FallbackToLogsOnError and nothing written by a failed container, its log's last lines."""
        try:
            with open(a.termination, "rb") as fh:
                text = fh.read(MESSAGE_MAX_BYTES)
        except (OSError, TypeError):
            text = b""
        if not text.strip() and a.fallback_to_logs and a.exit_code:
            from .containerlog import parse_record

            lines = []
            with open(a.log, "rb") as fh:
                fh.seek(max(0, a.log.stat().st_size - 64 * MESSAGE_MAX_BYTES))
                for rec in fh.read().splitlines():
                    got = parse_record(rec)
                    if got:
                        lines.append(got[4] + (b"\n" if got[3] else b""))
            text = b"".join(lines[-FALLBACK_LINES:])[-2048:]
        return text.decode("utf-8", errors="replace") or None

    def kill(self, attempts: list[Attempt], grace: float, reason: str | None = None) -> None:
        """SIGTERM running attempts' process groups, SIGKILL after ``grace``."""
        live = [a for a in attempts if a.proc and not a.done]
        for a in live:
            a.reason = a.reason or reason
            _killpg(a.proc.pid, signal.SIGTERM)
        for a in live:
            try:
                a.proc.wait(max(grace, 0))
            except subprocess.TimeoutExpired:
                _killpg(a.proc.pid, signal.SIGKILL)
            self.wait(a, 10)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
