"""logs.LineBuffer: output is let through in whole lines only."""

from __future__ import annotations

from rie.observe.logs import LineBuffer


def test_whole_lines_pass_at_once() -> None:
    buf = LineBuffer()
    assert buf.feed(b"one\ntwo\n") == b"one\ntwo\n"
    assert buf.flush() == b""


def test_a_partial_line_waits_for_its_end() -> None:
    buf = LineBuffer()
    assert buf.feed(b"one\ntw") == b"one\n"
    assert buf.feed(b"o and") == b""
    assert buf.feed(b" more\nthree") == b"two and more\n"
    assert buf.flush() == b"three\n"
    assert buf.flush() == b""
    assert buf.feed(b"four\n") == b"four\n"


def test_an_overlong_line_is_cut() -> None:
    buf = LineBuffer(max_partial=8)
    assert buf.feed(b"abc") == b""
    assert buf.feed(b"defgh") == b"abcdefgh\n"
    assert buf.feed(b"x\nabcdefghij") == b"x\nabcdefghij\n"
    assert buf.flush() == b""
