"""A log's lines as core.log_text and core.services.logs see them: the last N read backwards from the end
(LF, CR and CR LF end a line), the whole-line pieces a stream sends, and the JSON written piece by piece."""
from __future__ import annotations

import json
import random
import re

import pytest
from starlette.responses import JSONResponse

from core import log_text
from core.executors.base import JobSpec, LogPosition
from core.services import logs
from core.services.errors import Invalid
from core.services.logs import CHUNK, whole_lines
from core.storage.local import LocalStore

LINES = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def reference_tail(data: bytes, lines: int) -> bytes:
    """The last ``lines`` lines, by splitting the whole log (what tail must equal, without its cap)."""
    return b"".join(LINES.findall(data)[-lines:])


class Reads:
    """``read_at`` over bytes, counting what was read."""

    def __init__(self, data: bytes) -> None:
        self.data, self.calls, self.bytes = data, 0, 0

    def __call__(self, start: int, length: int) -> bytes:
        self.calls += 1
        self.bytes += length
        return self.data[start:start + length]


def tail(data: bytes, lines: int, max_bytes: int = 1 << 30) -> bytes:
    return log_text.tail(Reads(data), len(data), lines, max_bytes)


# -- tail ---------------------------------------------------------------------------------------------
def test_tail_counts_lf_cr_and_crlf_as_line_ends():
    log = b"one\ntwo\r\nthree\rfour\n"
    assert tail(log, 1) == b"four\n"
    assert tail(log, 2) == b"three\rfour\n"
    assert tail(log, 3) == b"two\r\nthree\rfour\n"
    assert tail(log, 4) == log
    assert tail(log, 100) == log


def test_a_last_line_without_its_end_is_a_line():
    assert tail(b"a\nb\nlast", 1) == b"last"
    assert tail(b"a\nb\nlast", 2) == b"b\nlast"
    assert tail(b"Step #1\rStep #2\rStep #3", 2) == b"Step #2\rStep #3"


def test_empty_lines_count():
    assert tail(b"a\n\n\n", 2) == b"\n\n"
    assert tail(b"\r\n\r\n", 1) == b"\r\n"
    assert tail(b"\r\r\n", 1) == b"\r\n"
    assert tail(b"\r\r\n", 2) == b"\r\r\n"


def test_nothing_to_tail():
    assert tail(b"", 5) == b""
    assert tail(b"abc\n", 0) == b""


@pytest.mark.parametrize("seed", range(40))
def test_tail_equals_splitting_the_whole_log(seed, monkeypatch):
    """Random logs of line ends and text (multi-byte characters too), read in blocks small enough that a
    CR LF, a character and a line fall across block boundaries."""
    rnd = random.Random(seed)
    monkeypatch.setattr(log_text, "TAIL_FIRST_BLOCK", rnd.choice([1, 2, 3, 7, 64]))
    monkeypatch.setattr(log_text, "TAIL_MAX_BLOCK", rnd.choice([3, 16, 256]))
    parts = [b"\n", b"\r", b"\r\n", b"x", b"Step #12.00", "é€".encode(), b""]
    log = b"".join(rnd.choice(parts) for _ in range(rnd.randrange(0, 400)))
    for lines in (1, 2, 3, 10, 50, 1000):
        assert tail(log, lines) == reference_tail(log, lines), (log, lines)


def test_the_byte_cap_bounds_what_is_read_and_returned():
    log = b"first\n" + b"x" * 10_000 + b"\nlast\n"
    reads = Reads(log)
    got = log_text.tail(reads, len(log), 2, 1000)
    assert got == log[-1000:]
    assert reads.bytes == 1000  # nothing before the cap is read


def test_a_gigabyte_line_is_read_only_as_far_as_the_cap():
    """One line of 1 GiB: the tail is its last max_bytes, in a few reads, without reading the rest."""
    size, cap = 1 << 30, 4 << 20

    def read_at(start: int, length: int) -> bytes:
        assert start >= size - cap
        reads.append(length)
        return b"y" * length

    reads: list[int] = []
    got = log_text.tail(read_at, size, 100, cap)
    assert len(got) == cap and sum(reads) == cap
    assert len(reads) <= 10  # the blocks grow


def test_a_cut_begins_at_a_character():
    log = "é".encode() * 1000
    got = log_text.tail(Reads(log), len(log), 1, 101)  # 101 bytes from the end: inside an é
    assert got == "é".encode() * 50
    assert got.decode("utf-8") == "é" * 50


def test_a_log_that_changes_while_read_is_an_error_not_a_wrong_answer():
    with pytest.raises(OSError):
        log_text.tail(lambda start, length: b"short", 100, 3, 1000)


# -- whole lines (the stream's pieces) ----------------------------------------------------------------
def test_a_line_being_written_waits_for_its_end():
    assert whole_lines(b"one\ntwo\nthr", final=False) == b"one\ntwo\n"
    assert whole_lines(b"thr", final=False) == b""
    assert whole_lines(b"three\n", final=False) == b"three\n"


def test_a_carriage_return_ends_a_line_too():  # SUMO's step log rewrites one line with CR
    assert whole_lines(b"Step #1\rStep #2\rSte", final=False) == b"Step #1\rStep #2\r"


def test_the_final_piece_goes_whole_once_nothing_more_is_written():
    assert whole_lines(b"last\nno newline", final=True) == b"last\n"
    assert whole_lines(b"no newline", final=True) == b"no newline"
    assert whole_lines(b"", final=True) == b""


def test_a_line_longer_than_a_read_goes_as_it_is():
    long = b"x" * CHUNK
    assert whole_lines(long, final=False) == long


def test_a_line_longer_than_a_read_is_cut_at_a_character():
    long = b"x" * (CHUNK - 1) + "€".encode()[:1]
    assert whole_lines(long, final=False) == b"x" * (CHUNK - 1)


@pytest.mark.parametrize("text,cut", [("abc", 3), ("ab€", 5), ("é", 2), ("𝄞", 4)])
def test_complete_utf8(text, cut):
    data = text.encode()
    assert log_text.complete_utf8(data) == cut
    last = text[-1].encode()
    for keep in range(1, len(last)):  # a last character cut short is left out
        assert log_text.complete_utf8(data[:len(data) - len(last) + keep]) == len(data) - len(last)
    assert log_text.complete_utf8(b"\x80\x80\x80\x80\x80") == 5  # not UTF-8 at all: as it is


# -- the JSON document ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(20))
def test_json_pieces_join_to_the_whole_document(seed):
    """Cut anywhere (inside a character, between a CR and its LF, inside invalid bytes), the pieces
    are exactly what Starlette's JSONResponse renders for the whole text."""
    rnd = random.Random(seed)
    alphabet = [b"a", b"\n", b"\r", b'"', b"\\", b"\x00", b"\x1f", "é€𝄞\u2028".encode(), b"\xff", b"\xe2\x82", b"\t"]
    data = b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 300)))
    cuts = sorted(rnd.sample(range(len(data) + 1), min(len(data) + 1, rnd.randrange(0, 30))))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    body = b"".join(log_text.json_document({"job_id": "j-1"}, "logs", chunks))
    expected = JSONResponse({"job_id": "j-1", "logs": data.decode("utf-8", errors="replace")}).body
    assert body == expected
    assert json.loads(body)["logs"] == data.decode("utf-8", errors="replace")


def test_an_empty_log_is_an_empty_string():
    assert b"".join(log_text.json_document({"job_id": "j"}, "logs", [])) == b'{"job_id":"j","logs":""}'


# -- resuming a stream ---------------------------------------------------------------------------------
def test_last_event_id_is_a_position_token():
    assert logs.resume_at(None) == LogPosition()
    assert logs.resume_at("") == LogPosition()
    assert logs.resume_at("1234") == LogPosition(1234)
    assert logs.resume_at("77@2024-01-01T00:00:00.5Z") == LogPosition(77, "2024-01-01T00:00:00.5Z")
    for bad in ("-1", "abc", "12@", "1" * 101, " 5"):
        with pytest.raises(Invalid, match="Last-Event-ID"):
            logs.resume_at(bad)


class StoreContext:
    """The one thing Follower reads from for an archived log: a real (directory) store."""

    def __init__(self, root) -> None:
        self.store = LocalStore(root)


SPEC = JobSpec("job-1", "acme", "ns", 1, 1, "a.sumocfg", "inputs/acme/job-1.zip", 60)
ARCHIVED = {"log_archived": True}


def follow(ctx, position: LogPosition = LogPosition()) -> list[tuple[str, str]]:
    follower, out = logs.Follower(SPEC, position), []
    while (piece := follower.next(ctx, ARCHIVED, final=True)) is not None:
        out.append(piece)
    return out


def test_a_stream_resumes_at_any_token_it_sent(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "CHUNK", 64)
    log = b"".join(f"Step #{i}.00 (1ms ~= 1000.00*RT)\r".encode() if i % 3 else f"line {i}\n".encode() for i in range(200))
    ctx = StoreContext(tmp_path)
    ctx.store.put_bytes(SPEC.log_key, log)
    pieces = follow(ctx)
    assert "".join(text for text, _ in pieces).encode() == log
    assert all(text.endswith(("\n", "\r")) for text, _ in pieces)  # whole lines, CR-ended ones too
    for i, (_, token) in enumerate(pieces):
        rest = follow(ctx, logs.resume_at(token))
        assert rest == pieces[i + 1:]


def test_a_crlf_cut_between_two_reads_is_one_line_end(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "CHUNK", 4)
    ctx = StoreContext(tmp_path)
    ctx.store.put_bytes(SPEC.log_key, b"abc\r\ndef\r\n")
    pieces = follow(ctx)
    assert [t for t, _ in pieces] == ["abc\r", "", "def\r", ""]  # the LFs moved the position, sent no line
    assert [token for _, token in pieces] == ["4", "5", "9", "10"]
