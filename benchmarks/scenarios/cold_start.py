"""Cold start: process start to first `next`, where that time goes, and a first invoke through a
freshly started emulator.

- start to first `next`: the client is spawned against the floor Runtime API server in the
  benchmark process, which notes the arrival of the first `next`; it then gets one event, and the
  arrival of its response gives start to first response. Baseline: `python -c pass` (spawn to exit).
- the split: `python -c "<imports>; os.write(1, b'.')"` probes, timed from spawn to that byte:
  nothing (interpreter start), the client's imports (with `runpy` for `-m` clients), plus the
  handler module; first `next` = the full start minus the last probe (handler lookup, connect,
  request). Differences of medians over interleaved samples.
- first invoke through a fresh emulator: spawn the emulator, wait for its "listening" line (or a
  connectable port for the Go emulator), send one invoke; emulator and runtime are then killed.
All from this interpreter (`sys.executable`), which should be a virtual environment's.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.floor_server import run_loop
from benchmarks.scenarios import Say, emulator
from benchmarks.scenarios.runtime_client import CLIENT_ORDER, start_client

TITLE = "cold start"


def _probe(code: str) -> int:
    """ns from spawn until `python -c code` writes its marker byte."""
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(
        [harness.PYTHON, "-c", code + "\nimport os; os.write(1, b'.')"],
        cwd=str(harness.HANDLERS),
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    got = os.read(proc.stdout.fileno(), 1)
    t1 = time.perf_counter_ns()
    proc.wait(10)
    proc.stdout.close()
    if got != b".":
        raise RuntimeError(f"probe failed: {code}")
    return t1 - t0


def _python_pass() -> int:
    # no `timeout=`: with one, Popen.wait polls with sleeps of up to 50 ms instead of blocking
    t0 = time.perf_counter_ns()
    subprocess.run([harness.PYTHON, "-c", "pass"], check=True, cwd=str(harness.HANDLERS))
    return time.perf_counter_ns() - t0


async def _first_next(names: list[str], samples: int, say: Say) -> dict[str, dict[str, list[int]]]:
    out: dict[str, dict[str, list[int]]] = {
        n: {"first_next": [], "first_response": []} for n in names
    }
    for i in range(samples):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            core, server, proc, first = await start_client(name)
            try:
                out[name]["first_next"].append(first)
                t_next = time.perf_counter_ns()
                await asyncio.wait_for(core.feed(1), 20)
                # spawn-to-response = spawn-to-first-next + (first next .. response)
                out[name]["first_response"].append(first + (core.last_result_ns - t_next))
            finally:
                harness.kill(proc)
                server.close()
    return out


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    skipped: dict[str, str] = {}
    names = []
    for name in CLIENT_ORDER:
        why = harness.CLIENTS[name].missing()
        if why:
            skipped[name] = why
            say(f"  skipped {name}: {why}")
        else:
            names.append(name)

    # 1 and 2 in one interleaved loop: `python -c pass`, the import probes, then each client started
    # for real, so that the differences of medians are taken over the same stretch of time
    probes: dict[str, str] = {"interpreter": "pass"}
    for n in names:
        code = harness.CLIENTS[n].import_probe
        if n != "floor":
            code = "import runpy; " + code  # `python -m` pays for runpy
        probes[f"{n}:runtime"] = code
        probes[f"{n}:handler"] = code + "; import noop"
    probe_ns: dict[str, list[int]] = {k: [] for k in probes}
    pass_ns: list[int] = []

    async def first_next_all() -> dict[str, dict[str, list[int]]]:
        result: dict[str, dict[str, list[int]]] = {
            n: {"first_next": [], "first_response": []} for n in names
        }
        for i in range(sizes.cold_samples):
            pass_ns.append(_python_pass())
            keys = [k for k in probes if k in probe_ns]
            keys = keys[i % len(keys) :] + keys[: i % len(keys)]
            for k in keys:
                try:
                    probe_ns[k].append(_probe(probes[k]))
                except (RuntimeError, OSError) as e:
                    say(f"  split for {k.split(':')[0]} skipped: {e}")
                    skipped[f"split {k}"] = str(e)
                    del probe_ns[k]
            part = await _first_next(
                names[i % max(1, len(names)) :] + names[: i % max(1, len(names))], 1, say
            )
            for n in names:
                for key, v in part[n].items():
                    result[n][key].extend(v)
        return result

    firsts = run_loop(first_next_all)
    assert isinstance(firsts, dict)
    rows: list[dict[str, Any]] = [
        {"variant": "python -c pass", "what": "spawn to exit", **harness.summarize_ms(pass_ns)}
    ]
    for n in names:
        rows.append(
            {
                "variant": n,
                "what": "spawn to first next",
                **harness.summarize_ms(firsts[n]["first_next"]),
            }
        )
    for n in names:
        rows.append(
            {
                "variant": n,
                "what": "spawn to first response",
                **harness.summarize_ms(firsts[n]["first_response"]),
            }
        )
    med = {k: statistics.median(v) / 1e6 for k, v in probe_ns.items()}
    split = []
    for n in names:
        if f"{n}:runtime" not in med or f"{n}:handler" not in med:
            continue
        full = statistics.median(firsts[n]["first_next"]) / 1e6
        split.append(
            {
                "variant": n,
                "interpreter_ms": round(med["interpreter"], 2),
                "runtime_import_ms": round(med[f"{n}:runtime"] - med["interpreter"], 2),
                "handler_import_ms": round(med[f"{n}:handler"] - med[f"{n}:runtime"], 2),
                "first_next_ms": round(full - med[f"{n}:handler"], 2),
                "total_ms": round(full, 2),
                "first_invoke_ms": round(
                    statistics.median(firsts[n]["first_response"]) / 1e6 - full, 2
                ),
            }
        )

    # 3. first invoke through a freshly started emulator
    pairs, emu_skipped = emulator.plan(config, say, clients=("runtime", "awslambdaric"))
    skipped.update(emu_skipped)
    emu_ns: dict[str, dict[str, list[int]]] = {
        f"{k}+{c}": {"listening": [], "first_response": []} for k, c in pairs
    }
    failed: set[str] = set()
    for i in range(sizes.cold_emulator_samples):
        order = pairs[i % len(pairs) :] + pairs[: i % len(pairs)] if pairs else []
        for kind, client in order:
            label = f"{kind}+{client}"
            if label in failed:
                continue
            emu = harness.Emulator(kind, client, peer_rie=config.peer_rie)
            try:
                emu.start(pipe=True)
                inv = harness.InvokeClient(emu.host, emu.port)
                status, body = inv.invoke(b"{}")
                t1 = time.perf_counter_ns()
                inv.close()
                if status != 200:
                    raise RuntimeError(f"first invoke answered {status}: {body[:200]!r}")
                emu_ns[label]["listening"].append(emu.listening_ns - emu.started_ns)
                emu_ns[label]["first_response"].append(t1 - emu.started_ns)
            except (RuntimeError, OSError) as e:
                failed.add(label)
                skipped[label] = f"cold start failed: {e}"
                say(f"  skipped {label}: cold start failed: {str(e)[:300]}")
            finally:
                emu.stop()
    emu_rows = []
    for label, d in emu_ns.items():
        if d["first_response"]:
            emu_rows.append(
                {
                    "variant": label,
                    "listening_ms": harness.summarize_ms(d["listening"])["median_ms"],
                    **harness.summarize_ms(d["first_response"]),
                }
            )
    return {
        "title": TITLE,
        "method": (
            f"{sizes.cold_samples} interleaved samples per client (start to first next, probes), "
            f"{sizes.cold_emulator_samples} per emulator; interpreter {harness.PYTHON}"
        ),
        "rows": rows,
        "split": split,
        "emulator_rows": emu_rows,
        "python_pass_ms": harness.summarize_ms(pass_ns)["median_ms"],
        "probes_ms": {k: round(v, 2) for k, v in med.items()},
        "skipped": skipped,
    }
