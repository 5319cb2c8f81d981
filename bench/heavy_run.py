"""One heavy run through each executor: the peak memory of every process it passes, and how long it takes.

    python -m bench.heavy_run [--executor local|kubernetes|both] [--output-mb 2048] [--log-mb 1024]

A job writing ``--output-mb`` MiB of outputs and ``--log-mb`` MiB of console log is submitted through the REST
API, run, collected, and all its result files (the log too) are downloaded, each checked against the size and
sha256 the listing gives.  The stack is started for the purpose, its caps (MAX_OUTPUT_MB, MAX_LOG_MB and, on
Kubernetes, the results PVC's size) raised to fit the run:

- ``local``: the simulation is :mod:`bench.fake_sumo` (SUMO_BINARY), which prints the log and writes one output
  file of exactly the sizes asked; it runs in the sandbox as any run does;
- ``kubernetes``: a dev cluster of its own (:func:`devcluster.cluster.temp_cluster`; pods are processes of the
  node agent running the venv's real ``sumo``) and the service with EXECUTOR=kubernetes and the admin's
  kubeconfig.  The scenario is square.zip with flows that never end, ``fcd-output`` to ``fcd.xml`` (the
  outputs) and ``emission-output`` to ``stdout`` (the console, whose long lines keep the count of log records
  low).  Their sizes per simulated second are measured by running the venv's sumo here at two short end times
  (:func:`plan_scenario`); the recording periods are chosen for the ratio of the two sizes and the end time for
  both to reach theirs.

Peak resident sets come from the kernel (VmHWM of ``/proc/<pid>/status``), read every 20 ms by a thread
(:class:`Peaks`) over three phases: the run (submission to COLLECTING), the collection (to SUCCEEDED) and the
download.  Each service process (API, workers, simulation workers or watcher, sweeper, and their children) has
its VmHWM reset (``/proc/<pid>/clear_refs`` = 5) at each phase's start; a process born during a phase (the
sandbox chain, a pod's containers: unpack, run script, collector, cleanup) is followed from its birth to its
end, so its figure is its life's peak as last read (a lower bound; one living less than 20 ms may be missed).
The collector's own reading of its VmHWM at its end (its manifest line, read from the node's log file) is
shown too.  Each process's peak is compared with 256 MiB; the simulation program itself (the tenant's) and the
dev cluster's node agent are shown, not judged.  Writes ``bench/out/heavy_run.json``; exits 0 whatever the
figures (1 when a run could not be measured).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx

from bench import common, fake_sumo

NAME = "heavy_run"
MiB = 1 << 20
TARGET_MIB = 256
SAMPLE_SECONDS = 0.02
POLL_SECONDS = 0.25
PHASES = ("run", "collection", "download")
JUDGED = ("service", "sandbox", "pod")  # kinds of processes that are ours; "tenant" and "dev cluster" are shown
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
#: Simulated end times of the calibration runs (past the warm-up of square.zip and its emergency flows).
CALIBRATION_ENDS = (1000, 3000)


# -- peak memory of every process ---------------------------------------------------------------------------
def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in _read(f"/proc/{pid}/status").splitlines():
            if line.startswith(field.encode() + b":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _argv(pid: int) -> list[str]:
    try:
        return [a.decode("utf-8", "replace") for a in _read(f"/proc/{pid}/cmdline").split(b"\0")[:-1]]
    except OSError:
        return []


def _ppid(pid: int) -> int | None:
    try:
        return int(_read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _program(argv: list[str]) -> str:
    name = os.path.basename(argv[0]) if argv else "?"
    if "-m" in argv[:-1]:
        return f"{name} -m {argv[argv.index('-m') + 1]}"
    script = next((a for a in argv[1:] if a.endswith(".py")), None)
    if name.startswith("python") and script:
        return f"{name} {os.path.basename(script)}"
    return name


def _is_simulation(argv: list[str]) -> bool:
    """SUMO, its wrapper script (``sh .../bin/sumo``), or bench.fake_sumo standing in for it."""
    return any("fake_sumo" in a for a in argv) or any(os.path.basename(a) == "sumo" for a in argv[:2])


def pod_label(argv: list[str]) -> tuple[str, str] | None:
    """What a process of a pod is, from its command line (None while its container is still being set up)."""
    from core.executors.kubernetes.pod_scripts import COLLECT_SCRIPT, RUN_SCRIPT, UNPACK_SCRIPT

    if _is_simulation(argv):
        return "sumo (the tenant's program)", "tenant"
    if len(argv) >= 3 and argv[1] == "-c" and os.path.basename(argv[0]).startswith("python"):
        return {UNPACK_SCRIPT: ("simulation pod: unpack (init container)", "pod"),
                RUN_SCRIPT: ("simulation pod: run script (main container)", "pod"),
                COLLECT_SCRIPT: ("collector pod", "pod")}.get(argv[2])
    if argv[:1] == ["rm"] and any(a.startswith("/results/") for a in argv):
        return "cleanup pod (rm)", "pod"
    return None


class Peaks(threading.Thread):
    """Peak VmHWM per process label and phase (see the module's docstring), sampled every SAMPLE_SECONDS."""

    def __init__(self, stack, node_agent: int | None = None) -> None:
        super().__init__(daemon=True, name="heavy-run-peaks")
        self.fixed: dict[int, tuple[str, str]] = {}  # processes that exist from the start: pid -> (label, kind)
        self.branch: dict[int, str] = {}             # every pid seen -> "svc:<root>", "pods" or "" (not ours)
        for name, proc in stack.procs.items():
            if proc.process is None or proc.process.poll() is not None:
                continue
            family = [proc.process.pid, *descendants(proc.process.pid)]
            for i, pid in enumerate(family):
                self.fixed[pid] = (name if i == 0 else f"{name}/{i}", "service")
                self.branch[pid] = f"svc:{name}"
        if node_agent is not None:
            self.fixed[node_agent] = ("node agent (the dev cluster's kubelet)", "dev cluster")
            self.branch[node_agent] = "pods"
        self.before_mib = {label: round(_status_kib(pid, "VmRSS") / 1024, 1) for pid, (label, _) in self.fixed.items()}
        self.lock = threading.Lock()
        self.phase: str | None = None
        self.peaks: dict[str, dict[str, int]] = {}  # phase -> label -> KiB
        self.kinds: dict[str, str] = {kind_label[0]: kind_label[1] for kind_label in self.fixed.values()}
        self.pids: dict[str, set[int]] = {}
        self.collector_logs: dict[int, Path] = {}
        self.collector_manifest_kib: int | None = None
        self.done = threading.Event()

    def new_phase(self, name: str) -> None:
        with self.lock:
            for pid, branch in self.branch.items():
                if branch:
                    try:
                        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
                    except OSError:
                        pass
            self.phase = name
            self.peaks.setdefault(name, {})

    def stop(self) -> None:
        self.done.set()
        self.join(10)

    def run(self) -> None:
        while not self.done.is_set():
            self._tick()
            self.done.wait(SAMPLE_SECONDS)
        self._tick()

    def _classify(self, pid: int, depth: int = 0) -> str:
        if pid in self.branch:
            return self.branch[pid]
        ppid = _ppid(pid)
        parent = self._classify(ppid, depth + 1) if ppid and ppid > 1 and depth < 64 else ""
        self.branch[pid] = parent
        return parent

    def _label(self, pid: int, branch: str) -> tuple[str, str] | None:
        if pid in self.fixed:
            return self.fixed[pid]
        argv = _argv(pid)
        if not argv:
            return None
        if branch == "pods":
            return pod_label(argv)
        root = branch[4:]
        if _is_simulation(argv):
            return "sumo (the tenant's program)", "tenant"
        if root == "simulations":
            return f"simulations: sandbox chain: {_program(argv)}", "sandbox"
        return f"{root}: {_program(argv)}", "service"

    def _tick(self) -> None:
        try:
            alive = {int(e) for e in os.listdir("/proc") if e.isdigit()}
        except OSError:
            return
        with self.lock:
            for pid in sorted(alive - self.branch.keys()):
                self._classify(pid)
            for pid in [p for p in self.branch if p not in alive]:
                del self.branch[pid]
                self.fixed.pop(pid, None)
            for pid in [p for p in self.collector_logs if p not in alive]:
                self._read_manifest(self.collector_logs.pop(pid))
            if self.phase is None:
                return
            peaks = self.peaks[self.phase]
            for pid, branch in self.branch.items():
                label_kind = self._label(pid, branch) if branch else None
                if label_kind is None:
                    continue
                label, kind = label_kind
                kib = _status_kib(pid, "VmHWM")
                if not kib:
                    continue
                if label == "collector pod" and pid not in self.collector_logs:
                    try:
                        self.collector_logs[pid] = Path(os.readlink(f"/proc/{pid}/root")).parent / "logs" / "collect.0.log"
                    except OSError:
                        pass
                peaks[label] = max(peaks.get(label, 0), kib)
                self.kinds[label] = kind
                self.pids.setdefault(label, set()).add(pid)

    def _read_manifest(self, log: Path) -> None:
        """The collector's own VmHWM at its end, from its manifest line (a CRI log record) on the node."""
        from core.executors.kubernetes.pod_scripts import MANIFEST_PREFIX

        try:
            with open(log, "rb") as fh:
                fh.seek(max(0, log.stat().st_size - (1 << 20)))
                lines = fh.read().splitlines()
        except OSError:
            return
        for line in reversed(lines):
            content = line.split(b" ", 3)[-1].decode("utf-8", "replace")
            if content.startswith(MANIFEST_PREFIX):
                try:
                    self.collector_manifest_kib = int(json.loads(content[len(MANIFEST_PREFIX):])["max_rss_kib"])
                except (ValueError, KeyError, TypeError):
                    pass
                return

    def figures(self) -> dict[str, dict]:
        out = {}
        for label in sorted(self.kinds, key=lambda s: (JUDGED.index(self.kinds[s]) if self.kinds[s] in JUDGED else 9, s)):
            by_phase = {ph: round(self.peaks[ph][label] / 1024, 1) for ph in PHASES if label in self.peaks.get(ph, {})}
            if not by_phase:
                continue
            peak = max(by_phase.values())
            kind = self.kinds[label]
            out[label] = {"kind": kind, "processes": len(self.pids.get(label, ())),
                          "rss_before_mib": self.before_mib.get(label), "peak_mib": by_phase, "peak_mib_overall": peak,
                          "verdict": ("met" if peak <= TARGET_MIB else "missed") if kind in JUDGED else "not judged"}
        if self.collector_manifest_kib:
            peak = round(self.collector_manifest_kib / 1024, 1)
            out["collector pod (its own VmHWM at its end)"] = {
                "kind": "pod", "processes": 1, "rss_before_mib": None, "peak_mib": {"collection": peak},
                "peak_mib_overall": peak, "verdict": "met" if peak <= TARGET_MIB else "missed"}
        return out


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (ppid := _ppid(int(entry))) is not None:
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo += children.get(p, [])
    return out


# -- the Kubernetes scenario: real SUMO writing the sizes asked ------------------------------------------------
def scenario_files(end: int, fcd_period: int, emission_period: int) -> dict[str, bytes]:
    """square.zip with flows that never end, fcd-output to fcd.xml and emission-output to the console."""
    with zipfile.ZipFile(common.ZIPS / "square.zip") as zf:
        net, routes = zf.read("square.net.xml"), zf.read("square.rou.xml")
    config = f"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
    <input><net-file value="square.net.xml"/><route-files value="square.rou.xml"/></input>
    <time><begin value="0"/><end value="{end}"/></time>
    <output><fcd-output value="fcd.xml"/><emission-output value="stdout"/></output>
    <processing><device.fcd.period value="{fcd_period}"/><device.emissions.period value="{emission_period}"/></processing>
    <report><no-step-log value="true"/></report>
</configuration>
"""
    return {"square.net.xml": net, "square.rou.xml": routes.replace(b'end="90000"', b'end="100000000"'),
            "square.sumocfg": config.encode()}


def zipped(files: dict[str, bytes]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _sizes_at(end: int, fcd_period: int, emission_period: int, workdir: Path) -> tuple[int, int]:
    """(fcd.xml, console) bytes of the scenario run here to ``end``, as the pod's run script starts sumo."""
    from core.executors.local import default_sumo_binary

    sumo = default_sumo_binary()
    d = workdir / f"calibrate-{fcd_period}-{emission_period}-{end}"
    d.mkdir(parents=True)
    for name, data in scenario_files(end, fcd_period, emission_period).items():
        (d / name).write_bytes(data)
    with open(d / "console", "wb") as out:
        subprocess.run([sumo, "-c", "square.sumocfg", "--statistic-output", "stats.xml", "--duration-log.statistics",
                        "true"], cwd=d, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=600,
                       env={**os.environ, "SUMO_HOME": str(Path(sumo).parent.parent)})
    sizes = (d / "fcd.xml").stat().st_size, (d / "console").stat().st_size
    shutil.rmtree(d)
    return sizes


def _lines(fcd_period: int, emission_period: int, workdir: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    """((bytes per simulated second, intercept) of fcd.xml, same of the console) from two short runs."""
    (t1, t2) = CALIBRATION_ENDS
    (f1, c1), (f2, c2) = (_sizes_at(t, fcd_period, emission_period, workdir) for t in (t1, t2))
    fs, cs = (f2 - f1) / (t2 - t1), (c2 - c1) / (t2 - t1)
    return (fs, f1 - fs * t1), (cs, c1 - cs * t1)


def plan_scenario(output_bytes: int, log_bytes: int) -> tuple[bytes, dict]:
    """The archive, and how it was sized: the periods that give the two outputs the asked ratio, the end
    time at which both reach their size, and the sizes predicted."""
    workdir = Path(tempfile.mkdtemp(prefix="sumo-k8-heavy-calibrate-"))
    try:
        (fs, _), (cs, _) = _lines(1, 1, workdir)
        natural, wanted = fs / cs, output_bytes / log_bytes
        fcd_period = max(1, round(natural / wanted)) if natural > wanted else 1
        emission_period = max(1, round(wanted / natural)) if natural <= wanted else 1
        (fs, fb), (cs, cb) = _lines(fcd_period, emission_period, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    end = math.ceil(max((output_bytes - fb) / fs, (log_bytes - cb) / cs, 1))
    plan = {"end_s": end, "fcd_period_s": fcd_period, "emission_period_s": emission_period,
            "fcd_bytes_per_s": round(fs, 1), "console_bytes_per_s": round(cs, 1),
            "predicted_output_bytes": int(fb + fs * end), "predicted_log_bytes": int(cb + cs * end)}
    return zipped(scenario_files(end, fcd_period, emission_period)), plan


# -- one job through the API ----------------------------------------------------------------------------------
def follow(http: httpx.Client, job_id: str, headers: dict, peaks: Peaks, t0: float, timeout: float) -> tuple[dict, dict]:
    """Polls the job until it is terminal; the first time (s since ``t0``) each status was seen. COLLECTING
    starts the collection phase."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(f"/jobs/{job_id}", headers=headers)
        r.raise_for_status()
        job = r.json()
        seen.setdefault(job["status"], round(time.perf_counter() - t0, 2))
        if job["status"] == "COLLECTING" and peaks.phase == "run":
            peaks.new_phase("collection")
        if job["status"] in TERMINAL:
            return job, seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:.0f} s (seen: {seen})")
        time.sleep(POLL_SECONDS)


def measure(s, tenant: dict, archive: bytes, timeout: float, node_agent: int | None = None) -> dict:
    headers = common.auth(tenant)
    http = httpx.Client(base_url=s.url, timeout=600)
    peaks = Peaks(s, node_agent)
    peaks.start()
    try:
        peaks.new_phase("run")
        t0 = time.perf_counter()
        r = http.post("/jobs", data=common.submit_form("heavy-run"), headers=headers,
                      files={"sumo_files": ("scenario.zip", archive, "application/zip")})
        r.raise_for_status()
        job_id = r.json()["job_id"]
        job, seen = follow(http, job_id, headers, peaks, t0, timeout)
        if job["status"] != "SUCCEEDED":
            raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
        peaks.new_phase("download")
        listing = http.get(f"/jobs/{job_id}/results", headers=headers).json()
        files, t1 = {}, time.perf_counter()
        for f in listing["files"]:
            size, digest = common.download(http, f["url"], headers)
            if (size, digest) != (f["size"], f["sha256"]):
                raise RuntimeError(f"{f['name']}: downloaded {size} bytes (sha256 {digest}), listed {f}")
            files[f["name"]] = {"size": size, "sha256": digest}
        download_s = time.perf_counter() - t1
    finally:
        peaks.stop()
    started, collecting, done = seen.get("RUNNING"), seen.get("COLLECTING"), seen["SUCCEEDED"]
    total = sum(f["size"] for f in files.values())
    seconds = {"submit_to_running": started, "run": round((collecting or done) - (started or 0), 2),
               "collection": round(done - collecting, 2) if collecting is not None else None,
               "download": round(download_s, 2), "submit_to_succeeded": done}
    return {"job_id": job_id, "statuses_seen_at_s": seen, "seconds": seconds, "files": files,
            "output_bytes": sum(f["size"] for n, f in files.items() if n != "sumo.log"),
            "log_bytes": files.get("sumo.log", {}).get("size", 0),
            "download_mib_per_s": round(total / MiB / download_s, 1) if download_s else None,
            "server_started_at": job.get("started_at"), "server_finished_at": job.get("finished_at"),
            "processes": peaks.figures()}


def run_local(output_bytes: int, log_bytes: int, timeout: float) -> dict:
    binary_dir = Path(tempfile.mkdtemp(prefix="sumo-k8-fake-sumo-"))
    env = {"SUMO_BINARY": str(fake_sumo.install(binary_dir)), "LOCAL_MAX_PARALLEL": "1",
           **common.run_caps(output_bytes, log_bytes)}
    try:
        with common.stack(f"{NAME}_local", env=env) as s:
            tenant = common.register_tenant(s)
            result = measure(s, tenant, fake_sumo.scenario({"log_bytes": log_bytes, "output_bytes": output_bytes}), timeout)
    finally:
        shutil.rmtree(binary_dir, ignore_errors=True)
    expected = hashlib.sha256(b"".join(fake_sumo.log_bytes(log_bytes))).hexdigest()
    if result["files"]["sumo.log"]["sha256"] != expected or result["files"][fake_sumo.OUTPUT]["size"] != output_bytes:
        raise RuntimeError(f"the results are not what fake_sumo wrote: {result['files']}")
    return {**result, "caps": env | {"SUMO_BINARY": "bench/fake_sumo.py"}}


def run_kubernetes(output_bytes: int, log_bytes: int, timeout: float) -> dict:
    from bench.kube_admission import register_and_wait
    from core.waits import free_port
    from devcluster.cluster import temp_cluster

    t0 = time.perf_counter()
    archive, plan = plan_scenario(output_bytes, log_bytes)
    plan["calibration_s"] = round(time.perf_counter() - t0, 1)
    print(f"[{NAME}] kubernetes scenario: {plan}", flush=True)
    expected = max(output_bytes, plan["predicted_output_bytes"]), max(log_bytes, plan["predicted_log_bytes"])
    cluster = temp_cluster()
    try:
        cluster.start()
        port = free_port()  # known before the start: the collector pods upload to it
        env = {"EXECUTOR": "kubernetes", "KUBECONFIG": str(cluster.kubeconfig), "PORT": str(port),
               "COLLECT_URL": f"http://127.0.0.1:{port}", "JOB_TTL_SECONDS": "5", "WATCH_RESYNC_SECONDS": "5",
               "RESULT_STORAGE_SIZE_GI": str(math.ceil(sum(expected) * 1.3 / (1 << 30)) + 1),
               **common.run_caps(*expected)}
        with common.stack(f"{NAME}_kubernetes", env=env) as s:
            tenant = register_and_wait(s, cluster.api_client(), 120)
            node_agent = next(p for p in cluster.procs if p.name == "node-agent").popen.pid
            result = measure(s, tenant, archive, timeout, node_agent)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.workdir, ignore_errors=True)
    return {**result, "scenario": plan, "caps": {k: v for k, v in env.items() if k.startswith(("MAX_", "RESULT_"))}}


# -- report ---------------------------------------------------------------------------------------------------
def print_run(executor: str, r: dict) -> None:
    if "error" in r:
        print(f"\n== {executor}: NOT MEASURED: {r['error']}")
        return
    rows = [("process", "kind", "n", "RSS before", *(f"peak: {p}" for p in PHASES), "peak", f"≤ {TARGET_MIB} MiB")]
    for label, p in r["processes"].items():
        rows.append((label, p["kind"], p["processes"], "-" if p["rss_before_mib"] is None else p["rss_before_mib"],
                     *(p["peak_mib"].get(ph, "-") for ph in PHASES), p["peak_mib_overall"], p["verdict"]))
    common.print_table(f"{executor} executor: outputs {r['output_bytes'] / MiB:.1f} MiB, log {r['log_bytes'] / MiB:.1f} "
                       f"MiB ({len(r['files'])} files); peak resident set (VmHWM) in MiB", rows)
    sec = r["seconds"]
    common.print_table(f"{executor} executor: wall times in s (statuses polled every {POLL_SECONDS} s)", [
        ("submit → RUNNING", "run (RUNNING → COLLECTING)", "collection (→ SUCCEEDED)", "download (all files)",
         "download MiB/s", "submit → SUCCEEDED"),
        (sec["submit_to_running"], sec["run"], sec["collection"], sec["download"], r["download_mib_per_s"],
         sec["submit_to_succeeded"])])
    print(f"  every judged process within {TARGET_MIB} MiB: {r['verdict']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=("local", "kubernetes", "both"), default="both")
    parser.add_argument("--output-mb", type=float, default=2048, help="outputs of the run, MiB")
    parser.add_argument("--log-mb", type=float, default=1024, help="console log of the run, MiB")
    parser.add_argument("--timeout", type=float, default=None, help="bound on the run and its collection, s "
                                                                     "(default: 600 + 2 per MiB)")
    args = parser.parse_args(argv)
    output_bytes, log_bytes = int(args.output_mb * MiB), int(args.log_mb * MiB)
    timeout = args.timeout or 600 + 2 * (args.output_mb + args.log_mb)
    started = common.machine()
    print(f"[{NAME}] {' '.join(['python -m bench.heavy_run', *(argv if argv is not None else sys.argv[1:])])}")
    print(f"[{NAME}] at start: {common.describe(started)}", flush=True)
    runs: dict[str, dict] = {}
    for executor in (("local", "kubernetes") if args.executor == "both" else (args.executor,)):
        steal0, t0 = common.steal_seconds(), time.perf_counter()
        try:
            r = (run_local if executor == "local" else run_kubernetes)(output_bytes, log_bytes, timeout)
            judged = [p["verdict"] for p in r["processes"].values() if p["verdict"] != "not judged"]
            r["verdict"] = "met" if judged and all(v == "met" for v in judged) else "missed"
        except Exception as exc:  # noqa: BLE001 — reported; the other executor still runs
            r = {"error": f"{type(exc).__name__}: {exc}"}
        steal1 = common.steal_seconds()
        r["wall_s_with_stack_start"] = round(time.perf_counter() - t0, 1)
        r["steal_s"] = round(steal1 - steal0, 1) if steal0 is not None and steal1 is not None else None
        r["load_average_after"] = common.load_average()
        runs[executor] = r
        print_run(executor, r)
    result = {"benchmark": NAME, "machine": started, "output_mib": args.output_mb, "log_mib": args.log_mb,
              "target_mib": TARGET_MIB, "runs": runs, "machine_after": common.machine()}
    print(f"[{NAME}] at the end: {common.describe(result['machine_after'])}")
    common.write_result(NAME, result)
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(1 if any("error" in r for r in outcome["runs"].values()) else 0)
