"""Reading a pod's log through the API server without offsets: resume marks, bounded reads, tails.

``pods/log`` has no byte offset, and the kubelet rotates the file behind it (containerLogMaxSize; then it returns
the current file only), so a reader resumes by time: ``timestamps=true`` prefixes every line with the moment it
was written (RFC3339, nanoseconds), ``sinceTime`` (whole seconds) starts the answer at or before the last line
delivered, and the lines up to it are skipped as they stream by.  A :class:`Mark` names that point exactly: the
last line's timestamp, how many lines with that very timestamp were delivered whole, and how many bytes of the
next one (a line longer than a read).  Every read holds at most ``limit`` bytes plus one chunk of the answer.

The parsing is pure (``tests/unit/test_k8s_pod_log.py``); :func:`request` is the one call to the API server.
"""
from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

CHUNK = 64 * 1024
_TS = re.compile(rb"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
_MAX_TS = 64


def parse_timestamp(raw: bytes) -> int:
    """Nanoseconds since the epoch of an RFC3339 timestamp (``2025-01-02T03:04:05.123456789Z``, any offset)."""
    m = _TS.match(raw)
    if m is None:
        raise ValueError(f"not an RFC3339 timestamp: {raw[:_MAX_TS]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second))
    zone = m.group(8)
    if zone != b"Z":
        sign = 1 if zone[:1] == b"+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    fraction = (m.group(7) or b"").ljust(9, b"0")
    return seconds * 1_000_000_000 + int(fraction)


@dataclass(frozen=True)
class Mark:
    """Where a reader of a pod log is: ``dup`` lines stamped ``ns`` were delivered whole, and ``part`` bytes of
    the next line stamped ``ns``."""

    ns: int
    dup: int = 1
    part: int = 0

    def token(self) -> str:
        return f"{self.ns}.{self.dup}.{self.part}"

    @classmethod
    def parse(cls, token: str) -> "Mark":
        """The mark a token names; ValueError for anything :meth:`token` did not make."""
        parts = token.split(".")
        if len(parts) != 3 or not all(p.isdigit() and len(p) <= 20 for p in parts):
            raise ValueError(f"not a pod log mark: {token!r}")
        return cls(*(int(p) for p in parts))

    def since_time(self) -> str:
        """``sinceTime`` for the API server: the mark's second (it takes whole seconds), in UTC."""
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.ns // 1_000_000_000))


def after(chunks: Iterable[bytes], mark: Mark | None, limit: int) -> tuple[bytes, Mark | None]:
    """From a ``timestamps=true`` answer, up to ``limit`` bytes of content after ``mark`` (timestamps taken
    off), and the mark after them (``mark`` itself when nothing new came).

    Whole lines, except a line that does not fit ``limit`` whole (it is cut, the mark says where) and a last
    line still being written (delivered up to its last CR, SUMO's progress lines; the rest comes later).
    """
    out = bytearray()
    new = mark
    ts = bytearray()
    reading_ts, first = True, True
    line_ns, line_dup, pos, skip = -1, 0, 0, 0
    held = bytearray()  # the current line's content not delivered yet (waiting for a CR or LF to end it)
    for chunk in chunks:
        i, n = 0, len(chunk)
        while i < n:
            if reading_ts:
                # The kubelet stamps a line where it starts: an answer whose sinceTime falls inside a line begins
                # with that line's rest, unstamped.  It started before sinceTime, so before the mark: skip it.
                space, lf = chunk.find(b" ", i), chunk.find(b"\n", i)
                if lf >= 0 and (space < 0 or lf < space):
                    _unstamped(first, ts + chunk[i:lf])
                    ts.clear()
                    i, first = lf + 1, False
                    continue
                ts += chunk[i:] if space < 0 else chunk[i:space]
                i = n if space < 0 else space + 1
                ns = None
                if len(ts) <= _MAX_TS and space >= 0:
                    try:
                        ns = parse_timestamp(bytes(ts))
                    except ValueError:
                        pass
                if ns is None and (space >= 0 or len(ts) > _MAX_TS):
                    _unstamped(first, ts)
                    ts.clear()
                    reading_ts, skip, first = False, -1, False
                    continue
                if ns is None:
                    break
                ts.clear()
                first = False
                line_dup = line_dup + 1 if ns == line_ns else 1
                line_ns, pos, reading_ts = ns, 0, False
                skip = _skip(mark, ns, line_dup)
                held.clear()
                continue
            lf = chunk.find(b"\n", i)
            end = n if lf < 0 else lf + 1
            piece = chunk[i:end]
            i = end
            reading_ts = lf >= 0
            if skip < 0:
                continue
            if skip:
                dropped = min(skip, len(piece))
                skip, pos, piece = skip - dropped, pos + dropped, piece[dropped:]
                if skip:
                    continue
            held += piece
            ready = len(held) if lf >= 0 else held.rfind(b"\r") + 1
            room = limit - len(out)
            if ready > room or (not ready and len(held) > room):
                if out:
                    return bytes(out), new  # the next read starts with this line
                ready = room  # one line longer than a whole read: cut it
            if ready:
                out += held[:ready]
                pos += ready
                del held[:ready]
                new = Mark(line_ns, line_dup, 0) if lf >= 0 and not held else Mark(line_ns, line_dup - 1, pos)
            if len(out) >= limit:
                return bytes(out), new
    return bytes(out), new


def _unstamped(first: bool, start: bytes) -> None:
    """A line without a timestamp is the rest of one begun before the answer's sinceTime, or an error."""
    if not first:
        raise ValueError(f"pod log line without a timestamp: {bytes(start[:_MAX_TS])!r}")


def _skip(mark: Mark | None, ns: int, dup: int) -> int:
    """Bytes to skip of a line stamped ``ns`` (the ``dup``-th with that stamp): 0 for a new line, -1 for one
    delivered whole, else what was delivered of it."""
    if mark is None or ns > mark.ns:
        return 0
    if ns < mark.ns or dup <= mark.dup:
        return -1
    return mark.part if dup == mark.dup + 1 else 0


def tail(chunks: Iterable[bytes], max_bytes: int) -> bytes:
    """The last ``max_bytes`` of an answer (``tailLines`` picked the lines); when that cuts a line, without it
    (unless it is all there is)."""
    kept = bytearray()
    before = None  # the last byte dropped from the front, once any was
    for chunk in chunks:
        kept += chunk
        if len(kept) > 2 * max_bytes:
            before = kept[len(kept) - max_bytes - 1]
            del kept[:len(kept) - max_bytes]
    if len(kept) > max_bytes:
        before = kept[len(kept) - max_bytes - 1]
        del kept[:len(kept) - max_bytes]
    if before is not None and before not in b"\r\n":
        breaks = [x for x in (kept.find(b"\n"), kept.find(b"\r")) if x >= 0]
        if breaks and min(breaks) < len(kept) - 1:
            del kept[:min(breaks) + 1]
    return bytes(kept)


def skip_then_read(chunks: Iterable[bytes], start: int, limit: int) -> bytes:
    """Bytes ``start:start+limit`` of an answer, holding at most ``limit`` of them."""
    out = bytearray()
    for chunk in chunks:
        if start >= len(chunk):
            start -= len(chunk)
            continue
        out += chunk[start:start + limit - len(out)]
        start = 0
        if len(out) >= limit:
            break
    return bytes(out)


def request(kube, namespace: str, pod: str, timeout, **query) -> Iterator[bytes]:
    """``GET pods/{pod}/log`` with any of its query parameters (``sinceTime`` too, which the generated client
    lacks), as chunks of at most :data:`CHUNK` bytes; the connection is released when the iterator is done."""
    params = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in query.items() if v is not None]
    resp = kube.api.call_api(
        "/api/v1/namespaces/{namespace}/pods/{name}/log", "GET", {"namespace": namespace, "name": pod}, params,
        {"Accept": "application/json"}, auth_settings=["BearerToken"], _return_http_data_only=True,
        _preload_content=False, _request_timeout=timeout)

    def chunks() -> Iterator[bytes]:
        try:
            yield from resp.stream(CHUNK, decode_content=True)
        finally:
            resp.close()
            resp.release_conn()

    return chunks()
