"""A job's log as bytes: where its lines end, its last lines read from its end, the whole-line pieces a
stream sends, and its text as a JSON string written piece by piece.

A line ends with LF, with CR (SUMO's step log rewrites its progress line with CR) or with CR LF (one end).
Everything here is pure: a log is read through a ``read_at(start, length)`` callable (a file's ``pread``,
an object store's ``read_range``), so a live file, an archived object and a test's bytes are read the same
way, and every function holds at most the bytes its caller bounds.
"""
from __future__ import annotations

import codecs
import json
import re
from typing import Callable, Iterable, Iterator

LINE_END = re.compile(rb"\r\n|\r|\n")

#: The first ranged read from a log's end; each further one is twice as large, up to TAIL_MAX_BLOCK.
TAIL_FIRST_BLOCK = 64 * 1024
TAIL_MAX_BLOCK = 1024 * 1024


def tail(read_at: Callable[[int, int], bytes], size: int, lines: int, max_bytes: int) -> bytes:
    """The last ``lines`` lines of a log of ``size`` bytes, read backwards from its end in ranged reads.

    A last line without its line end counts as a line.  At most ``max_bytes`` are read and returned: when
    the last lines are longer than that (one line of a gigabyte), the answer is the log's last ``max_bytes``
    bytes, so it starts inside its first line (at a character's start, not inside a UTF-8 sequence).
    """
    if size <= 0 or lines <= 0 or max_bytes <= 0:
        return b""
    floor = max(0, size - max_bytes)
    pieces: list[bytes] = []  # the last read first
    hi, block, found, start = size, TAIL_FIRST_BLOCK, 0, None
    after = b""  # the byte just after [lo, hi): a CR there is one line end with it when it is a LF
    while hi > floor and start is None:
        lo = max(floor, hi - block)
        data = read_at(lo, hi - lo)
        if len(data) != hi - lo:
            raise OSError(f"the log changed while its end was read ({len(data)} bytes at {lo}, not {hi - lo})")
        pieces.append(data)
        ends = [m.end() for m in LINE_END.finditer(data)]
        if ends and after == b"\n" and data.endswith(b"\r"):
            ends.pop()  # the CR of a CR LF whose LF the read after this one counted
        for end in reversed(ends):
            if lo + end == size:
                continue  # the end of the last line, not a line before it
            found += 1
            if found == lines:
                start = lo + end
                break
        after, hi, block = data[:1], lo, min(2 * block, TAIL_MAX_BLOCK)
    text = b"".join(reversed(pieces))
    first = size - len(text)
    if start is None:
        start = first
        if first > 0:  # cut by max_bytes: begin at a character, not inside one
            start += next((i for i in range(min(3, len(text))) if not _continuation(text[i])), 0)
    return text[start - first:]


def _continuation(byte: int) -> bool:
    return 0x80 <= byte < 0xC0


def complete_utf8(data: bytes) -> int:
    """The length of ``data`` without an incomplete UTF-8 sequence at its end (a read cut inside a
    character); all of it when its end is no such sequence."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if _continuation(byte):
            continue
        need = 2 if 0xC0 <= byte < 0xE0 else 3 if 0xE0 <= byte < 0xF0 else 4 if 0xF0 <= byte < 0xF8 else 1
        return len(data) - back if need > back else len(data)
    return len(data)


def whole_lines(chunk: bytes, *, final: bool, full: bool) -> bytes:
    """The part of ``chunk`` (read at the log's current end) to send now: up to its last line end, so each
    piece is whole lines, which a client can print as they come; a line still being written waits for its
    end.  All of it when the log is ``final`` (nothing more will be written); when one line fills a
    ``full`` read, as much of it as ends at a character."""
    end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
    if end:
        return chunk[:end]  # the rest comes with the next read
    if final:
        return chunk
    if full:
        return chunk[:complete_utf8(chunk) or len(chunk)]
    return b""


class JsonString:
    """A JSON string literal's content, written piece by piece from a log's bytes: UTF-8 decoded
    incrementally (a character cut between two pieces stays whole; invalid bytes become U+FFFD) and escaped
    as ``json.dumps`` escapes, so the pieces joined are exactly the literal of the whole text."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def piece(self, data: bytes, *, final: bool = False) -> bytes:
        text = self._decoder.decode(data, final)
        return json.dumps(text, ensure_ascii=False)[1:-1].encode() if text else b""


def json_document(fields: dict[str, str], name: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The pieces of ``{**fields, name: <the text of chunks>}`` as compact JSON (Starlette's JSONResponse
    separators), one piece per chunk: memory O(a chunk) whatever the text's length."""
    head = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))[:-1]
    yield f"{head}{',' if fields else ''}{json.dumps(name)}:\"".encode()
    text = JsonString()
    for chunk in chunks:
        if piece := text.piece(chunk):
            yield piece
    yield text.piece(b"", final=True) + b'"}'
