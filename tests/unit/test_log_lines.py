"""The log stream sends whole lines: what core.services.logs.whole_lines keeps of a read."""
from __future__ import annotations

from core.services.logs import CHUNK, whole_lines


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
