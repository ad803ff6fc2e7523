"""Runtime client cost per warm invocation: `runtime` vs awslambdaric vs the floor loop.

Each client runs in its own process against its own instance of the floor Runtime API server,
hosted in the benchmark process (`Core.feed`): the server answers every `next` at once with a
`{}` event and records when each `next` arrives. The spacing of two arrivals is one full cycle of
the client (read the event, call the no-op handler, post the response, ask for the next one) plus
the floor server's own (identical) share. Batches are interleaved. The CPU time the client process
used (from /proc schedstat) is divided by the invocations it served.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import subprocess
import time
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.floor_server import LOOP_NAME, Core, run_loop, start_runtime_api
from benchmarks.scenarios import Say

TITLE = "runtime client cost per warm invocation (against the floor Runtime API server)"
CLIENT_ORDER = ("runtime", "awslambdaric", "floor")


async def start_client(name: str, handler: str = "noop.handler") -> tuple[Core, Any, Any, int]:
    """Start a floor server and client `name`; return (core, server, process, ns from spawn to first next)."""
    core = Core()
    server = await start_runtime_api(core)
    port = server.sockets[0].getsockname()[1]
    core.first_next = asyncio.get_running_loop().create_future()
    env = dict(os.environ)
    env.update(
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
        _HANDLER=handler,
        LAMBDA_TASK_ROOT=str(harness.HANDLERS),
        AWS_LAMBDA_FUNCTION_NAME="test_function",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="3008",
    )
    t0 = time.perf_counter_ns()
    proc = harness.spawn(
        harness.CLIENTS[name].argv(handler),
        cwd=str(harness.HANDLERS),
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        t1 = await asyncio.wait_for(core.first_next, 20)
    except TimeoutError:
        harness.kill(proc)
        server.close()
        raise RuntimeError(f"{name} never called next (exit status {proc.poll()})") from None
    return core, server, proc, t1 - t0


async def _run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    skipped: dict[str, str] = {}
    running: dict[str, tuple[Core, Any, Any, int]] = {}
    for name in CLIENT_ORDER:
        why = harness.CLIENTS[name].missing()
        if why:
            skipped[name] = why
            say(f"  skipped {name}: {why}")
            continue
        try:
            running[name] = await start_client(name)
        except RuntimeError as e:
            skipped[name] = str(e)
            say(f"  skipped {name}: {e}")
    try:
        for core, _, _, _ in running.values():  # warm up
            await asyncio.wait_for(core.feed(sizes.warmup), harness.TIME_LIMIT_S)
        samples: dict[str, list[int]] = {n: [] for n in running}
        medians: dict[str, list[float]] = {n: [] for n in running}
        cpu: dict[str, int] = dict.fromkeys(running, 0)
        names = list(running)
        stop = time.monotonic() + harness.TIME_LIMIT_S * 2
        for r in range(sizes.client_rounds):
            order = names[r % len(names) :] + names[: r % len(names)] if names else []
            for name in order:
                core, _, proc, _ = running[name]
                c0 = harness.cpu_ns(proc.pid)
                times = await asyncio.wait_for(core.feed(sizes.client_batch), harness.TIME_LIMIT_S)
                cpu[name] += harness.cpu_ns(proc.pid) - c0
                batch = [b - a for a, b in itertools.pairwise(times)]
                samples[name].extend(batch)
                medians[name].append(statistics.median(batch))
            if time.monotonic() > stop:
                break
        rows = []
        for name in names:
            row: dict[str, Any] = {"variant": name, **harness.summarize_us(samples[name])}
            row["cpu_us_per_invoke"] = round(cpu[name] / 1000 / max(1, len(samples[name])), 1)
            row["rss_mib"] = round(harness.rss_kib(running[name][2].pid) / 1024, 1)
            rows.append(row)
        ratios = {}
        for a, b in (("awslambdaric", "runtime"), ("runtime", "floor"), ("awslambdaric", "floor")):
            if a in medians and b in medians:
                ratios[f"{a}/{b}"] = harness.pair_ratios(medians[a], medians[b])
        return {
            "title": TITLE,
            "method": (
                f"floor Runtime API server ({LOOP_NAME}) in the benchmark process answers `next` at once; "
                f"{sizes.client_rounds} interleaved rounds of {sizes.client_batch} invocations per client "
                f"after {sizes.warmup} warm-up; figure = time between two `next` arrivals"
            ),
            "rows": rows,
            "ratios": ratios,
            "rounds": medians,
            "skipped": skipped,
        }
    finally:
        for _, server, proc, _ in running.values():
            harness.kill(proc)
            server.close()


def run(config: Config, say: Say) -> dict[str, Any]:
    result = run_loop(lambda: _run(config, say))
    assert isinstance(result, dict)
    return result
