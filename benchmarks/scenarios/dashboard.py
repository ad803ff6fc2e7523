"""What `rie --dashboard` costs rie per invocation: with no page open, and with one page open.

Two rie processes with this project's runtime and the no-op handler: one without the flag, one
with `--dashboard`. Rounds are interleaved: a batch of invokes (one at a time over a keep-alive
connection, as fast as rie answers, above 1,000 a second here) against the plain rie, then against
the dashboard rie with no page open, then with one page open (an SSE client in a thread of this
process reading every push, as a browser's EventSource does). rie's own CPU time per invocation
is read from /proc (its runtime's is not counted: it does not change).
"""

from __future__ import annotations

import contextlib
import re
import socket
import statistics
import threading
import time
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.scenarios import Say

TITLE = "Dashboard cost (rie CPU per invocation: no flag, no page open, one page open)"
_DASHBOARD_RE = re.compile(rb"dashboard at http://([\d.]+):(\d+)/")
_DETACH_S = 0.75  # a closed page is noticed at the next push (every 250 ms)
VARIANTS = ("no --dashboard", "--dashboard, no page", "--dashboard, page open")


class PageStream:
    """One open page: GET /api/stream, every push read and dropped (counted)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.sendall(
            f"GET /api/stream HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        self.events = 0
        self.bytes = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the dashboard sent no snapshot")

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            self.bytes += len(data)
            self.events += data.count(b"\n\n")
            if b"event: snapshot" in data:
                self._ready.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


def _dashboard_address(emu: harness.Emulator) -> tuple[str, int]:
    deadline = time.monotonic() + 30
    while not (m := _DASHBOARD_RE.search(emu._log_text())):
        emu._check_alive(deadline)
        time.sleep(0.005)
    return m.group(1).decode(), int(m.group(2))


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    why = harness.CLIENTS["runtime"].missing()
    if why:
        return {"title": TITLE, "rows": [], "skipped": {"dashboard": why}}
    plain = harness.Emulator("rie", "runtime")
    watched = harness.Emulator("rie", "runtime", extra_args=("--dashboard", "127.0.0.1:0"))
    clients: list[harness.InvokeClient] = []
    page: PageStream | None = None
    try:
        plain.start()
        watched.start()
        host, port = _dashboard_address(watched)
        to_plain = harness.InvokeClient(plain.host, plain.port)
        to_watched = harness.InvokeClient(watched.host, watched.port)
        clients += [to_plain, to_watched]
        for client in clients:
            harness.timed_invokes(client, sizes.warmup, b"{}")
        samples: dict[str, list[int]] = {v: [] for v in VARIANTS}
        medians: dict[str, list[float]] = {v: [] for v in VARIANTS}
        cpu: dict[str, int] = dict.fromkeys(VARIANTS, 0)
        wall: dict[str, int] = dict.fromkeys(VARIANTS, 0)
        pushes = 0
        stop = time.monotonic() + harness.TIME_LIMIT_S * 3
        for r in range(sizes.emulator_rounds):
            order = list(VARIANTS[r % 3 :] + VARIANTS[: r % 3])
            for variant in order:
                emu, client = (plain, to_plain) if variant == VARIANTS[0] else (watched, to_watched)
                if variant == VARIANTS[2]:
                    page = PageStream(host, port)
                assert emu.proc is not None
                c0, t0 = harness.cpu_ns(emu.proc.pid), time.perf_counter_ns()
                batch = harness.timed_invokes(client, sizes.emulator_batch, b"{}")
                cpu[variant] += harness.cpu_ns(emu.proc.pid) - c0
                wall[variant] += time.perf_counter_ns() - t0
                samples[variant].extend(batch)
                medians[variant].append(statistics.median(batch))
                if page is not None:
                    pushes += page.events
                    page.close()
                    page = None
                    time.sleep(_DETACH_S)  # the page is gone before the next variant runs
            if time.monotonic() > stop:
                break
        rows = []
        for variant in VARIANTS:
            n = max(1, len(samples[variant]))
            summary = harness.summarize_us(samples[variant])
            rows.append(
                {
                    "variant": variant,
                    **summary,
                    "invocations_per_s": round(n / (wall[variant] / 1e9)) if wall[variant] else 0,
                    "emulator_cpu_us_per_invoke": round(cpu[variant] / 1000 / n, 2),
                }
            )
        per = {row["variant"]: row["emulator_cpu_us_per_invoke"] for row in rows}
        base = per[VARIANTS[1]] or 1.0
        return {
            "title": TITLE,
            "method": (
                f"{sizes.emulator_rounds} interleaved rounds of {sizes.emulator_batch} invokes per "
                f"variant after {sizes.warmup} warm-up; one rie without the flag, one with "
                "--dashboard; the page is an SSE client reading every push (one every 250 ms)"
            ),
            "rows": rows,
            "page_open_cpu_growth_pct": round((per[VARIANTS[2]] / base - 1) * 100, 1),
            "no_page_vs_no_flag_pct": round(
                (per[VARIANTS[1]] / (per[VARIANTS[0]] or 1) - 1) * 100, 1
            ),
            "pushes_read": pushes,
            "rounds": medians,
        }
    finally:
        if page is not None:
            page.close()
        for client in clients:
            client.close()
        watched.stop()
        plain.stop()
