"""Two rie trees (and the floor emulator) compared in interleaved rounds, on one machine.

`python -m benchmarks.ab_trees [--rounds N] [--invokes N] OLD_TREE NEW_TREE` starts each variant
fresh every round (order reversed every other round, so a busy minute hurts both alike), with the
`runtime` client and the no-op handler, and measures: launch → "listening" and → first answer
(lazy init), and their difference (the first invoke's cold start); the emulator's CPU per
sequential invoke (schedstat; user and system from /proc/PID/stat); the invoke round trip's
median; invocations/s and CPU per invoke with 8 keep-alive callers (`--max-concurrency 8`).
Prints each round, then medians and per-round ratios.
A tree is a checkout of the repository (e.g. `git archive COMMIT | tar -x -C /tmp/old`); the floor
emulator runs from NEW_TREE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks import harness
from benchmarks.scenarios.concurrency import _level
from rie.settings.config import RUNTIME_ENTRY

LISTEN = re.compile(rb"Invoke API listening on http://([\d.]+):(\d+)")
METRICS = (
    *("cpu_us", "user_us", "sys_us", "p50_us", "rate8", "cpu8_us", "listen_ms", "first_ms"),
    "cold_ms",
)


def _launch(tree: str, kind: str) -> tuple[subprocess.Popen[bytes], int, int, int]:
    module = "rie" if kind == "rie" else "benchmarks.floor_server"
    handlers = str(harness.HANDLERS)
    cmd = [
        *(harness.PYTHON, "-m", module, "--runtime-interface-emulator-address", "127.0.0.1:0"),
        *("--runtime-api-address", "127.0.0.1:0", "--task-root", handlers),
        *("--handler", "noop.handler", "--max-concurrency", "8"),
        *("--", harness.PYTHON, "-c", RUNTIME_ENTRY, "noop.handler"),
    ]
    env = dict(os.environ, PYTHONPATH=tree, _HANDLER="noop.handler", LAMBDA_TASK_ROOT=handlers)
    env.pop("AWS_LAMBDA_RUNTIME_API", None)
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(
        cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    fd, seen = proc.stdout.fileno(), b""
    deadline = time.monotonic() + 60
    while not (m := LISTEN.search(seen)):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"{kind} from {tree} did not start: {seen[-2000:]!r}")
        if select.select([fd], [], [], 0.5)[0]:
            seen += os.read(fd, 65536)
    listening = time.perf_counter_ns()
    threading.Thread(target=_drain, args=(fd,), daemon=True).start()
    return proc, int(m.group(2)), t0, listening


def _drain(fd: int) -> None:
    while os.read(fd, 65536):
        pass


def _stat_us(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick * 1e6, int(fields[12]) / tick * 1e6


def measure(tree: str, kind: str, invokes: int) -> dict[str, float]:
    proc, port, t0, listening = _launch(tree, kind)
    out: dict[str, float] = {}
    try:
        client = harness.InvokeClient("127.0.0.1", port)
        status, _ = client.invoke(b"{}")
        assert status == 200, status
        out["first_ms"] = (time.perf_counter_ns() - t0) / 1e6
        out["listen_ms"] = (listening - t0) / 1e6
        out["cold_ms"] = out["first_ms"] - out["listen_ms"]  # the first invoke, cold
        harness.timed_invokes(client, 300, b"{}")
        cpu0, (user0, sys0) = harness.cpu_ns(proc.pid), _stat_us(proc.pid)
        samples = harness.timed_invokes(client, invokes, b"{}")
        cpu1, (user1, sys1) = harness.cpu_ns(proc.pid), _stat_us(proc.pid)
        client.close()
        n = len(samples)
        out["cpu_us"] = (cpu1 - cpu0) / n / 1000
        out["user_us"], out["sys_us"] = (user1 - user0) / n, (sys1 - sys0) / n
        out["p50_us"] = statistics.median(samples) / 1000

        async def eight() -> tuple[float, float]:
            await _level(port, 8, 0.3)  # the environments exist before the clock starts
            c0 = harness.cpu_ns(proc.pid)
            count, elapsed, _ = await _level(port, 8, 3.0)
            return count / elapsed, (harness.cpu_ns(proc.pid) - c0) / count / 1000

        out["rate8"], out["cpu8_us"] = asyncio.run(eight())
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--invokes", type=int, default=3000)
    parser.add_argument("--json", help="write every round's figures here")
    parser.add_argument("old")
    parser.add_argument("new")
    args = parser.parse_args()
    harness.install_cleanup()
    variants = [("old", args.old, "rie"), ("new", args.new, "rie"), ("floor", args.new, "floor")]
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    for r in range(args.rounds):
        for name, tree, kind in variants if r % 2 == 0 else variants[::-1]:
            rounds[name].append(measure(tree, kind, args.invokes))
            shown = {k: round(v, 1) for k, v in rounds[name][-1].items()}
            print(f"round {r} {name}: {shown}", flush=True)
    old, new, floor = rounds["old"], rounds["new"], rounds["floor"]
    report: dict[str, Any] = {"rounds": rounds, "medians": {}}
    for m in METRICS:

        def med(rows: list[dict[str, float]], m: str = m) -> float:
            return statistics.median(row[m] for row in rows)

        ratios = [a[m] / b[m] for a, b in zip(new, old, strict=True)]
        vs_floor = statistics.median(a[m] / f[m] for a, f in zip(new, floor, strict=True))
        old_floor = statistics.median(b[m] / f[m] for b, f in zip(old, floor, strict=True))
        report["medians"][m] = [med(old), med(new), med(floor)]
        print(
            f"{m:9s} old {med(old):8.1f}  new {med(new):8.1f}  floor {med(floor):8.1f}  "
            f"new/old {statistics.median(ratios):.2f} (rounds {', '.join(f'{x:.2f}' for x in ratios)})"
            f"  new/floor {vs_floor:.2f}  old/floor {old_floor:.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
