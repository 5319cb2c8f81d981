"""The node agent's kubelet-compatible HTTPS endpoint for container logs.

kube-apiserver serves ``pods/log`` by proxying to
``https://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/{ns}/{pod}/{container}``
with the query parameters ``follow``, ``tailLines``, ``timestamps``,
``sinceSeconds``, ``limitBytes`` and ``previous``.  We serve exactly that
(plus ``/healthz``), with a serving cert from the cluster CA and requiring a
client cert signed by it (the apiserver's ``--kubelet-client-certificate``).

Log files are written by :mod:`devcluster.podrun` as
``<RFC3339Nano> <stream> <line>`` records.
"""
from __future__ import annotations

import datetime as _dt
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

# (namespace, pod, container, previous) -> (log file, is the writer finished?)
Lookup = Callable[[str, str, str, bool], "tuple[Path, Callable[[], bool]] | None"]


def _parse_ts(ts: bytes) -> float:
    return _dt.datetime.strptime(ts.decode(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=_dt.timezone.utc).timestamp()


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
        path, finished = found
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        try:
            self._stream(path, finished, q, truthy("follow"), truthy("timestamps"))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def _stream(self, path: Path, finished, q, follow: bool, timestamps: bool) -> None:
        since = time.time() - int(q["sinceSeconds"]) if "sinceSeconds" in q else None
        limit = int(q["limitBytes"]) if "limitBytes" in q else None
        sent = 0

        def emit(rec: bytes) -> bool:
            nonlocal sent
            try:
                ts, _stream, line = rec.split(b" ", 2)
            except ValueError:
                return True
            if since is not None and _parse_ts(ts) < since:
                return True
            data = (ts + b" " + line) if timestamps else line
            if limit is not None:
                data = data[: max(limit - sent, 0)]
            self.wfile.write(data)
            sent += len(data)
            return limit is None or sent < limit

        with open(path, "rb") as fh:
            records = fh.read().splitlines(keepends=True)
            partial = b""
            if records and not records[-1].endswith(b"\n"):
                partial = records.pop()
            if "tailLines" in q:
                n = int(q["tailLines"])
                records = records[-n:] if n > 0 else []
            for rec in records:
                if not emit(rec):
                    return
            self.wfile.flush()
            if not follow:
                return
            while True:
                done = finished()  # read state *before* draining the file
                chunk = fh.read()
                if chunk:
                    lines = (partial + chunk).splitlines(keepends=True)
                    partial = lines.pop() if not lines[-1].endswith(b"\n") else b""
                    for rec in lines:
                        if not emit(rec):
                            return
                    self.wfile.flush()
                elif done:
                    return
                else:
                    time.sleep(0.2)

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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
