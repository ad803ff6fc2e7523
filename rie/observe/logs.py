"""Log lines in Lambda's format, the emulator's stdout sink and each invocation's log tail.

START, END and REPORT are written in Lambda's order with the invocation's own request id and
measured figures; the runtime's own output is passed through as it arrives, in whole lines (a
`LineBuffer` per environment), so that lines of several environments never interleave and platform
lines stand on their own. Each invocation keeps the last 4 KB of its log for
`X-Amz-Log-Type: Tail`.
"""

from __future__ import annotations

import asyncio
import math
import os
import time

TAIL_BYTES = 4096
LOG_LIMIT = 64 * 1024  # of each invocation's log, kept for the dashboard (rie/observe/feed.py)


def utc_timestamp(epoch: float | None = None) -> str:
    """`2026-11-22T07:14:43.123Z`, as Lambda stamps its own lines."""
    t = time.time() if epoch is None else epoch
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def billed_ms(duration_ms: float) -> int:
    return max(1, math.ceil(duration_ms))


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}\n"


def report_line(
    request_id: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_used_mb: int,
    init_duration_ms: float | None = None,
    status: str | None = None,
    error_type: str | None = None,
) -> str:
    # one f-string in the common case (no init, no status): it is written for every invocation
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {billed_ms(duration_ms)} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {max_memory_used_mb} MB\t"
    )
    if init_duration_ms is not None:
        line += f"Init Duration: {init_duration_ms:.2f} ms\t"
    if status is not None:
        line += f"Status: {status}\t"
        if status == "error" and error_type:
            line += f"Error Type: {error_type}\t"
    return line + "\n"


def init_report_line(duration_ms: float, status: str, error_type: str | None = None) -> str:
    fields = [f"Init Duration: {duration_ms:.2f} ms", "Phase: init", f"Status: {status}"]
    if error_type:
        fields.append(f"Error Type: {error_type}")
    return "INIT_REPORT " + "\t".join(fields) + "\n"


def timeout_line(request_id: str, timeout_s: float) -> str:
    return f"{utc_timestamp()} {request_id} Task timed out after {timeout_s:.2f} seconds\n"


class Sink:
    """Where the function's log goes: the emulator's stdout.

    Lines are gathered and written at most `FLUSH_AFTER_S` after the first of them (or at once
    by `flush`: an environment flushes after REPORT, before its caller is answered), so that a
    short invocation's START, output, END and REPORT (written in different turns of the event
    loop: START when the runtime takes the event, END and REPORT when it answers) cost one system
    call, not two or four.
    """

    _FLUSH_NOW = 1 << 16
    FLUSH_AFTER_S = 0.002  # late enough to gather an invocation, too early for anyone to notice

    def __init__(self, fd: int = 1) -> None:
        self._fd = fd
        self._pending = bytearray()
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= self._FLUSH_NOW:
            self.flush()
        elif not self._scheduled:
            try:
                asyncio.get_running_loop().call_later(self.FLUSH_AFTER_S, self._timed_flush)
                self._scheduled = True
            except RuntimeError:  # no loop (start-up, shutdown): write at once
                self.flush()

    def _timed_flush(self) -> None:
        # the one timer pending stays pending through flushes in between (an environment's after
        # each REPORT): lines written meanwhile still go out within FLUSH_AFTER_S, and a stream
        # of short invocations costs one timer every FLUSH_AFTER_S, not one per invocation
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        view = memoryview(self._pending)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                continue
            except OSError:
                break  # stdout closed: the log is lost, the emulator must go on
            view = view[written:]
        view.release()
        self._pending.clear()


class Tail:
    """The last TAIL_BYTES of one invocation's log, cheap to append to; up to `keep` bytes when
    the dashboard wants more of it (`whole`)."""

    __slots__ = ("_buf", "_keep", "cut")

    def __init__(self, keep: int = TAIL_BYTES) -> None:
        self._buf = bytearray()
        self._keep = keep
        self.cut = False  # its beginning was let go

    def append(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > 2 * self._keep:
            del self._buf[: -self._keep]
            self.cut = True

    def value(self) -> bytes:
        return bytes(self._buf[-TAIL_BYTES:])

    def whole(self) -> bytes:
        """What is kept of the log (up to `keep` bytes, its end)."""
        if len(self._buf) > self._keep:
            self.cut = True
            return bytes(self._buf[-self._keep :])
        return bytes(self._buf)


class PrefixedSink(Sink):
    """One function's view of the shared sink when an emulator serves several: every line it
    writes starts with the function's prefix, so interleaved logs stay attributable.

    Writes are forwarded to the shared sink (one buffer, one write per loop turn for all
    functions); a line split over several writes gets the prefix once, on its first part.
    """

    def __init__(self, target: Sink, prefix: str) -> None:  # no super(): it owns no buffer
        self._target = target
        self._prefix = prefix.encode()
        self._at_line_start = True

    def write(self, data: bytes) -> None:
        if not data:
            return
        prefix = self._prefix
        out = data.replace(b"\n", b"\n" + prefix)
        if self._at_line_start:
            out = prefix + out
        self._at_line_start = data.endswith(b"\n")
        if self._at_line_start:
            out = out[: -len(prefix)]
        self._target.write(out)

    def flush(self) -> None:
        self._target.flush()


class LineBuffer:
    """One environment's output, let through in whole lines: what follows the last newline is
    held back until its line ends, `flush` is called, or it reaches `max_partial` bytes (then it
    is cut, as Lambda cuts an overlong line into several events)."""

    __slots__ = ("_max", "_partial")

    def __init__(self, max_partial: int = 1 << 16) -> None:
        self._partial = bytearray()
        self._max = max_partial

    def feed(self, data: bytes) -> bytes:
        """The whole lines `data` completes (possibly b"")."""
        if self._partial:
            self._partial += data
            data = bytes(self._partial)
            self._partial.clear()
        if data.endswith(b"\n"):  # the usual case: nothing to hold back
            return data
        cut = data.rfind(b"\n") + 1
        if len(data) - cut >= self._max:
            return data + b"\n"
        self._partial += data[cut:]
        return data[:cut]

    def flush(self) -> bytes:
        """The unfinished line, ended (b"" if there is none)."""
        if not self._partial:
            return b""
        data = bytes(self._partial) + b"\n"
        self._partial.clear()
        return data
