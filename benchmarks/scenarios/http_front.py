"""The HTTP front's cost per request against the Invoke API's, in the same interleaved run.

One rie per format (Function URL, HTTP API, REST API), each with `--http` on and this project's
runtime running the no-op handler. Each round sends a batch of Invoke API calls (to the Function URL
rie) and a batch of plain HTTP GETs to each front, one request at a time over a keep-alive
connection from the benchmark process; rie's own CPU time per request is read from /proc.
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.scenarios import Say

TITLE = "HTTP front vs Invoke API (round trip per request, no-op handler)"
FORMATS = ("function-url", "http-api", "rest-api")
_FRONT_RE = re.compile(rb"HTTP front \([a-z-]+\) listening on http://[\d.]+:(\d+)")


def _front_port(emu: harness.Emulator) -> int:
    deadline = time.monotonic() + 30
    while not (m := _FRONT_RE.search(emu._log_text())):
        emu._check_alive(deadline)
        time.sleep(0.005)
    return int(m.group(1))


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    skipped: dict[str, str] = {}
    why = harness.CLIENTS["runtime"].missing()
    if why:
        return {"title": TITLE, "rows": [], "skipped": {"http_front": why}}
    emus: dict[str, harness.Emulator] = {}
    clients: dict[str, tuple[harness.InvokeClient, str, harness.Emulator]] = {}
    try:
        for fmt in FORMATS:
            emu = harness.Emulator(
                "rie",
                "runtime",
                handler="noop.http",
                extra_args=("--http", "127.0.0.1:0", "--http-format", fmt),
            )
            emu.start()
            emus[fmt] = emu
            front = harness.InvokeClient(emu.host, _front_port(emu))
            clients[fmt] = (front, "/hello?name=bench", emu)
        first = emus[FORMATS[0]]
        clients = {
            "Invoke API": (
                harness.InvokeClient(first.host, first.port),
                harness.INVOKE_PATH,
                first,
            ),
            **clients,
        }
        for client, path, _ in clients.values():
            harness.timed_invokes(client, sizes.warmup, b"{}", path=path)
        names = list(clients)
        samples: dict[str, list[int]] = {n: [] for n in names}
        medians: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, int] = dict.fromkeys(names, 0)
        stop = time.monotonic() + harness.TIME_LIMIT_S * 3
        for r in range(sizes.emulator_rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                client, path, emu = clients[name]
                assert emu.proc is not None
                c0 = harness.cpu_ns(emu.proc.pid)
                batch = harness.timed_invokes(client, sizes.emulator_batch, b"{}", path=path)
                cpu[name] += harness.cpu_ns(emu.proc.pid) - c0
                samples[name].extend(batch)
                medians[name].append(statistics.median(batch))
            if time.monotonic() > stop:
                break
        rows = []
        for name in names:
            n = max(1, len(samples[name]))
            summary = harness.summarize_us(samples[name])
            rows.append(
                {
                    "variant": name,
                    **summary,
                    "requests_per_s": round(1e6 / summary["mean_us"]) if summary["mean_us"] else 0,
                    "emulator_cpu_us_per_request": round(cpu[name] / 1000 / n, 1),
                }
            )
        base = "Invoke API"
        ratios = {f: harness.pair_ratios(medians[f], medians[base]) for f in FORMATS}
        base_median = statistics.median([s / 1000 for s in samples[base]])
        overhead = {
            f: round(statistics.median([s / 1000 for s in samples[f]]) - base_median, 1)
            for f in FORMATS
        }
        return {
            "title": TITLE,
            "method": (
                f"{sizes.emulator_rounds} interleaved rounds of {sizes.emulator_batch} requests per "
                f"variant after {sizes.warmup} warm-up; one rie per format, the Invoke API measured "
                "on the Function URL one; blocking raw-socket keep-alive client, one request at a time"
            ),
            "rows": rows,
            "ratios": ratios,
            "overhead_us": overhead,
            "rounds": medians,
            "skipped": skipped,
        }
    finally:
        for client, _, _ in clients.values():
            client.close()
        for emu in emus.values():
            emu.stop()
