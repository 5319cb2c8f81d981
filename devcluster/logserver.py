"""The node agent's kubelet-compatible HTTPS endpoint for container logs.

kube-apiserver serves ``pods/log`` by proxying to
``https://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/{ns}/{pod}/{container}``
with the query parameters ``follow``, ``tailLines``, ``timestamps``,
``sinceSeconds``, ``sinceTime``, ``limitBytes`` and ``previous``.  We serve exactly that
(plus ``/healthz``), with a serving cert from the cluster CA and requiring a
client cert signed by it (the apiserver's ``--kubelet-client-certificate``).

As the kubelet does (``pkg/kubelet/kuberuntime/logs``): only the container's
current log file is read (rotated ones are not); ``tailLines`` counts the
file's records from its end; a record older than ``sinceTime``/``sinceSeconds``
is skipped; partial records are joined into their line, and ``timestamps``
puts the record's time before each line's first piece only; ``limitBytes``
counts what is sent, prefixes included.  ``follow`` moves on to the new file
when the log is rotated.  Files are read in blocks, never whole.

Log files are written by :mod:`devcluster.containerlog`.
"""
from __future__ import annotations

import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

from .containerlog import MAX_RECORD, parse_record, parse_timestamp

# (namespace, pod, container, previous) -> (log file, is the writer finished?)
Lookup = Callable[[str, str, str, bool], "tuple[Path, Callable[[], bool]] | None"]
BLOCK = 64 * 1024


class _Limit(Exception):
    """limitBytes reached."""


def tail_offset(fh, lines: int) -> int:
    """Where the last ``lines`` records of the file start, found by reading blocks backwards from its end."""
    end = fh.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    pos, seen = end, 0
    while pos > 0:
        step = min(BLOCK, pos)
        pos -= step
        fh.seek(pos)
        block = fh.read(step)
        i = len(block)
        if pos + len(block) == end and block.endswith(b"\n"):
            i -= 1  # the file's final newline ends the last record, it does not start one
        while True:
            i = block.rfind(b"\n", 0, i)
            if i < 0:
                break
            seen += 1
            if seen == lines:
                return pos + i + 1
    return 0


class _Handler(BaseHTTPRequestHandler):
    lookup: Lookup

    def log_message(self, fmt, *args):  # keep agent output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["healthz"]:
            return self._reply(200, b"ok")
        if len(parts) != 4 or parts[0] != "containerLogs":
            return self._reply(404, b"not found")
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        truthy = lambda k: q.get(k, "false").lower() in ("1", "true")  # noqa: E731
        found = self.lookup(parts[1], parts[2], parts[3], truthy("previous"))
        if not found:
            return self._reply(404, f"container {parts[3]} of pod {parts[1]}/{parts[2]} "
                                    "has no logs on this node".encode())
        since = None
        if "sinceTime" in q:
            since = parse_timestamp(q["sinceTime"].encode())
            if since is None:
                return self._reply(400, f"sinceTime {q['sinceTime']!r} is not RFC3339 in UTC".encode())
        elif "sinceSeconds" in q:
            since = (time.time() - int(q["sinceSeconds"])) * 1e9
        path, finished = found
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        try:
            self._stream(path, finished, q, since, truthy("follow"), truthy("timestamps"))
        except (_Limit, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def _stream(self, path: Path, finished, q, since, follow: bool, timestamps: bool) -> None:
        limit = int(q["limitBytes"]) if "limitBytes" in q else None
        state = {"sent": 0, "line_start": True}

        def emit(rec: bytes) -> None:
            got = parse_record(rec)
            if got is None:
                return
            ts, ns, _stream, full, content = got
            line_start, state["line_start"] = state["line_start"], full
            if since is not None and ns < since:
                return  # skipped, but it counts for where lines start (so does the kubelet's reader)
            data = (ts + b" " if timestamps and line_start else b"") + content + (b"\n" if full else b"")
            if limit is not None:
                data = data[: max(limit - state["sent"], 0)]
            self.wfile.write(data)
            state["sent"] += len(data)
            if limit is not None and state["sent"] >= limit:
                raise _Limit

        fh = open(path, "rb")
        try:
            if "tailLines" in q:
                fh.seek(tail_offset(fh, int(q["tailLines"])))
            partial = b""
            while True:
                done = finished()  # read state *before* draining the file
                block = fh.read(BLOCK)
                if block:
                    records = (partial + block).split(b"\n")
                    partial = records.pop()
                    if len(partial) > 4 * MAX_RECORD:
                        partial = b""  # not a record of ours: drop it rather than grow
                    for rec in records:
                        emit(rec)
                    continue
                self.wfile.flush()
                if not follow:
                    return
                if _rotated(path, fh):
                    fh.close()
                    fh, partial = open(path, "rb"), b""
                    continue
                if done:
                    return
                time.sleep(0.2)
        finally:
            fh.close()

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _rotated(path: Path, fh) -> bool:
    """Whether ``path`` now names another file than the one ``fh`` reads (the log was rotated)."""
    try:
        return os.stat(path).st_ino != os.fstat(fh.fileno()).st_ino
    except FileNotFoundError:
        return False


def serve(port: int, cert: Path, key: Path, client_ca: Path, lookup: Lookup) -> ThreadingHTTPServer:
    """Start the HTTPS log server on 127.0.0.1:``port`` in a daemon thread."""
    handler = type("LogHandler", (_Handler,), {"lookup": staticmethod(lookup)})
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(str(client_ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    # handshake lazily in the per-request thread, not in the accept loop
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=srv.serve_forever, name="logserver", daemon=True).start()
    return srv
