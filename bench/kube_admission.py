"""EXECUTOR=kubernetes on the real dev control plane: Job creation rate, and Job completion → API.

Starts the dev cluster (etcd, kube-apiserver, controller-manager, scheduler v1.34
and the process-based node agent: one node, 4 CPU / 8 Gi / 20 pods) and the whole
service with ``EXECUTOR=kubernetes``, calling the API server as its Deployment does
(the ServiceAccount of ``k8s/rbac.yaml`` with a bound token, RBAC deciding every
call; ``--as-admin``: the admin's client certificate, which skips RBAC); everything
goes through the REST API.  The
benchmark process runs its own list-then-watch of the ``batch/v1`` Jobs labelled
``app.kubernetes.io/managed-by=sumo-k8`` (simulation component) and records, per
Job, the wall-clock time it *observed* the Job appear and turn ``Complete``, next
to the Job's own ``metadata.creationTimestamp`` and ``Complete`` condition's
``lastTransitionTime`` (both second resolution).  All clocks are this machine's.

1. Completion → API (run first, on an idle node): M jobs of square.zip for a
   tenant with ``max_concurrent_jobs`` = 4, so they run 4 at a time.  Every job
   whose Job exists and that the API does not show terminal yet is polled with
   ``If-None-Match`` (one client thread, a round every ~10 ms).  Latency = first
   answer showing the run's end (COLLECTING, with outcome SUCCEEDED) − this process's watch seeing the Job ``Complete``
   (primary); − ``lastTransitionTime`` is reported too (it is truncated to the
   second, so it reads up to 1 s high).
2. Admission throughput, queued → Kubernetes Jobs created (the issue's figure):
   a tenant gets a holder job (``--holder-cpu`` 8, above the node's 4 CPUs: never
   scheduled, never done) that fills its ``max_cpu``; N jobs are then submitted
   and stay QUEUED behind it (``max_concurrent_jobs`` and ``max_memory_gi`` are
   N + 1 from the start, so the ResourceQuota's pod and ConfigMap counts already
   fit them all; only its cpu changes at the release).  Once all N are QUEUED in
   the API, the control queues are drained (``/admin/queues``) and the machine's
   CPU use stays under ``--idle-cpu-percent``, one ``PATCH /auth/tenants/{id}``
   raises ``max_cpu`` and the clock starts just before it (the PATCH reconciles
   the tenant: its ResourceQuota takes the new cpu, and once the quota controller
   applied it an admission pass runs; the figure includes that reconcile).  Rate = N / (time this process's watch observed the N-th Job
   − PATCH sent); also from the first ``admitted_at``, by ``creationTimestamp``s,
   and per job admitted_at → its Job observed; CPU seconds per process over the
   release.  Most pods stay Pending (one small node): Job objects are created
   regardless.  ``--burst-cpu 8`` keeps every released pod unschedulable, so the
   node agent starts no pods and the figure is the control path alone.  The
   release starts once the completion phase's Jobs and pods are gone (TTL
   deletions, cleanup Jobs, garbage collection; bounded by ``--settle-timeout``).
   Secondary, with ``--submit-burst`` (after the release, its own tenant): the
   earlier figure, N jobs submitted by 16 concurrent clients *while* admission
   and Job creation run, rate from the first ``admitted_at`` and from the first
   submission; it is capped by the submissions competing for the same CPUs.
3. Where the time goes: the two API calls ``KubernetesExecutor.start`` makes per
   job (create the Job, create its input ConfigMap), timed one at a time right
   after the release, CPU seconds per process (the node agent also alone,
   without the pods it runs), and the API server's requests during the release
   by verb, resource and code (its ``apiserver_request_total``; every client).

A job that never turns terminal (no progress for ``--stall-timeout``) is reported
with its pods and whether its input ConfigMap exists, and left out of the figures.

    python -m bench.kube_admission [--jobs 100] [--runs 30] [--run-concurrency 4] [--burst-cpu 1] [--submit-burst]
                                   [--as-admin] [--apiserver-profile PATH]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

from bench import common
from core.waits import free_port
from bench.submit_throughput import drain_queues

NAME = "kube_admission"
TARGET_RATE = 50.0    # Jobs/s
TARGET_P99_MS = 1000  # completion → API


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _api_ts(value: str | None) -> float | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


class JobWatch:
    """This process's own list-then-watch of the simulation Jobs: observation times per job id."""

    def __init__(self, api_client) -> None:
        from kubernetes import client

        from core.executors.kubernetes.manifests import COMPONENT, SELECTOR, SIMULATION

        self.batch = client.BatchV1Api(api_client)
        self.selector = f"{SELECTOR},{COMPONENT}={SIMULATION}"
        self.lock = threading.Lock()
        self.jobs: dict[str, dict] = {}   # job id -> {ns, seen, created, complete_seen, complete_ltt, failed}
        self.stop = threading.Event()
        self.errors = 0
        self.thread = threading.Thread(target=self._run, name="bench-job-watch", daemon=True)

    def start(self) -> "JobWatch":
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)

    def _handle(self, obj: dict, now: float) -> None:
        from core.executors.kubernetes.manifests import JOB_LABEL

        meta = obj.get("metadata") or {}
        job_id = (meta.get("labels") or {}).get(JOB_LABEL)
        if not job_id:
            return
        with self.lock:
            rec = self.jobs.get(job_id)
            if rec is None:
                rec = self.jobs[job_id] = {"ns": meta.get("namespace"), "seen": now,
                                           "created": _ts(meta.get("creationTimestamp")),
                                           "complete_seen": None, "complete_ltt": None, "failed": None,
                                           "finished_seen": None}
            st = obj.get("status") or {}
            if rec["finished_seen"] is None and (st.get("succeeded") or st.get("failed") or any(
                    c.get("status") == "True" and c.get("type") != "Suspended" for c in st.get("conditions") or [])):
                rec["finished_seen"] = now  # pod done (SuccessCriteriaMet or so): fast polling starts here
            for cond in st.get("conditions") or []:
                if cond.get("status") != "True":
                    continue
                if cond.get("type") == "Complete" and rec["complete_seen"] is None:
                    rec["complete_seen"], rec["complete_ltt"] = now, _ts(cond.get("lastTransitionTime"))
                elif cond.get("type") == "Failed" and rec["failed"] is None:
                    rec["failed"] = cond.get("reason") or "Failed"

    def _run(self) -> None:
        from kubernetes.client.rest import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        version = None
        while not self.stop.is_set():
            try:
                if version is None:
                    resp = self.batch.list_job_for_all_namespaces(label_selector=self.selector, _preload_content=False,
                                                                  _request_timeout=60)
                    body, now = json.loads(resp.data), time.time()
                    for obj in body.get("items") or []:
                        self._handle(obj, now)
                    version = body["metadata"]["resourceVersion"]
                resp = self.batch.list_job_for_all_namespaces(
                    label_selector=self.selector, watch=True, resource_version=version, allow_watch_bookmarks=True,
                    timeout_seconds=5, _preload_content=False, _request_timeout=(10, 20))
                try:
                    for line in iter_resp_lines(resp):
                        if not line.strip():
                            continue
                        now = time.time()
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._handle(obj, now)
                        if self.stop.is_set():
                            break
                finally:
                    resp.close()
                    resp.release_conn()
            except Exception:  # noqa: BLE001 — 410 Gone or a dropped connection: re-list
                self.errors += 1
                version = None
                self.stop.wait(0.5)

    def snapshot(self, namespace: str) -> dict[str, dict]:
        with self.lock:
            return {k: dict(v) for k, v in self.jobs.items() if v["ns"] == namespace}


# -- helpers ---------------------------------------------------------------------------------------
#: Where the ServiceAccounts of the service's processes live in production (k8s/rbac.yaml).
CONTROLLER_NAMESPACE = "sumo-k8-system"


def service_account_kubeconfigs(cluster, hours: float = 4.0) -> dict[str, Path]:
    """A kubeconfig per process of the service (api, workers, watcher, sweeper) for its own ServiceAccount,
    k8s/namespace.yaml and k8s/rbac.yaml applied first.

    The service then calls the API server as its Deployments do: bound tokens (the API server caches their
    check) and RBAC deciding every call; the admin's client certificate is checked on every request and
    ``system:masters`` skips RBAC, which is neither what production costs nor what it allows.
    """
    from kubernetes import client, utils

    from core.executors.kubernetes.manifests import CONTROLLER_ACCOUNTS

    api = cluster.api_client()
    for name in ("namespace.yaml", "rbac.yaml"):
        try:
            utils.create_from_yaml(api, str(common.ROOT / "k8s" / name))
        except utils.FailToCreateError as exc:  # a re-run on the same cluster: AlreadyExists is fine
            if any(e.status != 409 for e in exc.api_exceptions):
                raise
    request = {"spec": {"expirationSeconds": int(hours * 3600)}}
    core = client.CoreV1Api(api)
    return {process: cluster.token_kubeconfig(account, core.create_namespaced_service_account_token(
                account, CONTROLLER_NAMESPACE, request).status.token)
            for process, account in CONTROLLER_ACCOUNTS.items()}


def register_and_wait(s, cluster_api, timeout: float, **limits) -> dict:
    """Register a tenant and wait until its namespace's ResourceQuota is computed (quota admission ready)."""
    from kubernetes import client

    tenant = common.register_tenant(s, **limits)
    core = client.CoreV1Api(cluster_api)
    ns = tenant["namespace"]

    def ready():
        try:
            q = core.read_namespaced_resource_quota("sumo-quota", ns)
            sa = core.read_namespaced_service_account("sumo-runner", ns)
        except client.ApiException:
            return None
        return q.status is not None and set(q.status.hard or {}) == set(q.spec.hard or {}) and sa and q
    quota = common.wait_until(ready, timeout, f"ResourceQuota of {ns} computed", interval=0.2)
    tenant["quota_hard"] = dict(quota.spec.hard)
    return tenant


def failed_creates(cluster_api, namespace: str) -> dict:
    """FailedCreate Events of Jobs in ``namespace`` (e.g. pods refused by the ResourceQuota), by message start."""
    from kubernetes import client

    out: dict[str, int] = {}
    for ev in client.CoreV1Api(cluster_api).list_namespaced_event(namespace, field_selector="reason=FailedCreate").items:
        msg = ev.message or ""
        key = "exceeded quota" if "exceeded quota" in msg else msg[:80]
        out[key] = out.get(key, 0) + (ev.count or 1)
    return out


def list_jobs(c: httpx.Client) -> list[dict]:
    jobs, cursor = [], None
    while True:
        r = c.get("/jobs", params={"limit": 500, **({"cursor": cursor} if cursor else {})})
        r.raise_for_status()
        jobs += r.json()["jobs"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return jobs


async def _burst(url: str, tenant: dict, body: bytes, count: int, concurrency: int, timeout: float, cpu: int) -> dict:
    """``count`` POST /jobs from ``concurrency`` clients, as fast as they go (body encoded once)."""
    ids, errors, next_index = [], {}, 0
    template = httpx.Request("POST", url + "/jobs", data={**common.submit_form(), "cpu_request": str(cpu)},
                             files={"sumo_files": ("scenario.zip", body, "application/zip")})
    payload = template.read()
    headers = {**common.auth(tenant), "Content-Type": template.headers["Content-Type"]}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker():
            nonlocal next_index
            while next_index < count:
                next_index += 1
                r = await client.post("/jobs", content=payload, headers=headers)
                if r.status_code == 202:
                    ids.append(r.json()["job_id"])
                else:
                    key = f"HTTP {r.status_code}: {r.text[:120]}"
                    errors[key] = errors.get(key, 0) + 1

        t0 = time.time()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout)
        t1 = time.time()
    return {"ids": ids, "errors": errors, "first_submit": t0, "last_submit_done": t1}


def cpu_seconds(s, cluster) -> dict[str, float]:
    """CPU seconds used so far by each process of the stack and of the dev cluster."""
    import psutil

    from bench.submit_throughput import _tree, cpu_snapshot

    out = cpu_snapshot(s)
    for p in cluster.procs:
        total = 0.0
        for proc in _tree(p.popen.pid):
            try:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except Exception:  # noqa: BLE001 — exited meanwhile
                pass
        out[p.name] = total
        try:  # the process alone, without its children (for the node agent: the agent vs the pods it runs)
            t = psutil.Process(p.popen.pid).cpu_times()
            out[f"{p.name} (itself)"] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    stolen = common.steal_seconds()
    if stolen is not None:  # not a process: CPU time the hypervisor gave to other VMs while this one wanted it
        out["(stolen by the hypervisor)"] = stolen
    return out


CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
REQUEST_LINE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')


def api_requests(cluster) -> dict[str, float]:
    """The API server's request counters so far (its /metrics), by ``VERB resource[/subresource] code``."""
    resp = cluster.api_client().call_api("/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False)
    counts: dict[str, float] = {}
    for line in resp.data.decode().splitlines():
        m = REQUEST_LINE.match(line)
        if m:
            lab = dict(LABEL.findall(m["labels"]))
            key = f"{lab.get('verb')} {lab.get('resource')}{'/' + lab['subresource'] if lab.get('subresource') else ''} " \
                  f"{lab.get('code')}"
            counts[key] = counts.get(key, 0.0) + float(m["value"])
    return counts


def requests_between(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    grown = {k: round(v - before.get(k, 0.0)) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in grown.items() if v > 0), key=lambda kv: -kv[1]))


def cpu_per_job(cpu: dict[str, float], s, jobs: int, cpus: int) -> dict:
    """CPU milliseconds per released Job: the service's processes, the control plane's, and the rate the control
    plane's CPU alone would allow on ``cpus`` cores if the service cost nothing (it shares the cores here)."""
    names = set(s.procs) | {svc.name for svc in s.services}
    service = sum(v for k, v in cpu.items() if k in names)
    control = sum(cpu.get(k, 0.0) for k in CONTROL_PLANE)
    return {
        "service_ms": round(1000 * service / jobs, 1),
        "control_plane_ms": round(1000 * control / jobs, 1),
        "control_plane_alone_ceiling_per_s": round(cpus * 1000 / (1000 * control / jobs), 1) if control else None,
    }


# -- 1. completion → API ---------------------------------------------------------------------------
def measure_completion(s, cluster, watch: JobWatch, args) -> dict:
    tenant = register_and_wait(s, cluster.api_client(), 120, max_concurrent_jobs=args.run_concurrency,
                               max_cpu=args.run_concurrency, max_memory_gi=args.run_concurrency * 2)
    ns = tenant["namespace"]
    body = (common.ZIPS / "square.zip").read_bytes()
    print(f"[{NAME}] completion → API: {args.runs} jobs, tenant max_concurrent_jobs={args.run_concurrency}, "
          f"poll round every {args.poll_interval * 1000:g} ms", flush=True)
    seen_api: dict[str, float] = {}
    final: dict[str, str] = {}
    at_first_poll: set[str] = set()
    gaps: list[float] = []
    with httpx.Client(base_url=s.url, timeout=30, headers=common.auth(tenant)) as c:
        ids = []
        for _ in range(args.runs):
            r = c.post("/jobs", data=common.submit_form(), files={"sumo_files": ("scenario.zip", body, "application/zip")})
            r.raise_for_status()
            ids.append(r.json()["job_id"])
        etags: dict[str, str | None] = {}
        last_poll: dict[str, float] = {}
        deadline = time.monotonic() + args.run_timeout
        last_progress, stalled = time.monotonic(), []
        while len(final) < len(ids):
            if time.monotonic() > deadline or time.monotonic() - last_progress > args.stall_timeout:
                stalled = [j for j in ids if j not in final]  # reported, not waited for any longer
                print(f"[{NAME}] {len(stalled)} of {len(ids)} jobs not terminal in the API "
                      f"(no progress for {time.monotonic() - last_progress:.0f} s): {stalled}", flush=True)
                break
            done_before = len(final)
            round_start = time.perf_counter()
            jobs = watch.snapshot(ns)
            for job_id in ids:
                rec = jobs.get(job_id)
                if job_id in final or rec is None:
                    continue  # not polled before its Job exists
                fast = rec["finished_seen"] is not None
                if not fast and time.time() - last_poll.get(job_id, 0) < args.slow_poll_interval:
                    continue  # a running job: polled every slow_poll_interval until its pod is done
                hdr = {"If-None-Match": etags[job_id]} if etags.get(job_id) else {}
                r = c.get(f"/jobs/{job_id}", headers=hdr)
                now = time.time()
                if fast and job_id in last_poll and last_poll[job_id] >= rec["finished_seen"]:
                    gaps.append(now - last_poll[job_id])
                last_poll[job_id] = now
                if r.status_code == 200:
                    etags[job_id] = r.headers.get("etag")
                    body = r.json()
                    if body["status"] in ("COLLECTING", "SUCCEEDED", "FAILED", "CANCELLED"):  # the run's end is visible
                        seen_api[job_id], final[job_id] = now, body["outcome"] or body["status"]
                        if rec["complete_seen"] is None or rec["complete_seen"] > now:
                            at_first_poll.add(job_id)  # the API was ahead of this process's watch
                elif r.status_code != 304:
                    r.raise_for_status()
            if len(final) > done_before:
                last_progress = time.monotonic()
            time.sleep(max(0.0, args.poll_interval - (time.perf_counter() - round_start)))
        # the watch may deliver the Complete event after the API showed it: give it a moment
        common.wait_until(lambda: all(watch.snapshot(ns).get(j, {}).get("complete_seen") or final.get(j) != "SUCCEEDED"
                                      for j in ids), 30, "this process's watch to see every Job Complete", 0.05)
        jobs = watch.snapshot(ns)
        lat_watch, lat_ltt, crit_to_complete = [], [], []
        for job_id in ids:
            rec = jobs.get(job_id) or {}
            if final.get(job_id) != "SUCCEEDED" or rec.get("complete_seen") is None:
                continue
            lat_watch.append(seen_api[job_id] - rec["complete_seen"])
            if rec.get("finished_seen") is not None:
                crit_to_complete.append(rec["complete_seen"] - rec["finished_seen"])
            if rec.get("complete_ltt") is not None:
                lat_ltt.append(seen_api[job_id] - rec["complete_ltt"])
        # wait for the results to be collected so the collectors do not overlap the admission burst
        def collected():
            return sum(1 for j in list_jobs(c) if j["status"] in ("SUCCEEDED", "FAILED", "CANCELLED")) >= len(ids) - len(stalled)
        try:
            common.wait_until(collected, args.collect_timeout, "results of the completion jobs collected", 0.5)
            collected_ok = True
        except TimeoutError:
            collected_ok = False
    statuses = {st: sum(1 for v in final.values() if v == st) for st in set(final.values())}
    stuck = {}
    if stalled:  # why: the Job's pods and whether its input ConfigMap exists
        from kubernetes import client as kclient

        core = kclient.CoreV1Api(cluster.api_client())
        cms = {cm.metadata.name for cm in core.list_namespaced_config_map(ns).items}
        for j in stalled:
            pods = core.list_namespaced_pod(ns, label_selector=f"sumo-k8/job-id={j}").items
            stuck[j] = {"job_exists": j in watch.snapshot(ns), "input_configmap_exists": f"sumo-{j}-input-0" in cms,
                        "pods": [f"{p.metadata.name}: {p.status.phase}" for p in pods]}
    return {"tenant_namespace": ns, "jobs": len(ids), "final_statuses": statuses, "not_terminal": stuck,
            "failed_create_events": failed_creates(cluster.api_client(), ns),
            "latency_vs_watch": common.summary_ms([max(0.0, x) for x in lat_watch]),
            "latency_vs_watch_raw_min_ms": round(min(lat_watch) * 1000, 2) if lat_watch else None,
            "latency_vs_last_transition_time": common.summary_ms(lat_ltt),
            "api_ahead_of_bench_watch": len(at_first_poll),
            "pod_done_to_complete_condition": common.summary_ms(crit_to_complete),
            "poll_gap": common.summary_ms(gaps), "results_collected_before_burst": collected_ok}


def settle_namespace(cluster, namespace: str, timeout: float) -> float | None:
    """Wait until ``namespace`` holds no Job and no pod (TTL deletions, cleanup Jobs and garbage collection of
    the completion phase done), so that the burst is not measured together with that aftermath.  Returns the
    seconds waited, or None if it did not settle within ``timeout`` (the burst then runs anyway)."""
    from kubernetes import client

    api = cluster.api_client()
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    t0 = time.monotonic()

    def quiet():
        return not batch.list_namespaced_job(namespace, limit=1).items and \
            not core.list_namespaced_pod(namespace, limit=1).items
    try:
        common.wait_until(quiet, timeout, f"no Job nor pod left in {namespace}", 0.5)
    except TimeoutError:
        print(f"[{NAME}] {namespace} still holds Jobs or pods after {timeout:.0f} s; measuring the burst anyway",
              flush=True)
        return None
    waited = time.monotonic() - t0
    print(f"[{NAME}] completion phase's Jobs and pods gone after {waited:.1f} s more", flush=True)
    return round(waited, 1)


# -- 2. admission throughput: queued → Kubernetes Jobs created -----------------------------------------
def settle_machine(idle_percent: float, timeout: float) -> dict:
    """Wait until the whole machine's CPU use stays under ``idle_percent`` (of all CPUs) for three 0.5 s samples
    in a row, bounded by ``timeout``.  Returns what was seen (the release is measured anyway if it never settles)."""
    import psutil

    t0, calm, samples = time.monotonic(), 0, []
    while time.monotonic() - t0 < timeout:
        samples.append(psutil.cpu_percent(interval=0.5))
        calm = calm + 1 if samples[-1] < idle_percent else 0
        if calm >= 3:
            break
    return {"settled": calm >= 3, "waited_s": round(time.monotonic() - t0, 1),
            "last_cpu_percent": samples[-3:], "threshold_percent": idle_percent}


def measure_queued_release(s, cluster, watch: JobWatch, args) -> dict:
    """N jobs QUEUED behind a holder job, then released at once by a PATCH raising the tenant's max_cpu.

    Every tenant limit is ≥ 1 and every job fits its tenant on its own (submission refuses the others), so the
    first job of an idle tenant is always admitted: it is the holder.  Its cpu_request (``--holder-cpu``, above
    the node's 4 CPUs) fills the tenant's max_cpu and is never schedulable, so it neither finishes nor frees
    the room while the N wait.  The hold is by CPU only: max_concurrent_jobs = N + 1 and max_memory_gi = N + 1
    from the start, so the ResourceQuota already allows every pod and input ConfigMap by count; the PATCH
    changes only its cpu (the quota controller applies that within ms; a pod created before gets a
    FailedCreate and is retried by the Job controller; Job objects, what is counted, are not quota-limited).
    """
    n = args.jobs
    holder_cpu = max(args.holder_cpu, args.burst_cpu)
    api = cluster.api_client()
    tenant = register_and_wait(s, api, 120, max_concurrent_jobs=n + 1, max_cpu=holder_cpu, max_memory_gi=n + 1)
    ns, admin = tenant["namespace"], {"X-Admin-Key": s.env["ADMIN_KEY"]}
    body = (common.ZIPS / "square.zip").read_bytes()
    print(f"[{NAME}] queued → created: holder job (cpu_request {holder_cpu}, never schedulable) + {n} jobs "
          f"(cpu_request {args.burst_cpu}) held by max_cpu={holder_cpu}; quota {tenant['quota_hard']}", flush=True)
    with httpx.Client(base_url=s.url, timeout=30, headers=common.auth(tenant)) as c:
        r = c.post("/jobs", data={**common.submit_form(), "cpu_request": str(holder_cpu)},
                   files={"sumo_files": ("scenario.zip", body, "application/zip")})
        r.raise_for_status()
        holder = r.json()["job_id"]
        common.wait_until(lambda: holder in watch.snapshot(ns), args.admit_timeout, "the holder's Job", 0.05)
        burst = asyncio.run(_burst(s.url, tenant, body, n, args.submit_concurrency, args.admit_timeout,
                                   args.burst_cpu))
        if burst["errors"]:
            raise RuntimeError(f"submissions refused: {burst['errors']}")
        ids = set(burst["ids"])

        def all_queued():
            rows = {j["job_id"]: j for j in list_jobs(c)}
            return all(rows[j]["status"] == "QUEUED" for j in ids) and rows[holder]["status"] != "QUEUED"
        common.wait_until(all_queued, args.admit_timeout, f"{n} jobs QUEUED behind the holder", 0.2)
        drained = drain_queues(s, args.settle_timeout)
        idle = settle_machine(args.idle_cpu_percent, args.settle_timeout)
        if ids & set(watch.snapshot(ns)):
            raise RuntimeError("a held job got a Kubernetes Job before the release")
        load = common.load_average()
        print(f"[{NAME}] {n} jobs QUEUED; control queues drained: {drained}; machine idle: {idle}; load {load}; "
              f"releasing", flush=True)
        requests0 = api_requests(cluster)
        cpu0 = cpu_seconds(s, cluster)
        with httpx.Client(base_url=s.url, timeout=30, headers=admin) as admin_client:
            # built before the clock starts: a client's construction (its TLS context) takes 50-80 ms here
            profile = _ApiserverProfile(cluster, args.apiserver_profile, args.apiserver_profile_seconds or n / 50 + 1)
            t_patch = time.time()
            r = admin_client.patch(f"/auth/tenants/{tenant['tenant_id']}",
                                   json={"max_cpu": holder_cpu + n * args.burst_cpu})
            t_patch_done = time.time()
        r.raise_for_status()
        common.wait_until(lambda: len(ids & set(watch.snapshot(ns))) >= len(ids) or None, args.admit_timeout,
                          f"{len(ids)} Kubernetes Jobs in {ns}", 0.02)
        cpu1 = cpu_seconds(s, cluster)
        requests1 = api_requests(cluster)
        profile.save()
        jobs = watch.snapshot(ns)
        rows = {j["job_id"]: j for j in list_jobs(c) if j["job_id"] in ids}
    admit_of = {j: _api_ts(rows[j]["admitted_at"]) for j in ids if rows[j]["admitted_at"]}
    admitted = sorted(admit_of.values())
    seen = sorted(jobs[j]["seen"] for j in ids)
    created = sorted(jobs[j]["created"] for j in ids)
    t_last = seen[-1]
    per_second: dict[int, int] = {}
    for ct in created:
        per_second[int(ct - created[0])] = per_second.get(int(ct - created[0]), 0) + 1
    span_ct = created[-1] - created[0]
    cpu = {k: round(cpu1.get(k, 0) - cpu0.get(k, 0), 2) for k in cpu1}
    return {
        "tenant_namespace": ns, "jobs": n, "cpu_request": args.burst_cpu, "holder_cpu_request": holder_cpu,
        "quota_hard_before_release": tenant["quota_hard"], "load_average_at_release": load,
        "control_queues_drained_before_release": drained, "machine_before_release": idle,
        "failed_create_events": failed_creates(api, ns),
        "patch_answer_s": round(t_patch_done - t_patch, 3),
        "patch_to_first_admitted_s": round(admitted[0] - t_patch, 3),
        "admitted_span_s": round(admitted[-1] - admitted[0], 3),
        "patch_to_first_job_s": round(seen[0] - t_patch, 3),
        "patch_to_last_job_s": round(t_last - t_patch, 3),
        "rate_from_patch_per_s": round(n / (t_last - t_patch), 1),
        "first_admitted_to_last_job_s": round(t_last - admitted[0], 3),
        "rate_from_first_admitted_per_s": round(n / (t_last - admitted[0]), 1),
        "first_to_last_job_observed_s": round(seen[-1] - seen[0], 3),
        "rate_first_to_last_job_observed_per_s": round((n - 1) / (seen[-1] - seen[0]), 1) if seen[-1] > seen[0] else None,
        "creation_timestamp_span_s": span_ct,
        "rate_by_creation_timestamp_per_s": round((n - 1) / span_ct, 1) if span_ct else None,
        "jobs_per_creation_second": [per_second.get(i, 0) for i in range(int(span_ct) + 1)],
        "admitted_to_job_observed": common.summary_ms([jobs[j]["seen"] - a for j, a in admit_of.items()]),
        "observed_minus_creation_timestamp": common.summary_ms([jobs[j]["seen"] - jobs[j]["created"] for j in ids]),
        "cpu_seconds_during_release": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
        "cpu_per_job_during_release": cpu_per_job(cpu, s, n, os.cpu_count() or 1),
        "api_requests_during_release": requests_between(requests0, requests1),
        "wall_s_during_release": round(t_last - t_patch, 3),
        "jobs_finished_during_release": sum(1 for j in ids if (jobs[j]["finished_seen"] or t_last + 1) <= t_last),
    }


class _ApiserverProfile:
    """With ``--apiserver-profile PATH``: a CPU profile of the API server from just before the release's PATCH.

    Taken in a thread (the profile endpoint answers when its ``seconds`` are over); ``save`` writes it once the
    release is measured and prints how to read it.  Without a path it does nothing.
    """

    def __init__(self, cluster, path: str | None, seconds: float) -> None:
        self.path, self.seconds, self.data, self.error = path, seconds, None, None
        self.thread = None
        if path:
            self.thread = threading.Thread(target=self._take, args=(cluster,), daemon=True)
            self.thread.start()

    def _take(self, cluster) -> None:
        try:
            self.data = cluster.apiserver_cpu_profile(self.seconds)
        except Exception as exc:  # noqa: BLE001 — reported by save(); the measured figures stand without it
            self.error = exc

    def save(self) -> None:
        if self.thread is None:
            return
        self.thread.join(self.seconds + 60)
        if self.data is None:
            print(f"[{NAME}] API server profile not taken: {self.error or 'timed out'}", flush=True)
            return
        Path(self.path).write_bytes(self.data)
        print(f"[{NAME}] API server CPU profile of the release's first {self.seconds:.0f} s -> {self.path} "
              f"(go tool pprof -top -cum {self.path})", flush=True)


# -- 2b. secondary: submissions while admitting (the earlier figure) ------------------------------------
def measure_submit_burst(s, cluster, watch: JobWatch, args) -> dict:
    """N jobs submitted by concurrent clients while admission and Job creation run (the figure measured before
    the queued release existed; capped by the submissions themselves, which compete for the same CPUs)."""
    tenant = register_and_wait(s, cluster.api_client(), 120, max_concurrent_jobs=args.jobs,
                               max_cpu=args.jobs * args.burst_cpu, max_memory_gi=args.jobs)
    ns = tenant["namespace"]
    print(f"[{NAME}] secondary, submit while admitting: {args.jobs} jobs (cpu_request {args.burst_cpu}) from "
          f"{args.submit_concurrency} concurrent clients; "
          f"quota {tenant['quota_hard']}", flush=True)
    body = (common.ZIPS / "square.zip").read_bytes()
    cpu0 = cpu_seconds(s, cluster)
    burst = asyncio.run(_burst(s.url, tenant, body, args.jobs, args.submit_concurrency, args.admit_timeout,
                               args.burst_cpu))
    if burst["errors"]:
        raise RuntimeError(f"submissions refused: {burst['errors']}")
    ids = set(burst["ids"])
    common.wait_until(lambda: len(ids & set(watch.snapshot(ns))) >= len(ids) or None, args.admit_timeout,
                      f"{len(ids)} Kubernetes Jobs in {ns}", 0.02)
    cpu1 = cpu_seconds(s, cluster)
    jobs = watch.snapshot(ns)
    with httpx.Client(base_url=s.url, timeout=30, headers=common.auth(tenant)) as c:
        rows = {j["job_id"]: j for j in list_jobs(c) if j["job_id"] in ids}
    admitted = sorted(_api_ts(r["admitted_at"]) for r in rows.values() if r["admitted_at"])
    seen = sorted(jobs[j]["seen"] for j in ids)
    created = sorted(jobs[j]["created"] for j in ids)
    n = len(ids)
    t_admit0, t_sub0, t_last = admitted[0], burst["first_submit"], seen[-1]
    per_second: dict[int, int] = {}
    for ct in created:
        per_second[int(ct - created[0])] = per_second.get(int(ct - created[0]), 0) + 1
    # per job: admitted_at -> its Job observed
    admit_of = {j: _api_ts(rows[j]["admitted_at"]) for j in ids if rows[j]["admitted_at"]}
    admit_to_job = [jobs[j]["seen"] - a for j, a in admit_of.items()]
    cpu = {k: round(cpu1.get(k, 0) - cpu0.get(k, 0), 2) for k in cpu1}
    span_ct = created[-1] - created[0]
    return {
        "tenant_namespace": ns, "jobs": n, "submit_concurrency": args.submit_concurrency, "cpu_request": args.burst_cpu,
        "failed_create_events": failed_creates(cluster.api_client(), ns),
        "quota_hard": tenant["quota_hard"],
        "submit_s": round(burst["last_submit_done"] - t_sub0, 3),
        "submit_per_s": round(n / (burst["last_submit_done"] - t_sub0), 1),
        "first_submit_to_first_admitted_s": round(t_admit0 - t_sub0, 3),
        "admitted_span_s": round(admitted[-1] - admitted[0], 3),
        "first_admitted_to_first_job_s": round(seen[0] - t_admit0, 3),
        "first_admitted_to_last_job_s": round(t_last - t_admit0, 3),
        "rate_from_first_admitted_per_s": round(n / (t_last - t_admit0), 1),
        "first_submit_to_last_job_s": round(t_last - t_sub0, 3),
        "rate_from_first_submit_per_s": round(n / (t_last - t_sub0), 1),
        "first_to_last_job_observed_s": round(seen[-1] - seen[0], 3),
        "rate_first_to_last_job_observed_per_s": round((n - 1) / (seen[-1] - seen[0]), 1) if seen[-1] > seen[0] else None,
        "creation_timestamp_span_s": span_ct,
        "rate_by_creation_timestamp_per_s": round((n - 1) / span_ct, 1) if span_ct else None,
        "jobs_per_creation_second": [per_second.get(i, 0) for i in range(int(span_ct) + 1)],
        "admitted_to_job_observed": common.summary_ms(admit_to_job),
        "observed_minus_creation_timestamp": common.summary_ms([jobs[j]["seen"] - jobs[j]["created"] for j in ids]),
        "cpu_seconds_during_burst": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
        "wall_s_during_burst": round(t_last - t_sub0, 3),
        "burst_jobs_finished_during_burst": sum(1 for j in ids if (jobs[j]["finished_seen"] or t_last + 1) <= t_last),
    }


# -- where the time goes: the executor's Kubernetes calls, one at a time ---------------------------------
def probe_start_calls(cluster, namespace: str, n: int) -> dict:
    """The API calls ``KubernetesExecutor.start`` makes per job (create the Job → create its input ConfigMap),
    timed sequentially with the same Python client on the idle-ish cluster.  The probe Jobs carry no sumo-k8
    labels nor finalizer (the service ignores them) and, unlike the service's, are created suspended (no pods)."""
    import types

    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from core.executors.kubernetes import manifests as m

    api = cluster.api_client()
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    archive = (common.ZIPS / "square.zip").read_bytes()
    steps: dict[str, list[float]] = {"create Job": [], "create ConfigMap": [], "total": []}
    conflicts = 0
    for i in range(n):
        spec = types.SimpleNamespace(job_id=f"probe-{i}", tenant_id="bench-probe", cpu_request=1, memory_gi=1,
                                     deadline_seconds=600)
        body = m.simulation_job(spec, image="probe", config_file="x.sumocfg", log_file=None, chunks=1,
                                backoff_limit=0, ttl_seconds=5, max_output_mb=64, max_log_mb=64, suspend=True)
        body["metadata"]["labels"] = body["spec"]["template"]["metadata"]["labels"] = {"bench": "probe"}
        body["metadata"].pop("finalizers", None)
        t1 = time.perf_counter()
        job = json.loads(batch.create_namespaced_job(namespace, body, _preload_content=False).data)
        t2 = time.perf_counter()
        cm = m.input_configmaps(spec, [archive], job["metadata"]["uid"])[0]
        cm["metadata"]["labels"] = {"bench": "probe"}
        for attempt in range(20):  # quota admission may answer 409 (ResourceQuota update conflict): retry
            try:
                core.create_namespaced_config_map(namespace, cm, _preload_content=False).data
                break
            except ApiException as exc:
                if exc.status != 409 or "resourcequotas" not in (exc.body or ""):
                    raise
                conflicts += 1
        t3 = time.perf_counter()
        for k, a, b in (("create Job", t1, t2), ("create ConfigMap", t2, t3), ("total", t1, t3)):
            steps[k].append(b - a)
    try:
        batch.delete_collection_namespaced_job(namespace, label_selector="bench=probe", propagation_policy="Background")
    except ApiException:
        pass
    return {**{k: common.summary_ms(v) for k, v in steps.items()}, "quota_conflicts_retried": conflicts}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100, help="N: jobs released at once (and of the --submit-burst)")
    ap.add_argument("--runs", type=int, default=30, help="M: jobs run to completion for the latency figure")
    ap.add_argument("--run-concurrency", type=int, default=4, help="max_concurrent_jobs of the completion tenant")
    ap.add_argument("--burst-cpu", type=int, default=1,
                    help="cpu_request of the released jobs; above the node's 4 CPUs no pod is ever scheduled, "
                         "so the node agent does no work during the measurement")
    ap.add_argument("--holder-cpu", type=int, default=8,
                    help="cpu_request of the holder job (above the node's 4 CPUs: never scheduled, never done)")
    ap.add_argument("--idle-cpu-percent", type=float, default=20.0,
                    help="before the release: wait until the machine's CPU use stays below this (of all CPUs)")
    ap.add_argument("--submit-burst", action="store_true",
                    help="also measure the earlier, secondary figure: N jobs submitted while admitting (after the release)")
    ap.add_argument("--submit-concurrency", type=int, default=16, help="concurrent clients submitting the N jobs")
    ap.add_argument("--poll-interval", type=float, default=0.01, help="one poll round of the running jobs, seconds")
    ap.add_argument("--slow-poll-interval", type=float, default=1.0,
                    help="poll interval of a job whose pod is not done yet (per this process's watch), seconds")
    ap.add_argument("--run-timeout", type=float, default=600, help="bound on the M jobs finishing")
    ap.add_argument("--stall-timeout", type=float, default=60,
                    help="stop waiting when no job turned terminal for this long (stuck jobs are reported)")
    ap.add_argument("--collect-timeout", type=float, default=180, help="bound on their results being collected")
    ap.add_argument("--admit-timeout", type=float, default=300, help="bound on the N jobs queuing, and on their Jobs existing")
    ap.add_argument("--settle-timeout", type=float, default=120,
                    help="bound on each wait before a measurement (completion phase's Jobs and pods gone, "
                         "control queues drained, machine idle)")
    ap.add_argument("--api-workers", type=int, default=1)
    ap.add_argument("--probe", type=int, default=30, help="sequential timings of the executor's start calls (0: skip)")
    ap.add_argument("--as-admin", action="store_true",
                    help="run the service with the admin's kubeconfig (client certificate, system:masters) instead "
                         "of its ServiceAccount's token and RBAC as deployed by k8s/")
    ap.add_argument("--apiserver-profile", metavar="PATH",
                    help="write a CPU profile of the API server during the release to PATH (runs the dev cluster "
                         "with profiling on)")
    ap.add_argument("--apiserver-profile-seconds", type=float, default=None,
                    help="length of that profile from the PATCH on (default: N / 50 + 1)")
    args = ap.parse_args(argv)
    started = common.machine()
    print(f"[{NAME}] at start: {common.describe(started)}", flush=True)

    from devcluster.cluster import temp_cluster

    cluster = temp_cluster(profiling=bool(args.apiserver_profile))
    watch = None
    try:
        t0 = time.monotonic()
        cluster.start()
        print(f"[{NAME}] dev cluster up in {time.monotonic() - t0:.1f} s ({cluster.apiserver_url})", flush=True)
        kubeconfigs = {} if args.as_admin else service_account_kubeconfigs(cluster)
        identity = "admin (client certificate)" if args.as_admin else \
            f"its ServiceAccounts in {CONTROLLER_NAMESPACE} (one per process, as k8s/ deploys them)"
        print(f"[{NAME}] the service calls the API server as {identity}", flush=True)
        port = free_port()  # known before the start: the collector pods upload to it
        env = {"EXECUTOR": "kubernetes", "KUBECONFIG": str(kubeconfigs.get("workers", cluster.kubeconfig)),
               "JOB_TTL_SECONDS": "5", "RESULT_STORAGE_SIZE_GI": "1", "PORT": str(port),
               "COLLECT_URL": f"http://127.0.0.1:{port}"}
        per_process = {process: {"KUBECONFIG": str(path)} for process, path in kubeconfigs.items()}
        with common.stack(NAME, api_workers=args.api_workers, env=env, process_env=per_process) as s:
            watch = JobWatch(cluster.api_client()).start()
            load_completion = common.load_average()
            completion = measure_completion(s, cluster, watch, args)
            completion["aftermath_settled_s"] = settle_namespace(cluster, completion["tenant_namespace"],
                                                                 args.settle_timeout)
            admission = measure_queued_release(s, cluster, watch, args)
            submitting = measure_submit_burst(s, cluster, watch, args) if args.submit_burst else None
            probe = {}
            if args.probe:
                try:
                    probe = probe_start_calls(cluster, admission["tenant_namespace"], args.probe)
                except Exception as exc:  # noqa: BLE001 — the probe only explains; keep the measured figures
                    print(f"[{NAME}] probe of the executor's calls failed: {type(exc).__name__}: {exc}", flush=True)
            watch_errors = watch.errors
    finally:
        if watch is not None:
            watch.close()
        cluster.stop()
        shutil.rmtree(cluster.workdir, ignore_errors=True)

    a, lw, lt = admission, completion["latency_vs_watch"], completion["latency_vs_last_transition_time"]
    rows = [("measure", "n", "value", "p50 ms", "p99 ms", "max ms")]
    rows.append(("queued → Jobs created: N / (N-th Job observed − PATCH raising max_cpu sent)", a["jobs"],
                 f"{a['rate_from_patch_per_s']} Jobs/s ({a['patch_to_last_job_s']} s)", "", "", ""))
    rows.append(("  same, from first admitted_at", a["jobs"],
                 f"{a['rate_from_first_admitted_per_s']} Jobs/s ({a['first_admitted_to_last_job_s']} s)", "", "", ""))
    rows.append(("  same, by creationTimestamp (1 s resolution), first → N-th Job", a["jobs"],
                 f"{a['rate_by_creation_timestamp_per_s']} Jobs/s ({a['creation_timestamp_span_s']:.0f} s)", "", "", ""))
    rows.append(("  PATCH sent → first admitted_at / first Job observed", a["jobs"],
                 f"{a['patch_to_first_admitted_s']} s / {a['patch_to_first_job_s']} s", "", "", ""))
    m = a["admitted_to_job_observed"]
    rows.append(("  per job: admitted_at → its Job observed", m["n"], "", m["p50_ms"], m["p99_ms"], m["max_ms"]))
    if submitting:
        b = submitting
        rows.append(("secondary, submitted while admitting (16 clients): from first admitted_at", b["jobs"],
                     f"{b['rate_from_first_admitted_per_s']} Jobs/s ({b['first_admitted_to_last_job_s']} s)", "", "", ""))
        rows.append(("  same, from first submission", b["jobs"],
                     f"{b['rate_from_first_submit_per_s']} Jobs/s ({b['first_submit_to_last_job_s']} s)", "", "", ""))
        rows.append(("  submissions (POST /jobs, all N)", b["jobs"], f"{b['submit_per_s']} /s ({b['submit_s']} s)",
                     "", "", ""))
    rows.append(("Job Complete (watch-observed) → COLLECTING (outcome SUCCEEDED) in GET /jobs/{id}", lw.get("n"), "",
                 lw.get("p50_ms"), lw.get("p99_ms"), lw.get("max_ms")))
    rows.append(("  same, from Complete lastTransitionTime (1 s resolution, reads high)", lt.get("n"), "",
                 lt.get("p50_ms"), lt.get("p99_ms"), lt.get("max_ms")))
    for step, v in probe.items():
        if not isinstance(v, dict):
            continue
        rows.append((f"  executor start call, sequential: {step}", v["n"], "", v["p50_ms"], v["p99_ms"], v["max_ms"]))
    pg = completion["poll_gap"]
    rows.append(("  poll gap per job (If-None-Match)", pg.get("n"), "", pg.get("p50_ms"), pg.get("p99_ms"), pg.get("max_ms")))
    common.print_table(f"kube admission (dev cluster v1.34, 1 node; N={a['jobs']} queued at cpu_request {args.burst_cpu}, "
                       f"released at once; M={completion['jobs']} at "
                       f"{args.run_concurrency} concurrent; targets ≥ {TARGET_RATE:.0f} Jobs/s, p99 ≤ {TARGET_P99_MS} ms)", rows)
    print(f"  the service called the API server as {identity}")
    print(f"  Jobs per creationTimestamp second: {a['jobs_per_creation_second']}")
    top = list(a["cpu_seconds_during_release"].items())[:12]
    print(f"  CPU seconds during the release ({a['wall_s_during_release']} s wall, {started['cpus']} CPUs): "
          + ", ".join(f"{k} {v}" for k, v in top)
          + f"; released Jobs whose pod finished meanwhile: {a['jobs_finished_during_release']}")
    per = a["cpu_per_job_during_release"]
    print(f"  CPU per Job during the release: service {per['service_ms']} ms, control plane {per['control_plane_ms']} ms "
          f"(etcd, API server, controller-manager, scheduler); the control plane alone would allow "
          f"{per['control_plane_alone_ceiling_per_s']} Jobs/s on these CPUs with the service costing nothing")
    print("  API server requests during the release (all clients; verb resource code: count): "
          + ", ".join(f"{k}: {v}" for k, v in a["api_requests_during_release"].items()))
    print(f"  before the release: load {a['load_average_at_release']}; control queues drained "
          f"{a['control_queues_drained_before_release']}; machine {a['machine_before_release']}")
    if submitting:
        top = list(submitting["cpu_seconds_during_burst"].items())[:12]
        print(f"  secondary: CPU seconds while submitting and admitting ({submitting['wall_s_during_burst']} s wall): "
              + ", ".join(f"{k} {v}" for k, v in top))
    print(f"  FailedCreate events: release namespace {a['failed_create_events']}, completion namespace "
          f"{completion['failed_create_events']}"
          + (f", submit-burst namespace {submitting['failed_create_events']}" if submitting else "")
          + f"; bench watch reconnects {watch_errors}")
    print(f"  completion jobs: {completion['final_statuses']}; API already terminal before this process's watch saw "
          f"Complete: {completion['api_ahead_of_bench_watch']}; raw min latency {completion['latency_vs_watch_raw_min_ms']} ms")
    for j, why in completion["not_terminal"].items():
        print(f"  NOT terminal (excluded): {j}: {why}")
    result = {"benchmark": NAME, "machine": started, "load_average_before_completion": load_completion,
              "admission": admission, "submit_while_admitting": submitting, "completion": completion,
              "executor_start_calls": probe, "service_identity": identity,
              "bench_watch_reconnects": watch_errors,
              "clocks": {"rate": "N / (this process's watch observing the N-th Job − time.time() just before the PATCH "
                                 "that releases the N QUEUED jobs); variants from the earliest admitted_at (API) and "
                                 "by creationTimestamp (second resolution)",
                         "latency": "first GET /jobs/{id} answer showing the run's end (COLLECTING) − this process's watch observing the "
                                    "Job's Complete condition; lastTransitionTime variant is truncated to the second"},
              "targets": {"jobs_per_s": TARGET_RATE, "p99_ms": TARGET_P99_MS}}
    common.write_result(NAME, result)
    return result


if __name__ == "__main__":
    main()
