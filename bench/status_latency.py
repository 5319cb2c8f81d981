"""Executor event → visible in GET /jobs/{id}: how long a status change takes to reach a poller.

The simulation workers are stopped so admitted jobs wait; for each of N
ADMITTED jobs a RUNNING ``StatusEvent`` is published on the status queue
exactly as an executor does (``MessageBus.publish_status``), one at a time,
and ``GET /jobs/{id}`` is polled with ``If-None-Match`` until it answers
RUNNING.  Latency = arrival of the first answer showing RUNNING − publish
time.  The poll itself is measured too (200 vs 304).

    python -m bench.status_latency [--jobs 200] [--poll-interval 0.002] [--polls 500]
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone

import httpx

from bench import common

NAME = "status_latency"


def submit_jobs(s, tenant: dict, n: int, timeout: float) -> list[str]:
    body = (common.ZIPS / "square.zip").read_bytes()
    ids = []
    with httpx.Client(base_url=s.url, timeout=60, headers=common.auth(tenant)) as c:
        for _ in range(n):
            r = c.post("/jobs", data=common.submit_form(), files={"sumo_files": ("scenario.zip", body, "application/zip")})
            r.raise_for_status()
            ids.append(r.json()["job_id"])

        def all_admitted():
            seen, cursor = 0, None
            while True:
                r = c.get("/jobs", params={"status": "ADMITTED", "limit": 500, **({"cursor": cursor} if cursor else {})})
                r.raise_for_status()
                seen += len(r.json()["jobs"])
                cursor = r.json()["next_cursor"]
                if not cursor:
                    return seen >= n and seen
        common.wait_until(all_admitted, timeout, f"{n} jobs ADMITTED", interval=0.5)
    return ids


def poll_cost(c: httpx.Client, job_id: str, n: int) -> dict:
    """GET /jobs/{id} round trip, plain (200) and conditional (304)."""
    full, conditional = [], []
    etag = c.get(f"/jobs/{job_id}").headers["etag"]
    for _ in range(n):
        t0 = time.perf_counter()
        r = c.get(f"/jobs/{job_id}")
        full.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
        t0 = time.perf_counter()
        r = c.get(f"/jobs/{job_id}", headers={"If-None-Match": etag})
        conditional.append(time.perf_counter() - t0)
        assert r.status_code == 304, r.status_code
    return {"get_200": common.summary_ms(full), "get_304": common.summary_ms(conditional)}


def measure_visibility(s, tenant: dict, ids: list[str], args) -> tuple[list[float], list[int], int]:
    from core.domain.states import JobStatus, StatusEvent
    from core.messaging import MessageBus, get_broker
    from core.settings import Settings

    settings = Settings(redis_url=s.env["REDIS_URL"])
    bus = MessageBus(get_broker(settings), settings.executor)
    latencies, polls_needed, timeouts = [], [], 0
    with httpx.Client(base_url=s.url, timeout=30, headers=common.auth(tenant)) as c:
        for job_id in ids:
            r = c.get(f"/jobs/{job_id}")
            assert r.json()["status"] == "ADMITTED", r.json()
            etag = r.headers["etag"]
            published = time.perf_counter()
            bus.publish_status(StatusEvent(job_id, JobStatus.RUNNING, datetime.now(timezone.utc)))
            deadline = published + args.event_timeout
            polls = 0
            while True:
                r = c.get(f"/jobs/{job_id}", headers={"If-None-Match": etag})
                seen = time.perf_counter()
                polls += 1
                if r.status_code == 200:
                    etag = r.headers["etag"]
                    if r.json()["status"] == "RUNNING":
                        latencies.append(seen - published)
                        polls_needed.append(polls)
                        break
                if seen > deadline:
                    timeouts += 1
                    break
                time.sleep(args.poll_interval)
            time.sleep(args.gap)
    return latencies, polls_needed, timeouts


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--poll-interval", type=float, default=0.002, help="sleep between polls of one job, seconds")
    ap.add_argument("--gap", type=float, default=0.02, help="pause between two events, seconds")
    ap.add_argument("--event-timeout", type=float, default=30, help="give up on one event after this long")
    ap.add_argument("--admit-timeout", type=float, default=180)
    ap.add_argument("--polls", type=int, default=500, help="requests for the poll-cost measurement")
    ap.add_argument("--api-workers", type=int, default=1)
    args = ap.parse_args(argv)
    started = common.machine()
    print(f"[{NAME}] at start: {common.describe(started)}", flush=True)
    with common.stack(NAME, api_workers=args.api_workers) as s:
        common.stop_simulations(s)
        tenant = common.register_tenant(s)
        print(f"[{NAME}] submitting {args.jobs} jobs (simulation workers stopped) and waiting for ADMITTED")
        ids = submit_jobs(s, tenant, args.jobs, args.admit_timeout)
        print(f"[{NAME}] publishing one RUNNING event at a time, polling with If-None-Match every {args.poll_interval * 1000:g} ms")
        load = common.load_average()
        latencies, polls, timeouts = measure_visibility(s, tenant, ids, args)
        with httpx.Client(base_url=s.url, timeout=30, headers=common.auth(tenant)) as c:
            cost = poll_cost(c, ids[0], args.polls)
    vis = common.summary_ms(latencies)
    rows = [("measure", "n", "p50 ms", "p90 ms", "p99 ms", "max ms")]
    rows.append(("event → visible in GET /jobs/{id}", vis["n"], vis.get("p50_ms"), vis.get("p90_ms"), vis.get("p99_ms"), vis.get("max_ms")))
    for label, key in (("GET /jobs/{id} (200, full body)", "get_200"), ("GET /jobs/{id} (304, If-None-Match)", "get_304")):
        m = cost[key]
        rows.append((label, m["n"], m["p50_ms"], m["p90_ms"], m["p99_ms"], m["max_ms"]))
    common.print_table(f"status latency ({args.api_workers} API worker(s); {timeouts} events not seen within {args.event_timeout}s)", rows)
    result = {"benchmark": NAME, "machine": started, "load_average_before": load, "jobs": args.jobs,
              "poll_interval_s": args.poll_interval, "visibility": vis, "timeouts": timeouts,
              "polls_per_event": common.summary_ms([p / 1000 for p in polls]) if polls else {},
              "poll_cost": cost}
    common.write_result(NAME, result)
    return result


if __name__ == "__main__":
    main()
