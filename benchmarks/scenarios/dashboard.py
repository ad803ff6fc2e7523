"""What `rie --dashboard` costs rie per invocation at 1,000 invocations/s: no page open, one page open.

Two rie processes with this project's runtime and the no-op handler (`--max-concurrency 8`; four
environments warmed up, the paced load keeps at most four busy): one without the flag, one with
`--dashboard`. The load is open-loop and paced: four keep-alive callers (an asyncio/uvloop
raw-socket client in this process) share one schedule, invocation i due at start + i / rate, so rie
gets a steady rate (1,000 a second) whatever its answer time; when rie falls behind, the achieved
rate says so. Rounds are interleaved (the order rotates): a window against the plain rie, one
against the dashboard rie with no page open, one with one page open (an SSE client in a thread of
this process reading every push, as a browser's EventSource does). rie's own CPU (all its threads,
from /proc/PID/task/*/schedstat; its runtimes and the load generator are other processes) is read
before and after each window. Then rie's RSS while 100,000 invocations (back to back, eight
callers) run with a page open: the ring keeps the last 10,000, so it must stay flat once it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import statistics
import threading
import time
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.floor_server import run_loop
from benchmarks.scenarios import Say
from benchmarks.scenarios.concurrency import AsyncCaller

TITLE = (
    "Dashboard cost (rie CPU per invocation at a paced rate: no flag, no page open, one page open)"
)
_DASHBOARD_RE = re.compile(rb"dashboard at http://([\d.]+):(\d+)/")
_DETACH_S = 0.75  # a closed page is noticed at the next push (every 250 ms)
CALLERS = 4
MEMORY_CALLERS = 8  # the RSS run goes as fast as it can: up to 8 environments
VARIANTS = ("no --dashboard", "--dashboard, no page", "--dashboard, page open")
GOAL_RATIO = 1.10  # issue 19: with one page open at 1,000/s, CPU per invocation grows ≤ 10 %


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


async def _drive(
    port: int, count: int, rate: float | None, callers: int
) -> tuple[int, float, list[int]]:
    """`count` invokes from `callers` keep-alive callers; paced at `rate` a second (open loop: each
    invocation has its due time, sent as soon as a caller is free after it) or back to back when
    `rate` is None. Returns (invocations, seconds, latencies ns)."""
    conns = [await AsyncCaller.open(port) for _ in range(callers)]
    clock = time.perf_counter_ns
    interval = int(1e9 / rate) if rate else 0
    latencies: list[int] = []
    next_ticket = 0
    start = clock()

    async def caller(c: AsyncCaller) -> None:
        nonlocal next_ticket
        while next_ticket < count:
            due = start + next_ticket * interval
            next_ticket += 1
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            t0 = clock()
            status, body = await c.invoke()
            if status != 200:
                raise RuntimeError(f"invoke answered {status}: {body[:200]!r}")
            latencies.append(clock() - t0)

    try:
        await asyncio.wait_for(
            asyncio.gather(*(caller(c) for c in conns)), harness.TIME_LIMIT_S * 2
        )
    finally:
        elapsed = (clock() - start) / 1e9
        for c in conns:
            c.close()
    return len(latencies), elapsed, latencies


def drive(
    port: int, count: int, rate: float | None, callers: int = CALLERS
) -> tuple[int, float, list[int]]:
    return run_loop(lambda: _drive(port, count, rate, callers))  # type: ignore[return-value]


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    why = harness.CLIENTS["runtime"].missing()
    if why:
        return {"title": TITLE, "rows": [], "skipped": {"dashboard": why}}
    rate = sizes.dashboard_rate
    per_window = max(1, round(rate * sizes.dashboard_seconds))
    plain = harness.Emulator("rie", "runtime", max_concurrency=MEMORY_CALLERS)
    watched = harness.Emulator(
        "rie", "runtime", max_concurrency=MEMORY_CALLERS, extra_args=("--dashboard", "127.0.0.1:0")
    )
    page: PageStream | None = None
    try:
        plain.start()
        watched.start()
        host, port = _dashboard_address(watched)
        assert plain.proc is not None and watched.proc is not None
        for emu in (plain, watched):  # every environment initialised, the code paths warm
            drive(emu.port, sizes.warmup * CALLERS, None)
        cpu_per: dict[str, list[float]] = {v: [] for v in VARIANTS}
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        latencies: dict[str, list[int]] = {v: [] for v in VARIANTS}
        pushes = 0
        stop = time.monotonic() + harness.TIME_LIMIT_S
        for r in range(sizes.dashboard_rounds):
            order = list(VARIANTS[r % 3 :] + VARIANTS[: r % 3])
            for variant in order:
                emu = plain if variant == VARIANTS[0] else watched
                assert emu.proc is not None
                if variant == VARIANTS[2]:
                    page = PageStream(host, port)
                c0 = harness.cpu_ns(emu.proc.pid)
                n, seconds, lat = drive(emu.port, per_window, rate)
                cpu = harness.cpu_ns(emu.proc.pid) - c0
                cpu_per[variant].append(cpu / 1000 / n)
                rates[variant].append(n / seconds)
                latencies[variant].extend(lat)
                if page is not None:
                    pushes += page.events
                    page.close()
                    page = None
                    time.sleep(_DETACH_S)  # the page is gone before the next variant runs
            say(
                f"  round {r + 1}: rie CPU µs/inv "
                + ", ".join(f"{v}: {cpu_per[v][-1]:.1f}" for v in VARIANTS if cpu_per[v])
            )
            if time.monotonic() > stop:
                break
        rows = []
        for variant in VARIANTS:
            rows.append(
                {
                    "variant": variant,
                    **harness.summarize_us(latencies[variant]),
                    "invocations_per_s": round(statistics.median(rates[variant])),
                    "emulator_cpu_us_per_invoke": round(statistics.median(cpu_per[variant]), 2),
                    "rounds_cpu_us": [round(x, 2) for x in cpu_per[variant]],
                }
            )
        page_ratio = harness.pair_ratios(cpu_per[VARIANTS[2]], cpu_per[VARIANTS[1]])
        page_ratio["per_round"] = [
            round(a / b, 3)
            for a, b in zip(cpu_per[VARIANTS[2]], cpu_per[VARIANTS[1]], strict=False)
        ]
        flag_ratio = harness.pair_ratios(cpu_per[VARIANTS[1]], cpu_per[VARIANTS[0]])
        memory = _memory(watched, host, port, sizes.dashboard_rss_invokes)
        return {
            "title": TITLE,
            "method": (
                f"{len(cpu_per[VARIANTS[0]])} interleaved rounds of {sizes.dashboard_seconds} s "
                f"windows at a paced {rate} invocations/s ({CALLERS} keep-alive callers, open loop) "
                f"per variant, after {sizes.warmup * CALLERS} warm-up invokes; rie with "
                f"--max-concurrency {MEMORY_CALLERS} (up to {CALLERS} busy in the windows); "
                "rie's own CPU (all threads, schedstat) per invocation; the page is an SSE client "
                "reading every push (one every 250 ms); RSS over back-to-back invokes from "
                f"{MEMORY_CALLERS} callers with a page open"
            ),
            "rows": rows,
            "target_rate": rate,
            "page_open_ratio": page_ratio,
            "no_page_vs_no_flag_ratio": flag_ratio,
            "goal_ratio": GOAL_RATIO,
            "goal_met": bool(page_ratio["median"]) and page_ratio["median"] <= GOAL_RATIO,
            "pushes_read": pushes,
            "memory": memory,
        }
    finally:
        if page is not None:
            page.close()
        watched.stop()
        plain.stop()


def _memory(watched: harness.Emulator, host: str, port: int, total: int) -> dict[str, Any]:
    """rie's RSS (KiB) every tenth of `total` back-to-back invocations with one page open."""
    assert watched.proc is not None
    pid = watched.proc.pid
    steps = 10
    page = PageStream(host, port)
    samples = [{"invocations": 0, "rss_kib": harness.rss_kib(pid)}]
    done, t0 = 0, time.monotonic()
    try:
        for i in range(1, steps + 1):
            n, _, _ = drive(watched.port, total * i // steps - done, None, MEMORY_CALLERS)
            done += n
            samples.append({"invocations": done, "rss_kib": harness.rss_kib(pid)})
    finally:
        page.close()
    seconds = time.monotonic() - t0
    # flat: after the ring (10,000) is full, the growth from the half-way sample to the end
    half = samples[len(samples) // 2]["rss_kib"]
    return {
        "invocations": done,
        "seconds": round(seconds, 1),
        "samples": samples,
        "growth_second_half_kib": samples[-1]["rss_kib"] - half,
        "final_mib": round(samples[-1]["rss_kib"] / 1024, 1),
    }
