"""What a huge job log costs the service: peak memory of every service process, and the time of a tail.

    python -m bench.log_memory [--log-mb 1024] [--tails 20] [--api-workers 1]

Starts a stack whose ``SUMO_BINARY`` is :mod:`bench.fake_sumo`, runs one job that writes a log of
``--log-mb`` MiB (SUMO-like lines, mostly CR-ended progress lines) and then holds, and measures, first on
the live log (the local executor's file) and then, once the job is released and its results collected, on
the archived one (the result store):

- ``tail``: ``GET /jobs/{id}/logs?tail=100``, ``--tails`` times (its time is reported too);
- ``whole``: ``GET /jobs/{id}/logs``, the whole log as one JSON document, read to its end;
- ``sse``: ``GET /jobs/{id}/logs/stream`` from the middle of the log (``Last-Event-ID`` = half its size)
  to its end;
- ``download`` (archived only): ``GET /jobs/{id}/results/sumo.log``, its digest checked;
- and in between, the job's collection (the log copied to the store) once the fake sumo is let go.

Before each, every service process's peak RSS is reset (``/proc/<pid>/clear_refs``), and after it its
``VmHWM`` is read: the table shows each process's peak during each operation, and the bytes each read
from files (``rchar`` of ``/proc/<pid>/io``).  Writes ``bench/out/log_memory.json``.
"""
from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench import common, fake_sumo

MiB = 1 << 20
HOLD_FILE = "release"
_EVENT_ID = re.compile(rb"\nid: ([^\r\n]+)\r?\n")


# -- processes --------------------------------------------------------------------------------------------
def service_processes(stack) -> dict[str, int]:
    """Every process of the service (each started process and its children), by a readable label."""
    out: dict[str, int] = {}
    for name, proc in stack.procs.items():
        if proc.process is None or proc.process.poll() is not None:
            continue
        try:
            root = psutil.Process(proc.process.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for i, p in enumerate(family):
            try:
                if any("fake_sumo" in part for part in p.cmdline()) or p.uids().real != root.uids().real:
                    continue  # the simulation itself and its sandbox (a uid of its own), not a service process
            except psutil.Error:
                continue
            out[name if i == 0 else f"{name}/{i}"] = p.pid
    return out


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _rchar(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


class Watch:
    """Peak RSS (VmHWM, reset at the start) and bytes read (rchar) of processes over a block of work."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.rss_before: dict[str, int] = {}
        self.read_before: dict[str, int] = {}
        self.peak_mb: dict[str, float] = {}
        self.growth_mb: dict[str, float] = {}
        self.read_mb: dict[str, float] = {}

    def __enter__(self) -> "Watch":
        for label, pid in self.pids.items():
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.rss_before[label] = _status_kb(pid, "VmRSS")
            self.read_before[label] = _rchar(pid)
        return self

    def __exit__(self, *exc) -> None:
        for label, pid in self.pids.items():
            try:
                peak = _status_kb(pid, "VmHWM")
                read = _rchar(pid)
            except OSError:  # ended meanwhile
                continue
            self.peak_mb[label] = round(peak / 1024, 1)
            self.growth_mb[label] = round((peak - self.rss_before[label]) / 1024, 1)
            self.read_mb[label] = round((read - self.read_before[label]) / MiB, 1)

    def most(self, prefix: str) -> float:
        """The largest peak growth among the processes whose label starts with ``prefix`` (e.g. "api")."""
        return max((v for k, v in self.growth_mb.items() if k.split("/")[0] == prefix), default=0.0)

    def read(self, prefix: str) -> float:
        return sum(v for k, v in self.read_mb.items() if k.split("/")[0] == prefix)


# -- the operations, as a client runs them ------------------------------------------------------------------
def get_tail(http: httpx.Client, job_id: str, headers: dict, lines: int = 100) -> str:
    r = http.get(f"/jobs/{job_id}/logs", params={"tail": lines}, headers=headers)
    r.raise_for_status()
    return r.json()["logs"]


def get_whole(http: httpx.Client, job_id: str, headers: dict) -> int:
    """Reads the whole log's JSON to its end; its size in bytes (the document is checked at both ends)."""
    size, head, last = 0, b"", b""
    with http.stream("GET", f"/jobs/{job_id}/logs", headers=headers) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            head = head or chunk[:40]
            size += len(chunk)
            last = (last + chunk)[-40:]
    assert head.startswith(b'{"job_id":') and last.endswith(b'"}'), (head, last)
    return size


def follow_sse(http: httpx.Client, job_id: str, headers: dict, start: int, end: int) -> tuple[int, str]:
    """Follows the stream from ``start`` (as Last-Event-ID) until an event's position reaches ``end`` or the
    job's status event; the bytes received and the last event id."""
    received, last_id, carry = 0, str(start), b""
    with http.stream("GET", f"/jobs/{job_id}/logs/stream", headers={**headers, "Last-Event-ID": str(start)},
                     timeout=httpx.Timeout(600)) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            received += len(chunk)
            buf = carry + chunk
            ids = _EVENT_ID.findall(buf)
            if ids:
                last_id = ids[-1].decode()
            if int(last_id.partition("@")[0]) >= end or b"\nevent: status" in buf:
                break
            carry = buf[-200:]
    return received, last_id


# -- the benchmark --------------------------------------------------------------------------------------------
def _phase(results: dict, name: str, pids: dict[str, int], work) -> object:
    with Watch(pids) as watch:
        t0 = time.perf_counter()
        value = work()
        seconds = time.perf_counter() - t0
    results[name] = {"seconds": round(seconds, 2), "peak_rss_mb": watch.peak_mb, "peak_growth_mb": watch.growth_mb,
                     "file_read_mb": watch.read_mb}
    print(f"  {name}: {seconds:.2f} s; API peak +{watch.most('api')} MB over its RSS before, read "
          f"{watch.read('api')} MB from files")
    return value


def _log_written(http, job_id, headers, log: Path, log_bytes: int) -> bool:
    """The live log has its size; a job that ended before (a cap, a crash) ends the benchmark at once."""
    if log.exists() and log.stat().st_size >= log_bytes:
        return True
    job = http.get(f"/jobs/{job_id}", headers=headers).json()
    if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
        raise RuntimeError(f"the job ended {job['status']} before its log was written: {job.get('error')}")
    return False


def _release(http, job_id, headers, work: Path, timeout: float) -> None:
    """Lets the fake sumo end, and waits until the job SUCCEEDED (its results and log are then stored)."""
    (work / "run" / HOLD_FILE).touch()
    common.wait_until(lambda: http.get(f"/jobs/{job_id}", headers=headers).json()["status"] == "SUCCEEDED",
                      timeout, "the job to succeed with its results collected")


def _tails(http, job_id, headers, times: int) -> tuple[list[float], str]:
    seconds, text = [], ""
    for _ in range(times):
        t0 = time.perf_counter()
        text = get_tail(http, job_id, headers)
        seconds.append(time.perf_counter() - t0)
    return seconds, text


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-mb", type=float, default=1024, help="size of the job's log, MiB")
    parser.add_argument("--tails", type=int, default=20, help="how many ?tail=100 requests to time, per phase")
    parser.add_argument("--api-workers", type=int, default=1)
    args = parser.parse_args(argv)
    log_bytes = int(args.log_mb * MiB)
    started = common.machine()
    print(common.describe(started))

    binary_dir = Path(tempfile.mkdtemp(prefix="sumo-k8-fake-sumo-"))
    env = {"SUMO_BINARY": str(fake_sumo.install(binary_dir)), "LOCAL_MAX_PARALLEL": "1",
           **common.run_caps(0, log_bytes)}
    phases: dict = {}
    tail_ms: dict = {}
    with common.stack("log_memory", api_workers=args.api_workers, env=env) as s:
        tenant = common.register_tenant(s)
        headers = common.auth(tenant)
        http = httpx.Client(base_url=s.url, timeout=600)
        archive = fake_sumo.scenario({"log_bytes": log_bytes, "hold_file": HOLD_FILE, "hold_seconds": 3600})
        r = http.post("/jobs", data=common.submit_form("log-memory"), headers=headers,
                      files={"sumo_files": ("scenario.zip", archive, "application/zip")})
        r.raise_for_status()
        job_id = r.json()["job_id"]
        work = Path(s.env["DATA_DIR"]) / "work" / job_id
        t0 = time.perf_counter()
        common.wait_until(lambda: _log_written(http, job_id, headers, work / "sumo.log", log_bytes),
                          max(120, args.log_mb), f"a live log of {log_bytes} bytes")
        written_s = time.perf_counter() - t0
        print(f"job {job_id}: {log_bytes} bytes of log written in {written_s:.1f} s")
        pids = service_processes(s)
        baseline = {label: round(_status_kb(pid, "VmRSS") / 1024, 1) for label, pid in pids.items()}

        for where in ("live", "archived"):
            if where == "archived":
                _phase(phases, "collecting (the job released)", pids, lambda: _release(http, job_id, headers, work,
                                                                                      max(120, args.log_mb)))
                pids = service_processes(s)
            print(f"-- {where} log")
            seconds, text = _phase(phases, f"{where}: tail=100 x{args.tails}", pids,
                                   lambda: _tails(http, job_id, headers, args.tails))
            assert text.endswith("DONE.\n"), text[-200:]
            tail_ms[where] = common.summary_ms(seconds)
            size = _phase(phases, f"{where}: whole log as JSON", pids, lambda: get_whole(http, job_id, headers))
            phases[f"{where}: whole log as JSON"]["bytes"] = size
            received, last = _phase(phases, f"{where}: SSE from the middle", pids,
                                    lambda: follow_sse(http, job_id, headers, log_bytes // 2, log_bytes))
            phases[f"{where}: SSE from the middle"].update(bytes=received, last_event_id=last)
        listing = http.get(f"/jobs/{job_id}/results", headers=headers).json()
        entry = next(f for f in listing["files"] if f["name"] == "sumo.log")
        size, digest = _phase(phases, "archived: download sumo.log", pids,
                              lambda: common.download(http, f"/jobs/{job_id}/results/sumo.log", headers))
        assert size == entry["size"] == log_bytes and digest == entry["sha256"], (size, entry)
        phases["archived: download sumo.log"]["bytes"] = size

    labels = sorted({label for p in phases.values() for label in p["peak_rss_mb"]})
    rows = [("process", "RSS before", *phases)]
    for label in labels:
        rows.append((label, baseline.get(label, "-"), *(p["peak_rss_mb"].get(label, "-") for p in phases.values())))
    rows.append(("seconds", "", *(p["seconds"] for p in phases.values())))
    common.print_table(f"peak RSS (MB) of each service process per operation, log of {args.log_mb:g} MiB", rows)
    common.print_table("GET /jobs/{id}/logs?tail=100", [("log", "n", "p50 ms", "max ms")] + [
        (where, m["n"], m["p50_ms"], m["max_ms"]) for where, m in tail_ms.items()])
    result = {"machine": started, "log_bytes": log_bytes, "api_workers": args.api_workers,
              "log_written_s": round(written_s, 1), "baseline_rss_mb": baseline, "phases": phases,
              "tail_100": tail_ms,
              "api_peak_growth_mb": {name: max((v for k, v in p["peak_growth_mb"].items() if k.split("/")[0] == "api"),
                                               default=0.0) for name, p in phases.items()}}
    common.write_result("log_memory", result)
    return result


if __name__ == "__main__":
    main()
