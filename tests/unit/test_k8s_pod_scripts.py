"""The programs the pods run (core.executors.kubernetes.pod_scripts), run on this machine: the init container's
unpack, the main container's run of the real ``sumo`` under its caps, and the collector's uploads (to a small
upload server standing in for the API: only the script's logic is under test here; tests/kube runs it against
the service)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from core.executors.kubernetes import manifests as m
from core.executors.kubernetes import pod_scripts as ps
from core.executors.kubernetes.collection import parse_manifest

SQUARE = Path(__file__).resolve().parents[2] / "test_networks" / "zips" / "square.zip"


def unpack(tmp_path: Path, entries: dict[str, bytes], chunk: int = 100) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    parts = m.chunk(buf.getvalue(), chunk)
    for n, part in enumerate(parts):
        (tmp_path / "input" / str(n)).mkdir(parents=True)
        (tmp_path / "input" / str(n) / "part").write_bytes(part)
    jd = tmp_path / "results" / "job-1"
    script = ps.UNPACK_SCRIPT.replace('"/input/%d/part"', repr(str(tmp_path) + "/input/%d/part"))
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "JOB_DIR": str(jd), "CHUNKS": str(len(parts))},
                   check=True)
    return jd


def test_unpack_streams_the_joined_chunks_into_the_run_directory(tmp_path):
    jd = unpack(tmp_path, {"sub/run.sumocfg": b"<c/>", "sub/net.xml": b"<net/>" * 1000})
    assert (jd / "run/sub/net.xml").read_bytes() == b"<net/>" * 1000
    inputs = json.loads((jd / "inputs.json").read_text())
    assert inputs["sub/net.xml"] == {"sha256": hashlib.sha256(b"<net/>" * 1000).hexdigest(), "size": 6000}
    assert not (jd / ".input.zip").exists()  # the joined archive is removed once unpacked


# -- the run ---------------------------------------------------------------------------------------------
def square_run(tmp_path: Path, *, end: int = 100, report: str = "", output: str = "", log_file: str = "",
               out_mb: int = 2048, log_mb: int = 256) -> tuple[subprocess.CompletedProcess, Path]:
    with zipfile.ZipFile(SQUARE) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    config = entries["square.sumocfg"].decode().replace('<end value="100"/>', f'<end value="{end}"/>')
    sections = (f"<report>{report}</report>" if report else "") + (f"<output>{output}</output>" if output else "")
    config = config.replace("</configuration>", f"{sections}</configuration>")
    entries["square.sumocfg"] = config.encode()
    jd = unpack(tmp_path, entries, chunk=64 * 1024)
    from core.executors.local import default_sumo_binary

    binary = Path(default_sumo_binary())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sumo").write_text(f'#!/bin/sh\nSUMO_HOME={binary.parent.parent} exec {binary} "$@"\n')
    (bin_dir / "sumo").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "JOB_DIR": str(jd), "CONFIG": "square.sumocfg",
           "LOG_FILE": log_file, "MAX_OUTPUT_MB": str(out_mb), "MAX_LOG_MB": str(log_mb),
           "TERMINATION_LOG": str(tmp_path / "termination-log")}
    done = subprocess.run([sys.executable, "-c", ps.RUN_SCRIPT], env=env, capture_output=True, timeout=120)
    return done, jd


def test_the_run_logs_to_the_console_and_to_sumo_log(tmp_path):
    done, jd = square_run(tmp_path, log_file="out/sumo.txt", output='<tripinfo-output value="trips.xml"/>')
    assert done.returncode == 0, done.stderr
    log = (jd / "sumo.log").read_bytes()
    assert log == done.stdout and b"Simulation ended" in log and b"Error" not in log
    assert (jd / "run/out/sumo.txt").read_bytes() == log  # the config's own log file, copied at the end
    assert (jd / "run/trips.xml").stat().st_size > 0 and b"<performance" in (jd / "sumo-statistics.xml").read_bytes()
    assert not (tmp_path / "termination-log").exists()


def test_a_run_past_max_log_mb_is_stopped_saying_so(tmp_path):
    # the step log prints ~90 bytes per step: 20000 steps are about 1.8 MB
    done, jd = square_run(tmp_path, end=20000, report='<step-log.period value="1"/>', log_mb=1)
    assert done.returncode == ps.CAP_EXIT_CODE
    assert (jd / "sumo.log").stat().st_size == 1024 * 1024 == len(done.stdout)  # the console up to the cap exactly
    assert (tmp_path / "termination-log").read_text().startswith("MAX_LOG_MB: the run printed more than 1 MB")


def test_a_run_past_max_output_mb_is_stopped_saying_so(tmp_path):
    done, jd = square_run(tmp_path, end=20000, output='<fcd-output value="fcd.xml"/>', out_mb=1)
    assert done.returncode == ps.CAP_EXIT_CODE
    assert (tmp_path / "termination-log").read_text().startswith("MAX_OUTPUT_MB: the run wrote more than 1 MB")
    assert (jd / "run/fcd.xml").stat().st_size < 100 * 1024 * 1024  # stopped soon after, not at the end


def test_a_failed_run_leaves_its_consoles_last_lines_as_its_termination_message(tmp_path):
    """The pod may be deleted (its Job's TTL) before the watcher reads its log: the message carries the tail."""
    done, jd = square_run(tmp_path, end=20000, report='<step-log.period value="1"/>',
                          output='<tripinfo-output value="/proc/forbidden/trips.xml"/>')
    assert done.returncode == 1, done.stdout[-500:]
    told = (tmp_path / "termination-log").read_text()
    assert "Error" in told and "trips.xml" in told, told
    assert len(told.encode()) <= ps.TAIL_BYTES and len(told.splitlines()) <= ps.TAIL_LINES
    assert told.splitlines()[-1] in done.stdout.decode().replace("\r", "\n")


# -- the collector ------------------------------------------------------------------------------------------
class Receiver:
    """An upload endpoint for the collector script: answers like the API, remembers what it got."""

    def __init__(self, token: str, refuse: dict[str, int] | None = None, unavailable_once: bool = False):
        self.token, self.refuse, self.unavailable_once = token, dict(refuse or {}), unavailable_once
        self.got: dict[str, bytes] = {}
        self.largest_read = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # so a request's Expect: 100-continue is answered

            def log_message(self, *a):
                pass

            def do_PUT(self):  # noqa: N802
                name = unquote(self.path.split("/files/", 1)[1])
                if self.headers["Authorization"] != f"Bearer {receiver.token}":
                    return self.answer(403, {"detail": "the collect token is not valid"})
                if name in receiver.refuse:
                    return self.answer(receiver.refuse[name], {"detail": f"{name} refused"})
                if receiver.unavailable_once:
                    receiver.unavailable_once = False
                    return self.answer(503, {"detail": "away"})
                left, body = int(self.headers["Content-Length"]), bytearray()
                while left:
                    block = self.rfile.read(min(left, 1 << 16))
                    receiver.largest_read = max(receiver.largest_read, len(block))
                    body += block
                    left -= len(block)
                receiver.got[name] = bytes(body)
                self.answer(200, {"name": name, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()})

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/base"

    def stop(self):
        self.server.shutdown()


def collect(jd: Path, receiver: Receiver, token: str, out_mb: int = 10, log_mb: int = 10):
    env = {**os.environ, "JOB_DIR": str(jd), "JOB_ID": "job-1", "COLLECT_URL": receiver.url, "COLLECT_TOKEN": token,
           "MAX_OUTPUT_MB": str(out_mb), "MAX_LOG_MB": str(log_mb), "MAX_FILES": "100", "MAX_MANIFEST_BYTES": "65536"}
    return subprocess.run([sys.executable, "-c", ps.COLLECT_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def job_dir(tmp_path):
    jd = unpack(tmp_path, {"sub/run.sumocfg": b"<c/>", "sub/net.xml": b"<net/>"})
    (jd / "run/sub/out.xml").write_bytes(b"<out/>" * 50_000)
    (jd / "run/sub/net.xml").write_bytes(b"<net/>")  # rewritten, unchanged: still an input
    (jd / "run/sub/a name with spaces & % ?.xml").write_bytes(b"odd")
    (jd / "run/sumo.log").write_bytes(b"a run's own file named like the job's log")
    (jd / "run/link.xml").symlink_to("/etc/passwd")
    (jd / "run/bad\nname.xml").write_bytes(b"x")
    (jd / "sumo.log").write_bytes(b"hello\n")
    (jd / "sumo-statistics.xml").write_bytes(b"<statistics/>")
    return jd


def test_the_collector_uploads_every_output_streamed_and_prints_its_manifest(job_dir):
    receiver = Receiver("t0k", unavailable_once=True)
    try:
        done = collect(job_dir, receiver, "t0k")
    finally:
        receiver.stop()
    assert done.returncode == 0, done.stderr
    manifest = parse_manifest(done.stdout)
    names = [f["name"] for f in manifest["files"]]
    assert names == ["sub/a name with spaces & % ?.xml", "sub/out.xml", "sumo-statistics.xml", "sumo.log"]
    for f in manifest["files"]:
        assert receiver.got[f["name"]] and hashlib.sha256(receiver.got[f["name"]]).hexdigest() == f["sha256"]
        assert len(receiver.got[f["name"]]) == f["size"]
    reasons = dict(manifest["skipped"])
    assert "reserved" in reasons["sumo.log"] and reasons["link.xml"] == "not a regular file"
    assert "control character" in reasons["bad\nname.xml"]
    assert done.stdout.count("\n") == 1  # the manifest is all it prints
    assert manifest["max_rss_kib"] < 64 * 1024


def test_outputs_past_max_output_mb_or_refused_are_left_out_not_fatal(job_dir):
    (job_dir / "run/sub/big.bin").write_bytes(os.urandom(1024 * 1024))
    receiver = Receiver("t0k", refuse={"sub/a name with spaces & % ?.xml": 422})
    try:
        done = collect(job_dir, receiver, "t0k", out_mb=1)
    finally:
        receiver.stop()
    assert done.returncode == 0, done.stderr
    manifest = parse_manifest(done.stdout)
    skipped = dict(manifest["skipped"])
    assert skipped["sub/big.bin"] == "past MAX_OUTPUT_MB" and "refused" in skipped["sub/a name with spaces & % ?.xml"]
    assert "sub/big.bin" not in receiver.got and {f["name"] for f in manifest["files"]} == set(receiver.got)


def test_a_refused_token_fails_the_collector_naming_the_refusal(job_dir):
    receiver = Receiver("right")
    try:
        done = collect(job_dir, receiver, "wrong")
    finally:
        receiver.stop()
    assert done.returncode == 1 and "403" in done.stderr and "not valid" in done.stderr
    assert receiver.got == {} and ps.MANIFEST_PREFIX not in done.stdout
