"""InvokeWithResponseStream to a caller that does not read: the runtime's stream waits for it
(rie holds the stream once the caller's socket is behind) rather than rie buffering it all. rie's
peak RSS (the kernel's VmHWM, so no sampling is needed) bounds what it held."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

from tests.helpers import rie

FIX = Path(__file__).resolve().parents[1] / "http" / "fixtures"
PATH = "/2021-11-15/functions/function/response-streaming-invocations"
MB = 1024 * 1024
STREAM_MB = 150
GROWTH_LIMIT = 64 * MB  # a few MiB in flight; generous for the allocator


def _kb(pid: int, field: str) -> int:
    m = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert m
    return int(m.group(1)) * 1024


def _read_all(sock: socket.socket) -> int:
    """Read the chunked answer to its end without keeping it; how many bytes of it."""
    total = 0
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return total
        total += len(data)
        if data.endswith(b"0\r\n\r\n"):
            return total


def test_a_caller_that_does_not_read_holds_the_stream_not_rie_memory(tmp_path: Path) -> None:
    flags = ["--task-root", str(FIX), "--handler", "streams.big", "--timeout", "300"]
    flags += ["--log-level", "debug", "--", sys.executable, "-m", "runtime"]
    with rie(*flags) as r:
        assert r.proc is not None
        pid = r.proc.pid
        baseline = _kb(pid, "VmRSS")
        done = tmp_path / "done"
        event = json.dumps({"queryStringParameters": {"mb": str(STREAM_MB), "done": str(done)}})
        s = socket.create_connection((r.host, r.port), timeout=120)
        try:
            # a small receive buffer, so that what the kernel holds does not hide rie's own
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(event)}\r\n\r\n"
            s.sendall(head.encode() + event.encode())
            r.wait_for(r"the caller is behind: the stream waits", 120)
            assert not done.exists()  # had rie buffered the stream, it would be over
            assert _kb(pid, "VmHWM") - baseline < GROWTH_LIMIT
            # then the caller reads: every byte arrives, and rie never held much more
            assert _read_all(s) > STREAM_MB * MB
        finally:
            s.close()
        peak = _kb(pid, "VmHWM") - baseline
        assert peak < GROWTH_LIMIT, f"rie grew by {peak // MB} MiB at its peak"
