"""Payload sizes: invoke round trip with an echo handler for 1 KB, 100 KB, 1 MB and 5 MB events.

The event is a JSON object of exactly the given size (`{"data": "xxx..."}`) and comes back whole, so
each figure covers both directions: caller → emulator → runtime → handler → runtime → emulator →
caller. Same emulator x client variants as the emulator scenario, interleaved per size and round.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks import harness
from benchmarks.config import KB, MB, Config
from benchmarks.scenarios import Say, emulator

TITLE = "payload sizes (echo handler, invoke round trip)"


def size_label(size: int) -> str:
    return f"{size // MB} MB" if size >= MB else f"{size // KB} KB"


def event_of(size: int) -> bytes:
    return b'{"data":"' + b"x" * (size - 11) + b'"}'


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    pairs, skipped = emulator.plan(config, say, clients=("runtime", "awslambdaric"))
    emus = emulator.start_all(pairs, config, say, skipped, handler="noop.echo")
    clients = {label: harness.InvokeClient(e.host, e.port) for label, e in emus.items()}
    events = {size: event_of(size) for size in sizes.payload_counts}
    samples: dict[str, dict[int, list[int]]] = {n: {s: [] for s in events} for n in emus}
    try:
        for label, client in list(clients.items()):
            try:
                for size, body in events.items():  # warm up, and check the echo is whole
                    status, reply = client.invoke(body)
                    if status != 200 or len(reply) < size - 16:
                        raise RuntimeError(
                            f"{size_label(size)} echo answered {status} with {len(reply)} bytes: {reply[:200]!r}"
                        )
            except (RuntimeError, OSError) as e:
                skipped[label] = str(e)
                say(f"  skipped {label}: {e}")
                clients.pop(label).close()
                emus.pop(label).stop()
                samples.pop(label)
        names = list(emus)
        stop = time.monotonic() + harness.TIME_LIMIT_S * 3
        for r in range(sizes.payload_rounds):
            for size, count in sizes.payload_counts.items():
                order = names[r % len(names) :] + names[: r % len(names)] if names else []
                for name in order:
                    samples[name][size].extend(
                        harness.timed_invokes(clients[name], count, events[size])
                    )
            if time.monotonic() > stop:
                break
        rows = []
        for name in names:
            for size in events:
                rows.append(
                    {
                        "variant": name,
                        "size": size_label(size),
                        "bytes": size,
                        **harness.summarize_us(samples[name][size]),
                    }
                )
        ratios = {}
        for client in ("runtime", "awslambdaric"):
            for a, b in (("rie", "floor"), ("rie", "go")):
                la, lb = f"{a}+{client}", f"{b}+{client}"
                if la in samples and lb in samples:
                    for size in events:
                        if samples[la][size] and samples[lb][size]:
                            ratios[f"{la} / {lb} @ {size_label(size)}"] = round(
                                statistics.median(samples[la][size])
                                / statistics.median(samples[lb][size]),
                                3,
                            )
        return {
            "title": TITLE,
            "method": (
                f"{sizes.payload_rounds} rounds; per round and variant: "
                + ", ".join(f"{c} x {size_label(s)}" for s, c in sizes.payload_counts.items())
                + "; blocking raw-socket keep-alive client; ratio = ratio of medians"
            ),
            "rows": rows,
            "ratios": ratios,
            "skipped": skipped,
        }
    finally:
        for c in clients.values():
            c.close()
        for emu in emus.values():
            emu.stop()
