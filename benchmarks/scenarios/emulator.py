"""Emulator cost per warm invocation: the Invoke API round trip with a no-op handler.

`rie` vs the floor emulator (vs the official Go emulator with `--peer-rie`), each with `runtime` and
with awslambdaric. All the emulator processes run at once, each warmed up, and are driven in
interleaved batches by the benchmark process's blocking raw-socket keep-alive client, one invoke at a
time. The emulator process's own CPU time per invocation is read from /proc schedstat.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.scenarios import Say

TITLE = "emulator cost per warm invocation (invoke round trip, no-op handler)"
KINDS = ("rie", "floor", "go")
CLIENTS = ("runtime", "awslambdaric", "floor")


def emulator_problem(kind: str, config: Config) -> str | None:
    if kind == "go":
        return harness.peer_rie_problem(config.peer_rie)
    if kind == "rie":
        why = harness.Client("rie", lambda h: [], "rie.__main__", "").missing()
        return why
    return None


def plan(
    config: Config, say: Say, kinds: tuple[str, ...] = KINDS, clients: tuple[str, ...] = CLIENTS
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The (kind, client) pairs that can run, and a line for each that cannot."""
    skipped: dict[str, str] = {}
    pairs = []
    for kind in kinds:
        why_kind = emulator_problem(kind, config)
        for client in clients:
            why = why_kind or harness.CLIENTS[client].missing()
            if why:
                skipped[f"{kind}+{client}"] = why
                say(f"  skipped {kind}+{client}: {why}")
            else:
                pairs.append((kind, client))
    return pairs, skipped


def start_all(
    pairs: list[tuple[str, str]],
    config: Config,
    say: Say,
    skipped: dict[str, str],
    handler: str = "noop.handler",
    **kw: Any,
) -> dict[str, harness.Emulator]:
    started: dict[str, harness.Emulator] = {}
    for kind, client in pairs:
        emu = harness.Emulator(kind, client, handler=handler, peer_rie=config.peer_rie, **kw)
        try:
            emu.start()
            started[emu.label] = emu
        except RuntimeError as e:
            skipped[emu.label] = f"did not start: {e}"
            say(f"  skipped {emu.label}: did not start: {str(e)[:500]}")
    return started


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    pairs, skipped = plan(config, say)
    emus = start_all(pairs, config, say, skipped)
    clients: dict[str, harness.InvokeClient] = {}
    try:
        for label, emu in list(emus.items()):
            clients[label] = harness.InvokeClient(emu.host, emu.port)
            try:
                harness.timed_invokes(clients[label], sizes.warmup, b"{}")
            except (RuntimeError, OSError) as e:
                skipped[label] = f"failed while warming up: {e}"
                say(f"  skipped {label}: failed while warming up: {e}")
                clients.pop(label).close()
                emus.pop(label).stop()
        samples: dict[str, list[int]] = {n: [] for n in emus}
        medians: dict[str, list[float]] = {n: [] for n in emus}
        cpu: dict[str, int] = dict.fromkeys(emus, 0)
        runtime_cpu: dict[str, int] = dict.fromkeys(emus, 0)
        names = list(emus)
        stop = time.monotonic() + harness.TIME_LIMIT_S * 3
        for r in range(sizes.emulator_rounds):
            order = names[r % len(names) :] + names[: r % len(names)] if names else []
            for name in order:
                emu = emus[name]
                assert emu.proc is not None
                kids = emu.runtime_pids()
                c0 = harness.cpu_ns(emu.proc.pid)
                k0 = sum(harness.cpu_ns(p) for p in kids)
                batch = harness.timed_invokes(clients[name], sizes.emulator_batch, b"{}")
                cpu[name] += harness.cpu_ns(emu.proc.pid) - c0
                runtime_cpu[name] += sum(harness.cpu_ns(p) for p in kids) - k0
                samples[name].extend(batch)
                medians[name].append(statistics.median(batch))
            if time.monotonic() > stop:
                break
        rows = []
        for name in names:
            n = max(1, len(samples[name]))
            kind, client = name.split("+")
            rows.append(
                {
                    "variant": name,
                    "emulator": kind,
                    "client": client,
                    **harness.summarize_us(samples[name]),
                    "emulator_cpu_us_per_invoke": round(cpu[name] / 1000 / n, 1),
                    "runtime_cpu_us_per_invoke": round(runtime_cpu[name] / 1000 / n, 1),
                }
            )
        ratios = {}
        for client in CLIENTS:
            for a, b in (("rie", "floor"), ("rie", "go"), ("go", "floor")):
                la, lb = f"{a}+{client}", f"{b}+{client}"
                if la in medians and lb in medians:
                    ratios[f"{la} / {lb}"] = harness.pair_ratios(medians[la], medians[lb])
        # the whole stack against the Go emulator as people run it (with awslambdaric)
        if "rie+runtime" in medians and "go+awslambdaric" in medians:
            ratios["rie+runtime / go+awslambdaric"] = harness.pair_ratios(
                medians["rie+runtime"], medians["go+awslambdaric"]
            )
        for kind in KINDS:
            la, lb = f"{kind}+awslambdaric", f"{kind}+runtime"
            if la in medians and lb in medians:
                ratios[f"{la} / {lb}"] = harness.pair_ratios(medians[la], medians[lb])
        return {
            "title": TITLE,
            "method": (
                f"{sizes.emulator_rounds} interleaved rounds of {sizes.emulator_batch} invokes per variant after "
                f"{sizes.warmup} warm-up; load generator: blocking raw-socket keep-alive client in the benchmark "
                "process, one invoke at a time; figure = invoke round trip"
            ),
            "rows": rows,
            "ratios": ratios,
            "rounds": medians,
            "skipped": skipped,
        }
    finally:
        for c in clients.values():
            c.close()
        for emu in emus.values():
            emu.stop()
