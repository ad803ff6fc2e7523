"""Memory: RSS of each emulator idle, after warm-up and along N invocations (growth shows a leak),
and RSS of the environment (the runtime process) it runs.

Idle = listening, before the first invoke (no environment yet where init is lazy). Growth = RSS after
the last invocation minus RSS after the warm-up. The runtime-client RSS (runtime vs awslambdaric vs
the floor loop against the same server) is in the runtime client scenario's rows.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.scenarios import Say, emulator

TITLE = "memory (RSS)"


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    client = "runtime" if not harness.CLIENTS["runtime"].missing() else "floor"
    if client != "runtime":
        say(
            "  note: `runtime` is not available; the leak check runs the emulators with the floor loop"
        )
    pairs, skipped = emulator.plan(config, say, clients=(client,))
    rows = []
    series: dict[str, list[tuple[int, float]]] = {}
    for kind, cl in pairs:
        emu = harness.Emulator(kind, cl, peer_rie=config.peer_rie)
        try:
            emu.start()
            assert emu.proc is not None
            time.sleep(0.2)
            idle = harness.rss_kib(emu.proc.pid)
            inv = harness.InvokeClient(emu.host, emu.port)
            harness.timed_invokes(inv, sizes.warmup, b"{}")
            warm = harness.rss_kib(emu.proc.pid)
            points = [(0, warm / 1024)]
            done = 0
            stop = time.monotonic() + harness.TIME_LIMIT_S * 2
            while done < sizes.memory_invokes and time.monotonic() < stop:
                done += len(harness.timed_invokes(inv, sizes.memory_step, b"{}"))
                points.append((done, harness.rss_kib(emu.proc.pid) / 1024))
            inv.close()
            final = harness.rss_kib(emu.proc.pid)
            env_rss = sum(harness.rss_kib(p) for p in emu.runtime_pids())
            rows.append(
                {
                    "variant": emu.label,
                    "idle_mib": round(idle / 1024, 1),
                    "after_warmup_mib": round(warm / 1024, 1),
                    "final_mib": round(final / 1024, 1),
                    "invocations": done,
                    "growth_mib": round((final - warm) / 1024, 2),
                    "environment_mib": round(env_rss / 1024, 1),
                }
            )
            series[emu.label] = [(n, round(m, 2)) for n, m in points]
        except (RuntimeError, OSError) as e:
            skipped[emu.label] = str(e)
            say(f"  skipped {emu.label}: {str(e)[:300]}")
        finally:
            emu.stop()
    return {
        "title": TITLE,
        "method": (
            f"VmRSS of the emulator process (children excluded) idle, after {sizes.warmup} warm-up invokes, then "
            f"every {sizes.memory_step} invokes up to {sizes.memory_invokes}; environment = sum of its descendants' VmRSS"
        ),
        "rows": rows,
        "series": series,
        "skipped": skipped,
    }
