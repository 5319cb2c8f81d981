"""Where POST /jobs (or GET /jobs/{id}) spends its time: the API under yappi, driven like the benchmark.

Starts a stack, stops its simulation workers and its API, then serves the same
app in a child process under yappi (all threads: the event loop and the
pool of ``api.threads`` that runs the blocking use cases), drives it with the throughput
benchmark's client, and prints the heaviest functions of the project and of
its libraries, by the chosen clock (``cpu``: CPU time; ``wall``: includes
waiting on PostgreSQL, Redis, locks and the connection pool).

yappi is in the project's test extra (installed by `make venv`):

    python -m bench.profile_api --clock cpu
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import common

NAME = "profile_api"


def serve(port: int, clock: str, out: Path, top: int) -> None:
    import uvicorn
    import yappi

    yappi.set_clock_type(clock)
    yappi.start(builtins=False, profile_threads=True)
    config = uvicorn.Config("api.app:app", host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run()  # uvicorn re-raises the stopping signal: SIGINT → KeyboardInterrupt here
    except KeyboardInterrupt:
        pass
    yappi.stop()
    stats = yappi.get_func_stats()
    root = str(common.ROOT)
    lines = [f"yappi clock={clock}; ttot = time in the function and its callees, tsub = in the function itself", ""]

    def table(title, entries):
        lines.append(f"== {title}")
        lines.append(f"{'ncall':>9} {'ttot s':>9} {'tsub s':>9}  function")
        for e in entries[:top]:
            where = e.module.replace(root + "/", "").replace(sys.prefix + "/lib/python3.11/site-packages/", "")
            lines.append(f"{e.ncall:>9} {e.ttot:>9.3f} {e.tsub:>9.3f}  {where}:{e.lineno} {e.name}")
        lines.append("")

    entries = list(stats)
    own = [e for e in entries if e.module.startswith(root) and "/.venv/" not in e.module]
    table("project code by ttot", sorted(own, key=lambda e: e.ttot, reverse=True))
    table("everything by tsub (self time)", sorted(entries, key=lambda e: e.tsub, reverse=True))
    threads = yappi.get_thread_stats()
    lines.append("== threads")
    for t in sorted(threads, key=lambda t: t.ttot, reverse=True)[:12]:
        lines.append(f"{t.name:<24} id={t.id:<4} ttot={t.ttot:.3f}s scheduled={t.sched_count}")
    out.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clock", default="cpu", help="cpu, wall, or both: cpu,wall")
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--extra-path", default="", help="site-packages holding yappi")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        sys.path.append(args.extra_path) if args.extra_path else None
        serve(args.serve, args.clock, Path(args.out), args.top)
        return

    from bench.submit_throughput import _run, drain_queues

    common.OUT.mkdir(parents=True, exist_ok=True)
    print(f"[{NAME}] load average at start: {common.load_average()}")
    with common.stack(NAME) as s:
        common.stop_simulations(s)
        s.procs["api"].stop()
        outs = []
        for clock in args.clock.split(","):
            out = common.OUT / f"profile_submit_{clock}.txt"
            env = dict(s.env)
            if args.extra_path:
                env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), args.extra_path) if p)
            child = subprocess.Popen([sys.executable, "-m", "bench.profile_api", "--serve", str(s.port), "--clock", clock,
                                      "--out", str(out), "--top", str(args.top), "--extra-path", args.extra_path],
                                     env=env, cwd=common.ROOT, start_new_session=True,
                                     stdout=open(common.OUT / f"profile_api_{clock}.log", "wb"), stderr=subprocess.STDOUT)
            try:
                common.wait_ready(s.url, 60)
                tenant = common.register_tenant(s)
                body = (common.ZIPS / "square.zip").read_bytes()
                drain_queues(s, 120)
                res = _run(s.url, tenant, body, args.requests, args.concurrency, 600)
                print(f"[{NAME}] clock={clock}: {res['ok'] / res['wall_s']:.1f} submissions/s under the profiler, "
                      f"errors {res['errors']}")
            finally:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(timeout=20)
            print(f"-> {out.relative_to(common.ROOT)}")
            outs.append(out)
            time.sleep(1)
        for out in outs:
            if out.exists():
                print(out.read_text())


if __name__ == "__main__":
    main()
