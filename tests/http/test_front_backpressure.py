"""A streamed Function URL answer whose client does not read (issue 16, item 5), end to end: three
raw-socket clients ask for 150 MiB each and read nothing; the runtime's streams must wait for them
(rie holds each stream once its client is 1 MiB behind) rather than rie buffering 450 MiB. rie's
peak RSS (the kernel's VmHWM, so no sampling is needed) bounds what it held."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from tests.helpers import RieProcess
from tests.http.conftest import Front, front

MB = 1024 * 1024
STREAM_MB = 150
CLIENTS = 3
# a few MiB per stream in rie at most (1 MiB queued, a read, a write); generous for the allocator
GROWTH_LIMIT = 64 * MB


def _kb(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert m, status
    return int(m.group(1)) * 1024


def _wait_lines(r: RieProcess, pattern: str, start: int) -> list[str]:
    """The first CLIENTS lines from `start` matching `pattern`, once printed."""
    rx = re.compile(pattern)
    found: list[str] = []
    while len(found) < CLIENTS:
        r.wait_for(rx, 120, start)
        lines = r.lines
        start = next(i for i in range(start, len(lines)) if rx.search(lines[i]))
        found.append(lines[start])
        start += 1
    return found


def _drain(sock: socket.socket) -> int:
    """Read one chunked answer to its end without keeping it; the body's size."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower(), head
    total = 0
    while True:
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        line, _, buf = buf.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            return total
        while len(buf) < size + 2:
            data = sock.recv(max(65536, size + 2 - len(buf)))
            assert data, "the answer ended early"
            buf += data
        total += size
        buf = buf[size + 2 :]


def test_clients_that_do_not_read_hold_the_stream_not_rie_memory(tmp_path: Path) -> None:
    flags = ["--http-invoke-mode", "RESPONSE_STREAM", "--max-concurrency", str(CLIENTS)]
    flags += ["--timeout", "300", "--log-level", "debug"]
    # the files the function writes are in a directory its environment names (the sandbox keeps
    # it reachable: docs/resources.md)
    with front(*flags, handler="streams.big", env={"TEST_FILES": str(tmp_path)}) as r:
        f = Front(r)
        assert r.proc is not None
        pid = r.proc.pid
        host, port = f.url.removeprefix("http://").split(":")
        baseline = _kb(pid, "VmRSS")
        done = [tmp_path / f"done-{i}" for i in range(CLIENTS)]
        start = len(r.lines)
        socks = []
        for path in done:
            s = socket.create_connection((host, int(port)), timeout=120)
            # a small receive buffer, so that what the kernel holds does not hide rie's own
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(f"GET /?mb={STREAM_MB}&done={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(s)
        try:
            # each stream waits for its client; had rie buffered them, they would all be done
            ends = _wait_lines(r, r"the client is behind: the stream waits|END RequestId", start)
            assert all("behind" in line for line in ends), ends
            assert not any(p.exists() for p in done)
            held = _kb(pid, "VmHWM") - baseline
            assert held < GROWTH_LIMIT, f"rie grew by {held // MB} MiB"
            # then the clients read: every byte arrives, and rie never held much more
            for s in socks:
                assert _drain(s) == STREAM_MB * MB
        finally:
            for s in socks:
                s.close()
        peak = _kb(pid, "VmHWM") - baseline
        assert peak < GROWTH_LIMIT, f"rie grew by {peak // MB} MiB at its peak"
        print(f"rie RSS: {baseline // MB} MiB before, peak +{peak // MB} MiB")
