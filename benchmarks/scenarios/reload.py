"""`--watch`: from saving the handler to the first answer of the new code, and what watching costs
while nothing changes.

One rie with `--watch` and this project's runtime serves a handler in a temporary directory. Each
sample: an invoke answers the current version (the environment is warm), the handler file is
rewritten with the next version (the save: one `write` of the whole file, as editors do), then
invokes follow, 1 ms apart, until one answers the new version; the figure is save → that answer.
The same rie without `--watch`, interleaved, gives what watching adds per invoke (nothing, if it is
right) and what an idle emulator burns with and without it (CPU over a quiet second, schedstat).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.scenarios import Say

TITLE = "--watch: save → first answer of the new code"
HANDLER = "VERSION = {version}\n\n\ndef handler(event, context):\n    return VERSION\n"


def _save(root: Path, version: int) -> None:
    (root / "app.py").write_text(HANDLER.format(version=version))


def _version(client: harness.InvokeClient) -> int:
    status, body = client.invoke(b"{}")
    if status != 200:
        raise RuntimeError(f"invoke answered {status}: {body[:300]!r}")
    return int(json.loads(body))


def reload_ms(emu: harness.Emulator, client: harness.InvokeClient, version: int) -> float:
    """Save `version` and wait for its first answer; ms from the save."""
    assert emu.task_root is not None
    _save(emu.task_root, version)
    t0 = time.perf_counter_ns()
    deadline = time.monotonic() + harness.TIME_LIMIT_S
    while _version(client) != version:
        if time.monotonic() > deadline:
            raise RuntimeError(f"version {version} never answered")
        time.sleep(0.001)
    return (time.perf_counter_ns() - t0) / 1e6


def idle_cpu_us(emu: harness.Emulator, seconds: float) -> float:
    """CPU time of the emulator and its runtimes over `seconds` of nothing, µs."""
    assert emu.proc is not None
    pids = [emu.proc.pid, *emu.runtime_pids()]
    c0 = sum(harness.cpu_ns(p) for p in pids)
    time.sleep(seconds)
    return (sum(harness.cpu_ns(p) for p in pids) - c0) / 1000


def start(root: Path, watch: bool, tree: Path = harness.REPO) -> harness.Emulator:
    return harness.Emulator(
        "rie",
        "runtime",
        handler="app.handler",
        task_root=root,
        tree=tree,
        extra_args=("--watch",) if watch else (),
    ).start()


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    why = harness.CLIENTS["runtime"].missing()
    if why:
        return {"title": TITLE, "rows": [], "skipped": {"reload": why}}
    from rie.dev.reload import available

    if not available():
        return {"title": TITLE, "rows": [], "skipped": {"reload": "--watch is not available"}}
    samples = sizes.reload_samples
    idle_s = 1.0 if sizes.name == "default" else 0.3
    with tempfile.TemporaryDirectory() as watched_dir, tempfile.TemporaryDirectory() as plain_dir:
        roots = {"watch": Path(watched_dir), "no watch": Path(plain_dir)}
        for root in roots.values():
            _save(root, 0)
        emus = {name: start(root, name == "watch") for name, root in roots.items()}
        clients = {name: harness.InvokeClient(emu.host, emu.port) for name, emu in emus.items()}
        try:
            for client in clients.values():
                harness.timed_invokes(client, sizes.warmup, b"{}")
            reloads: list[float] = []
            idle: dict[str, list[float]] = {name: [] for name in emus}
            warm: dict[str, list[int]] = {name: [] for name in emus}
            rounds: dict[str, list[float]] = {name: [] for name in emus}
            names = list(emus)
            for i in range(samples):
                reloads.append(reload_ms(emus["watch"], clients["watch"], i + 1))
                for name in names[i % 2 :] + names[: i % 2]:
                    batch = harness.timed_invokes(clients[name], sizes.emulator_batch // 2, b"{}")
                    warm[name].extend(batch)
                    rounds[name].append(statistics.median(batch))
                    idle[name].append(idle_cpu_us(emus[name], idle_s))
        finally:
            for client in clients.values():
                client.close()
            for emu in emus.values():
                emu.stop()
    rows = [
        {
            "variant": name,
            "reload_median_ms": round(statistics.median(reloads), 1) if name == "watch" else None,
            "reload_max_ms": round(max(reloads), 1) if name == "watch" else None,
            "reloads": len(reloads) if name == "watch" else 0,
            **harness.summarize_us(warm[name]),
            "idle_cpu_us_per_s": round(statistics.median(idle[name]) / idle_s, 1),
        }
        for name in names
    ]
    return {
        "title": TITLE,
        "method": (
            f"{samples} saves, each followed by invokes 1 ms apart until the new version answers "
            f"(figure: save → that answer); between saves, {sizes.emulator_batch // 2} warm "
            f"invokes and {idle_s} s idle per variant, rie with and without --watch interleaved"
        ),
        "rows": rows,
        "reload_ms": [round(x, 1) for x in reloads],
        "warm_ratio": harness.pair_ratios(rounds["watch"], rounds["no watch"]),
        "skipped": {},
    }
