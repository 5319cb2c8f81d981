"""Runs every benchmark (each starts its own stack) and prints a Markdown summary for the README.

    python -m bench.run_all [--requests 2000] [--jobs 200] [--runs 3]

Also writes ``bench/out/summary.md``.
"""
from __future__ import annotations

import argparse
import time
import traceback

from bench import common, overhead, status_latency, submit_throughput

TARGET_SUBMIT = 300.0     # submissions/s
TARGET_STATUS_P99 = 1000  # ms
TARGET_OVERHEAD = 10.0    # %


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def summary(started: dict, thr: dict | None, lat: dict | None, ovh: dict | None, failures: list[str]) -> str:
    lines = [
        f"Measured {started['at']} on {started['cpus']} CPUs, Python {started['python']}, "
        f"load average at start {started['load_average']} (1/5/15 min), CPU probe {started['cpu_probe_ms']} ms, "
        f"round-trip probe {started['round_trip_probe_us']} µs.",
        "",
        "| Figure | Value | Target | |",
        "| --- | --- | --- | --- |",
    ]
    if thr:
        for r in thr["runs"]:
            lat_ms = r["latency"]
            lines.append(f"| `POST /jobs` throughput, {r['concurrency']} clients, {r['api_workers']} API worker(s) "
                         f"| {r['submissions_per_s']:.0f} /s (p50 {lat_ms.get('p50_ms')} ms, p99 {lat_ms.get('p99_ms')} ms, "
                         f"{r['errors']} errors of {r['requests']}) | ≥ {TARGET_SUBMIT:.0f} /s, 0 errors "
                         f"| {_verdict(r['submissions_per_s'] >= TARGET_SUBMIT and r['errors'] == 0)} |")
    if lat:
        v = lat["visibility"]
        lines.append(f"| Executor event → visible in `GET /jobs/{{id}}` ({v.get('n')} events) "
                     f"| p50 {v.get('p50_ms')} ms, p99 {v.get('p99_ms')} ms, max {v.get('max_ms')} ms "
                     f"| p99 ≤ {TARGET_STATUS_P99} ms | {_verdict(v.get('p99_ms') is not None and v['p99_ms'] <= TARGET_STATUS_P99 and not lat['timeouts'])} |")
        for key, label in (("get_200", "200"), ("get_304", "304 with `If-None-Match`")):
            m = lat["poll_cost"][key]
            lines.append(f"| `GET /jobs/{{id}}` round trip, {label} | p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms | — | |")
    if ovh:
        m = ovh["median"]
        lines.append(f"| bologna-acosta: `sumo` alone (median of {len(ovh['sumo_alone_s'])}) | {m['sumo_alone_s']:.2f} s | — | |")
        lines.append(f"| bologna-acosta: submit → results collected through the service (median) "
                     f"| {m['service_collected_s']:.2f} s | — | |")
        lines.append(f"| bologna-acosta: of which SUMO running inside the service (median) | {m['sumo_in_service_s']:.2f} s | — | |")
        lines.append(f"| Service overhead on bologna-acosta (medians, end to end vs alone) | {ovh['overhead_pct']:+.1f} % ({ovh['overhead_s']:+.2f} s) "
                     f"| ≤ {TARGET_OVERHEAD:.0f} % | {_verdict(ovh['overhead_pct'] <= TARGET_OVERHEAD)} |")
        lines.append(f"| Service time outside SUMO (submit, admission, start, status, collect; median) / `sumo` alone "
                     f"| {ovh['overhead_outside_sumo_pct']:+.1f} % ({m['outside_sumo_s']:.2f} s) | ≤ {TARGET_OVERHEAD:.0f} % "
                     f"| {_verdict(ovh['overhead_outside_sumo_pct'] <= TARGET_OVERHEAD)} |")
    lines.append("")
    lines.append("- Throughput is measured with the simulation workers stopped (SUMO would otherwise compete for the CPUs); "
                 "client and server share the machine.")
    if thr:
        for r in thr["runs"]:
            per = r["server_cpu_ms_per_submission"]
            lines.append(f"- With {r['api_workers']} API worker(s): client used {r['client_cpu_pct_of_one_core']} % of one core; "
                         f"server CPU per submission: " + ", ".join(f"{k} {v} ms" for k, v in per.items() if v)
                         + f"; PostgreSQL sessions opened during the run: {r['postgres_counters'].get('sessions')}.")
    if ovh:
        lines.append("- The overhead's end-to-end figure moves with the machine's load (SUMO's own run time varies between runs); "
                     "the time outside SUMO does not.")
    for f in failures:
        lines.append(f"\n**{f}**")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="measured POST /jobs per API worker setting")
    ap.add_argument("--jobs", type=int, default=200, help="status events for the latency benchmark")
    ap.add_argument("--runs", type=int, default=3, help="bologna-acosta runs each way")
    args = ap.parse_args(argv)
    started = common.machine()
    print(f"[run_all] at start: {common.describe(started)}", flush=True)
    results, failures = {}, []
    for name, fn, fargs in (
        ("submit_throughput", submit_throughput.main, ["--requests", str(args.requests)]),
        ("status_latency", status_latency.main, ["--jobs", str(args.jobs)]),
        ("overhead", overhead.main, ["--runs", str(args.runs)]),
    ):
        t0 = time.monotonic()
        try:
            results[name] = fn(fargs)
        except Exception as exc:  # noqa: BLE001 — one failed benchmark must not hide the others
            traceback.print_exc()
            failures.append(f"{name} failed: {type(exc).__name__}: {exc}")
        print(f"[run_all] {name} took {time.monotonic() - t0:.0f} s", flush=True)
    md = summary(started, results.get("submit_throughput"), results.get("status_latency"), results.get("overhead"), failures)
    print("\n" + md)
    common.write_out("summary.md", md)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
