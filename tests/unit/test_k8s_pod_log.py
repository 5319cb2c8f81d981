"""Reading a pod log by timestamp (core.executors.kubernetes.pod_log): resuming after a mark delivers every line
once, in bounded reads, whatever the chunking of the answer and however many lines share one timestamp."""
from __future__ import annotations

import random

import pytest

from core.executors.kubernetes.pod_log import Mark, after, parse_timestamp, skip_then_read, tail


def stamp(seconds: float, nanos: int = 0) -> bytes:
    whole = int(seconds)
    frac = int(round((seconds - whole) * 1e9)) + nanos
    return f"2025-03-04T05:06:{whole:02d}.{frac:09d}Z".encode()


def answer(lines: list[tuple[bytes, bytes]]) -> bytes:
    """A ``timestamps=true`` answer: each line after its timestamp (the kubelet stamps a line once, however many
    pieces it was written in)."""
    return b"".join(ts + b" " + content for ts, content in lines)


def chunked(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 40)
        out.append(data[i:i + n])
        i += n
    return out


LINES = [(stamp(1), b"first\n"), (stamp(1), b"same stamp\n"), (stamp(1), b"and again\n"),
         (stamp(1.5), b"Step #1\rStep #2\rStep #3\n"), (stamp(2), b"x" * 300 + b"\n"),
         (stamp(3), b"Loading\rdone\n"), (stamp(3.25), b"last\n")]
WHOLE = b"".join(content for _, content in LINES)


@pytest.mark.parametrize("limit", [1, 7, 16, 50, 1000])
@pytest.mark.parametrize("seed", range(5))
def test_reading_on_from_each_mark_delivers_everything_once(limit, seed):
    rng = random.Random(seed)
    data, mark, got = answer(LINES), None, b""
    for _ in range(2000):
        # the answer restarts at the mark's second, as sinceTime does, and comes in arbitrary pieces
        start = 0 if mark is None else data.find(stamp(mark.ns // 10**9 % 60))
        piece, new = after(chunked(data[start:], rng), mark, limit)
        assert len(piece) <= limit
        if not piece:
            assert new == mark
            break
        got += piece
        mark = Mark.parse(new.token())  # through the SSE id and back
    assert got == WHOLE


def test_a_line_still_being_written_waits_for_its_end_but_progress_up_to_a_cr_comes_now():
    first, mark = after([answer([(stamp(1), b"a\n"), (stamp(2), b"Step 1\rStep 2\rSte")])], None, 1000)
    assert first == b"a\nStep 1\rStep 2\r"
    rest, mark = after([answer([(stamp(1), b"a\n"), (stamp(2), b"Step 1\rStep 2\rStep 3\n")])], mark, 1000)
    assert rest == b"Step 3\n" and mark == Mark(parse_timestamp(stamp(2)), 1, 0)


def test_lines_before_the_mark_that_share_its_second_are_skipped():
    mark = Mark(parse_timestamp(stamp(5, 500)), 1, 0)
    data = answer([(stamp(5, 100), b"old\n"), (stamp(5, 500), b"delivered\n"), (stamp(5, 900), b"new\n")])
    assert after([data], mark, 100) == (b"new\n", Mark(parse_timestamp(stamp(5, 900)), 1, 0))
    assert mark.since_time() == "2025-03-04T05:06:05Z"


def test_nothing_new_keeps_the_mark():
    mark = Mark(parse_timestamp(stamp(5)), 1, 0)
    assert after([answer([(stamp(5), b"delivered\n")])], mark, 100) == (b"", mark)
    assert after([], None, 100) == (b"", None)


@pytest.mark.parametrize("token", ["", "1.2", "a.b.c", "1.2.3.4", "-1.0.0", "9" * 21 + ".1.0"])
def test_a_mark_this_service_did_not_make_is_refused(token):
    with pytest.raises(ValueError):
        Mark.parse(token)


def test_timestamps_with_an_offset_or_fewer_digits():
    assert parse_timestamp(b"2025-03-04T07:06:01.5+02:00") == parse_timestamp(b"2025-03-04T05:06:01.500000000Z")
    assert parse_timestamp(b"1970-01-01T00:00:01Z") == 10**9
    with pytest.raises(ValueError):
        parse_timestamp(b"yesterday")


def test_an_answer_without_timestamps_is_refused_not_held():
    assert after([b"x" * 100_000], None, 10) == (b"", None)  # an unstamped first line: skipped as it streams by
    with pytest.raises(ValueError, match="without a timestamp"):
        after([b"x" * 1000 + b"\n" + b"y" * 10 + b"\n"], None, 10)


def test_tail_keeps_the_last_bytes_as_whole_lines():
    assert tail([b"one\ntwo\nthree\n"], 100) == b"one\ntwo\nthree\n"
    assert tail([b"one\ntwo\nthree\n"], 9) == b"three\n"  # "o\nthree\n" cut "two": left out
    assert tail([b"one\n", b"two\n", b"three\n"], 10) == b"two\nthree\n"
    assert tail([b"x" * 50], 10) == b"x" * 10  # one line longer than the bound: its end


def test_skip_then_read_holds_only_what_it_returns():
    assert skip_then_read([b"abc", b"defg", b"hij"], 2, 5) == b"cdefg"
    assert skip_then_read([b"abc"], 5, 5) == b""


def test_an_answer_that_starts_inside_a_line_skips_its_unstamped_rest():
    """sinceTime fell inside a line written in pieces: the kubelet sends that line's rest without a timestamp."""
    mark = Mark(parse_timestamp(stamp(10, 300)), 1, 0)
    data = b"rest of an older line\n" + answer([(stamp(10, 300), b"delivered\n"), (stamp(10, 900), b"new\n")])
    assert after([data[:5], data[5:]], mark, 100) == (b"new\n", Mark(parse_timestamp(stamp(10, 900)), 1, 0))
    long_rest = b"y" * 200 + b" and more\n" + answer([(stamp(11), b"new\n")])
    assert after([long_rest], mark, 100)[0] == b"new\n"
    with pytest.raises(ValueError, match="without a timestamp"):  # after the first line, every line is stamped
        after([answer([(stamp(10, 900), b"new\n")]) + b"unstamped\n"], mark, 100)
