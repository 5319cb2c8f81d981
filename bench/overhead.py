"""Service overhead on a real run: bologna-acosta through the service vs. ``sumo`` alone.

Service: submit the archive → poll GET /jobs/{id} until SUCCEEDED → poll
GET /jobs/{id}/results until collected.  Baseline: the same ``sumo`` binary
(``default_sumo_binary()``) on the same extracted files with the options the
service adds (``--statistic-output``, ``--duration-log.statistics true``, and
``--log /dev/stdout`` since the scenario names its own log), output piped to a
file.  Runs are interleaved (service, sumo, service, sumo, …); medians compared.

    python -m bench.overhead [--runs 3] [--poll-interval 0.05]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

import httpx

from bench import common

NAME = "overhead"
ARCHIVE = "bologna-acosta.zip"


def run_sumo_alone(archive: Path, sumo: str, timeout: float) -> float:
    work = Path(tempfile.mkdtemp(prefix="sumo-k8-bench-sumo-"))
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(work)
        argv = [sumo, "-c", "run.sumocfg", "--statistic-output", str(work / "statistics.xml"),
                "--duration-log.statistics", "true", "--log", "/dev/stdout"]
        env = dict(os.environ)
        env.setdefault("SUMO_HOME", str(Path(sumo).resolve().parent.parent))
        with open(work / "sumo.log", "wb") as out:
            t0 = time.perf_counter()
            code = subprocess.run(argv, cwd=work, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, timeout=timeout).returncode
            elapsed = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"sumo exited {code}: {(work / 'sumo.log').read_text()[-2000:]}")
        return elapsed
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_through_service(s, tenant: dict, archive: Path, poll: float, timeout: float) -> dict:
    body = archive.read_bytes()
    with httpx.Client(base_url=s.url, timeout=60, headers=common.auth(tenant)) as c:
        t0 = time.perf_counter()
        r = c.post("/jobs", data=common.submit_form("bologna"), files={"sumo_files": (ARCHIVE, body, "application/zip")})
        r.raise_for_status()
        job_id = r.json()["job_id"]
        accepted = time.perf_counter()
        deadline = t0 + timeout
        seen_running = None
        etag = None
        while True:
            r = c.get(f"/jobs/{job_id}", headers={"If-None-Match": etag} if etag else {})
            if r.status_code == 200:
                etag = r.headers["etag"]
                job = r.json()
                if job["status"] == "RUNNING" and seen_running is None:
                    seen_running = time.perf_counter()
                if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"job {job_id} not finished after {timeout}s")
            time.sleep(poll)
        succeeded = time.perf_counter()
        if job["status"] != "SUCCEEDED":
            raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
        while True:
            r = c.get(f"/jobs/{job_id}/results")
            r.raise_for_status()
            if r.json()["collected"]:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"results of {job_id} not collected after {timeout}s")
            time.sleep(poll)
        collected = time.perf_counter()
    sumo_s = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
    return {"job_id": job_id, "accepted_s": accepted - t0, "sumo_in_service_s": sumo_s, "outside_sumo_s": collected - t0 - sumo_s, "running_seen_s": (seen_running or succeeded) - t0,
            "succeeded_s": succeeded - t0, "collected_s": collected - t0, "files": len(r.json()["files"]),
            "started_at": job.get("started_at"), "finished_at": job.get("finished_at")}


def main(argv=None) -> dict:
    from core.executors.local import default_sumo_binary

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--poll-interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=600, help="bound of one run, seconds")
    ap.add_argument("--api-workers", type=int, default=1)
    args = ap.parse_args(argv)
    started = common.machine()
    print(f"[{NAME}] at start: {common.describe(started)}", flush=True)
    archive = common.ZIPS / ARCHIVE
    sumo = default_sumo_binary()
    service_runs, sumo_runs = [], []
    with common.stack(NAME, api_workers=args.api_workers) as s:
        tenant = common.register_tenant(s)
        for i in range(args.runs):
            svc = run_through_service(s, tenant, archive, args.poll_interval, args.timeout)
            service_runs.append(svc)
            print(f"[{NAME}] run {i + 1}: service {svc['collected_s']:.2f} s (SUCCEEDED seen at {svc['succeeded_s']:.2f} s)", flush=True)
            alone = run_sumo_alone(archive, sumo, args.timeout)
            sumo_runs.append(alone)
            print(f"[{NAME}] run {i + 1}: sumo alone {alone:.2f} s", flush=True)
    med = statistics.median
    svc_collected = med(r["collected_s"] for r in service_runs)
    svc_succeeded = med(r["succeeded_s"] for r in service_runs)
    svc_running = med(r["running_seen_s"] for r in service_runs)
    alone = med(sumo_runs)
    overhead = 100 * (svc_collected - alone) / alone
    inside = med(r["sumo_in_service_s"] for r in service_runs)
    outside = med(r["outside_sumo_s"] for r in service_runs)
    outside_pct = 100 * outside / alone
    rows = [("measure", "median s", "runs s")]
    rows.append(("sumo alone", f"{alone:.2f}", ", ".join(f"{x:.2f}" for x in sumo_runs)))
    rows.append(("service: submit → RUNNING seen", f"{svc_running:.2f}", ", ".join(f"{r['running_seen_s']:.2f}" for r in service_runs)))
    rows.append(("service: submit → SUCCEEDED seen", f"{svc_succeeded:.2f}", ", ".join(f"{r['succeeded_s']:.2f}" for r in service_runs)))
    rows.append(("service: submit → results collected", f"{svc_collected:.2f}", ", ".join(f"{r['collected_s']:.2f}" for r in service_runs)))
    rows.append(("  of which SUMO running (job started_at → finished_at)", f"{inside:.2f}", ", ".join(f"{r['sumo_in_service_s']:.2f}" for r in service_runs)))
    rows.append(("  of which outside SUMO (submit, admission, start, status, collect)", f"{outside:.2f}", ", ".join(f"{r['outside_sumo_s']:.2f}" for r in service_runs)))
    rows.append(("overhead (collected vs alone, medians)", f"{overhead:+.1f} %", f"{svc_collected - alone:+.2f} s"))
    rows.append(("overhead (time outside SUMO / sumo alone)", f"{outside_pct:+.1f} %", f"{outside:+.2f} s"))
    common.print_table(f"{ARCHIVE}: service end to end vs sumo alone ({args.runs} interleaved runs each)", rows)
    result = {"benchmark": NAME, "machine": started, "archive": ARCHIVE, "sumo_binary": sumo,
              "service_runs": service_runs, "sumo_alone_s": sumo_runs,
              "median": {"sumo_alone_s": alone, "service_running_seen_s": svc_running,
                         "service_succeeded_s": svc_succeeded, "service_collected_s": svc_collected,
                         "sumo_in_service_s": inside, "outside_sumo_s": outside},
              "overhead_outside_sumo_pct": round(outside_pct, 2),
              "overhead_pct": round(overhead, 2), "overhead_s": round(svc_collected - alone, 3)}
    common.write_result(NAME, result)
    return result


if __name__ == "__main__":
    main()
