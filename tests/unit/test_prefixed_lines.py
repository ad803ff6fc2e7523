"""Whole lines and prefixes compose: two environments' output, each through its own LineBuffer,
into one function's PrefixedSink over the shared sink, gives whole lines prefixed once each, however
the writes are cut and interleaved."""

from __future__ import annotations

from pathlib import Path

from rie.observe.logs import LineBuffer, PrefixedSink, Sink


def test_interleaved_partial_writes_of_two_environments(tmp_path: Path) -> None:
    out = tmp_path / "log"
    with out.open("wb") as f:
        shared = Sink(fd=f.fileno())
        alpha, beta = PrefixedSink(shared, "[alpha] "), PrefixedSink(shared, "[beta] ")
        a1, a2, b1 = LineBuffer(), LineBuffer(), LineBuffer()  # alpha has two environments
        writes = [
            (a1, alpha, b"a1 first "),
            (a2, alpha, b"a2 fir"),
            (b1, beta, b"b1 one\nb1 tw"),
            (a1, alpha, b"half\na1 second"),
            (a2, alpha, b"st\n"),
            (b1, beta, b"o\n"),
        ]
        for buffer, sink, data in writes:
            sink.write(buffer.feed(data))
        alpha.write(a1.flush())  # the invocation ended: its unfinished line is ended
        shared.flush()
    assert out.read_bytes().decode().splitlines() == [
        "[beta] b1 one",
        "[alpha] a1 first half",
        "[alpha] a2 first",
        "[beta] b1 two",
        "[alpha] a1 second",
    ]
