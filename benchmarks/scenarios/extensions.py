"""Per-invoke cost of one INVOKE-subscribed extension.

`rie` + this project's runtime with a no-op handler, without and with one lean external extension
(benchmarks/extension_noop.py: back in `next` as soon as it gets its INVOKE). One environment
(`--max-concurrency 1`, invocations wait for it), so each invoke also waits for the extension to be
back in `next` after the previous one, as on Lambda. Driven one invoke at a time, interleaved.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.scenarios import Say

TITLE = "extensions: per-invoke cost of one INVOKE-subscribed extension"
VARIANTS = ("no extension", "1 extension")


def _extensions_dir(tmp: Path) -> Path:
    d = tmp / "extensions"
    d.mkdir()
    source = (Path(__file__).resolve().parent.parent / "extension_noop.py").read_text()
    ext = d / "noop-ext"
    ext.write_text(f"#!{sys.executable}\n{source}")
    ext.chmod(0o755)
    return d


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    skipped: dict[str, str] = {}
    why = harness.CLIENTS["runtime"].missing()
    if why:
        return {"title": TITLE, "rows": [], "skipped": {"all": why}}
    with tempfile.TemporaryDirectory(prefix="bench-ext-") as tmp:
        ext_dir = _extensions_dir(Path(tmp))
        one_env = ("--max-concurrency", "1", "--queue-timeout", "10")
        emus = {
            "no extension": harness.Emulator("rie", "runtime", extra_args=one_env),
            "1 extension": harness.Emulator(
                "rie", "runtime", extra_args=(*one_env, "--extensions-dir", str(ext_dir))
            ),
        }
        clients: dict[str, harness.InvokeClient] = {}
        try:
            for name, emu in emus.items():
                emu.start()
                clients[name] = harness.InvokeClient(emu.host, emu.port)
                harness.timed_invokes(clients[name], sizes.warmup, b"{}")
            samples: dict[str, list[int]] = {n: [] for n in emus}
            medians: dict[str, list[float]] = {n: [] for n in emus}
            cpu = dict.fromkeys(emus, 0)
            stop = time.monotonic() + harness.TIME_LIMIT_S * 2
            for r in range(sizes.emulator_rounds):
                names = list(emus)
                order = names[r % 2 :] + names[: r % 2]
                for name in order:
                    emu = emus[name]
                    assert emu.proc is not None
                    c0 = harness.cpu_ns(emu.proc.pid)
                    batch = harness.timed_invokes(clients[name], sizes.emulator_batch, b"{}")
                    cpu[name] += harness.cpu_ns(emu.proc.pid) - c0
                    samples[name].extend(batch)
                    medians[name].append(statistics.median(batch))
                if time.monotonic() > stop:
                    break
        finally:
            for c in clients.values():
                c.close()
            for emu in emus.values():
                emu.stop()
    rows = []
    for name in VARIANTS:
        n = max(1, len(samples[name]))
        stats = harness.summarize_us(samples[name])
        rows.append(
            {
                "variant": name,
                **stats,
                "invokes_per_s": round(1e6 / stats["median_us"]) if stats.get("median_us") else 0,
                "emulator_cpu_us_per_invoke": round(cpu[name] / 1000 / n, 1),
            }
        )
    return {
        "title": TITLE,
        "method": (
            f"{sizes.emulator_rounds} interleaved rounds of {sizes.emulator_batch} sequential invokes per "
            f"variant after {sizes.warmup} warm-up; one environment; figure = invoke round trip, which "
            "includes waiting for the extension to be back in `next` after the previous invoke"
        ),
        "rows": rows,
        "ratios": {
            "1 extension / no extension": harness.pair_ratios(
                medians["1 extension"], medians["no extension"]
            )
        },
        "skipped": skipped,
    }
