"""Concurrency: invocations per second at 1, 2, 4, 8 concurrent callers, and cold starts per second.

Scaling: each emulator runs with `--max-concurrency 8` (several environments, one invocation each at a
time); N callers, each a keep-alive connection driven by an asyncio (uvloop) raw-socket client in the
benchmark process, invoke back to back for a fixed time. Variants are interleaved per level. The
Go emulator has one environment and fails on overlapping invokes, so it is not run here.

Burst: a freshly started emulator with `--max-concurrency N` gets N concurrent invokes at once; the
handler holds its environment for 200 ms (so one environment cannot serve two of them) and answers its
process id. Environments initialised per second = distinct process ids / (time until the last answer
- the 200 ms hold).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.floor_server import run_loop
from benchmarks.scenarios import Say, emulator

TITLE = "concurrency scaling and cold-start bursts"
BURST_HOLD_S = 0.2  # as in handlers/noop.py
MAX_CONCURRENCY = 8


class AsyncCaller:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> None:
        self.reader, self.writer, self.request = reader, writer, request

    @classmethod
    async def open(cls, port: int, body: bytes = b"{}") -> AsyncCaller:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = (
            f"POST {harness.INVOKE_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        return cls(reader, writer, request)

    async def invoke(self) -> tuple[int, bytes]:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if length is not None:
            return status, await self.reader.readexactly(length)
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    return status, b"".join(parts)
                parts.append(data[:-2])
        return status, await self.reader.read()

    def close(self) -> None:
        self.writer.close()


async def _level(port: int, callers: int, seconds: float) -> tuple[int, float, list[int]]:
    conns = [await AsyncCaller.open(port) for _ in range(callers)]
    latencies: list[int] = []
    count = 0
    clock = time.perf_counter_ns
    start = clock()
    end = start + int(seconds * 1e9)

    async def caller(c: AsyncCaller) -> None:
        nonlocal count
        while clock() < end:
            t0 = clock()
            status, body = await c.invoke()
            if status != 200:
                raise RuntimeError(f"invoke answered {status}: {body[:200]!r}")
            latencies.append(clock() - t0)
            count += 1

    try:
        await asyncio.wait_for(
            asyncio.gather(*(caller(c) for c in conns)), seconds + harness.TIME_LIMIT_S
        )
    finally:
        elapsed = (clock() - start) / 1e9
        for c in conns:
            c.close()
    return count, elapsed, latencies


async def _burst(port: int, n: int) -> tuple[float, int]:
    conns = [await AsyncCaller.open(port) for _ in range(n)]
    t0 = time.perf_counter_ns()
    try:
        replies = await asyncio.wait_for(
            asyncio.gather(*(c.invoke() for c in conns)), harness.TIME_LIMIT_S
        )
    finally:
        for c in conns:
            c.close()
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    bad = [r for r in replies if r[0] != 200]
    if bad:
        raise RuntimeError(f"burst invoke answered {bad[0][0]}: {bad[0][1][:200]!r}")
    return elapsed, len({body for _, body in replies})


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    client = "runtime" if not harness.CLIENTS["runtime"].missing() else "floor"
    if client != "runtime":
        say(
            "  note: `runtime` is not available; concurrency runs the emulators with the floor loop"
        )
    pairs, skipped = emulator.plan(config, say, kinds=("rie", "floor"), clients=(client,))
    if config.peer_rie:
        skipped["go"] = (
            "the Go emulator runs one environment and fails on overlapping invokes: not run here"
        )
    emus = emulator.start_all(pairs, config, say, skipped, max_concurrency=MAX_CONCURRENCY)
    rows: list[dict[str, Any]] = []
    bursts: list[dict[str, Any]] = []

    async def scaling() -> None:
        for label, emu in list(emus.items()):  # warm up: create the environments
            try:
                await _level(emu.port, max(sizes.concurrency_levels), 0.3)
            except (RuntimeError, OSError, asyncio.IncompleteReadError, TimeoutError) as e:
                skipped[label] = f"failed under concurrent invokes: {e!r}"
                say(f"  skipped {label}: failed under concurrent invokes: {e!r}")
                emus.pop(label).stop()
        for level in sizes.concurrency_levels:
            for label, emu in emus.items():
                count, elapsed, lat = await _level(emu.port, level, sizes.concurrency_seconds)
                rows.append(
                    {
                        "variant": label,
                        "callers": level,
                        "invocations": count,
                        "per_second": round(count / elapsed, 1),
                        "median_us": round(statistics.median(lat) / 1000, 1) if lat else 0.0,
                        "p99_us": round(harness.percentile([x / 1000 for x in lat], 0.99), 1),
                    }
                )

    try:
        run_loop(scaling)
    finally:
        for emu in emus.values():
            emu.stop()

    async def burst_all() -> None:
        samples: dict[tuple[str, int], list[tuple[float, int]]] = {}
        failed: set[str] = set()
        for _ in range(sizes.burst_repeats):
            for n in sizes.bursts:
                for kind, cl in pairs:
                    emu = harness.Emulator(kind, cl, handler="noop.whoami", max_concurrency=n)
                    if emu.label in failed:
                        continue
                    try:
                        emu.start()
                        samples.setdefault((emu.label, n), []).append(await _burst(emu.port, n))
                    except (RuntimeError, OSError, asyncio.IncompleteReadError, TimeoutError) as e:
                        failed.add(emu.label)
                        skipped[f"{emu.label} burst"] = repr(e)
                        say(f"  skipped {emu.label} burst: {e!r}")
                    finally:
                        emu.stop()
        for (label, n), got in samples.items():
            times = [t for t, _ in got]
            envs = [e for _, e in got]
            t = max(1e-3, statistics.median(times) - BURST_HOLD_S)
            bursts.append(
                {
                    "variant": label,
                    "burst": n,
                    "samples": len(got),
                    "environments": round(statistics.median(envs), 1),
                    "median_ms": round(statistics.median(times) * 1000, 1),
                    "init_ms": round(t * 1000, 1),
                    "cold_starts_per_second": round(statistics.median(envs) / t, 1),
                }
            )

    run_loop(burst_all)
    return {
        "title": TITLE,
        "method": (
            f"--max-concurrency {MAX_CONCURRENCY}; {sizes.concurrency_seconds} s per level and variant, "
            "asyncio (uvloop) keep-alive callers in the benchmark process; bursts on a fresh emulator with "
            f"--max-concurrency N, {sizes.burst_repeats} repeats"
        ),
        "client": client,
        "rows": rows,
        "bursts": bursts,
        "skipped": skipped,
    }
