"""`rie tune`: power tuning on this machine, as aws-lambda-power-tuning does it on AWS.

For each memory size: a fresh rie (a fresh environment) under `--sandbox lambda`, so that the size
is the function's memory limit and its CPU share; one cold invocation, whose Init Duration is kept
apart, then N invocations (C at a time). Durations, billed time and errors come from each
invocation's own REPORT line; cost from Lambda's prices. Then the choice by strategy: cost
(cheapest), speed (fastest) or balanced (power-tuning's `balancedWeight`: 0 speed, 1 cost); a size
with any error is never chosen, nor one whose CPU share this machine cannot give (marked "not
measurable here") while another can be.

Outputs: a progress bar and a table on the terminal, DIR/tune.json (the schema in
docs/resources.md; stable) and DIR/tune.html (one self-contained page: the chart power-tuning
draws, duration and cost against memory, as inline SVG; the table; the choice).
Exit codes: 0 a recommendation, 1 no size succeeded, 2 usage errors.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rie.sandbox.limits import MAX_EPHEMERAL_MB, MIN_EPHEMERAL_MB, cpu_share
from rie.testing import InvokeError, InvokeResult, LambdaFunction

EXIT_OK, EXIT_NONE_SUCCEEDED, EXIT_USAGE = 0, 1, 2
DEFAULT_SIZES = (128, 256, 512, 1024, 1769, 3008)
PRICE_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
PRICE_REQUEST = 0.20 / 1_000_000
PRICE_EPHEMERAL_GB_S = 0.0000000309  # above the free 512 MB
# local timings are noisy: sizes whose cost is within this of the cheapest count as equally
# cheap for the cost strategy, and the fastest of them is chosen (power-tuning breaks exact ties
# the same way)
COST_TOLERANCE = 0.05
SCHEMA_VERSION = 1

_REPORT = re.compile(r"^REPORT RequestId: (\S+)\t(.*)$", re.M)


@dataclass
class SizeResult:
    memory_mb: int
    cpu_share: float
    measurable: bool
    invocations: int = 0
    errors: int = 0
    error_types: Counter[str] = field(default_factory=Counter)
    durations_ms: list[float] = field(default_factory=list)
    billed_ms: list[int] = field(default_factory=list)
    init_ms: float | None = None
    cost_per_invocation: float = 0.0

    def duration(self, q: float) -> float:
        return _percentile(self.durations_ms, q)

    @property
    def mean_ms(self) -> float:
        return sum(self.durations_ms) / len(self.durations_ms) if self.durations_ms else 0.0

    @property
    def billed_mean(self) -> float:
        return sum(self.billed_ms) / len(self.billed_ms) if self.billed_ms else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "memory_mb": self.memory_mb,
            "invocations": self.invocations,
            "errors": self.errors,
            "error_types": dict(self.error_types),
            "duration_ms": {
                "p50": round(self.duration(0.5), 3),
                "p90": round(self.duration(0.9), 3),
                "mean": round(self.mean_ms, 3),
            },
            "init_ms": None if self.init_ms is None else round(self.init_ms, 3),
            "billed_ms_mean": round(self.billed_mean, 3),
            "cost_usd_per_invocation": self.cost_per_invocation,
            "cost_usd_per_million": round(self.cost_per_invocation * 1_000_000, 6),
            "cpu_share": round(self.cpu_share, 4),
            "measurable": self.measurable,
        }


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def cost_per_invocation(
    billed_ms: float, memory_mb: int, architecture: str, ephemeral_mb: int = MIN_EPHEMERAL_MB
) -> float:
    """Lambda's price of one invocation: GB-seconds at the architecture's rate, the request, and
    the ephemeral storage above the free 512 MB."""
    seconds = billed_ms / 1000
    compute = seconds * memory_mb / 1024 * PRICE_GB_S[architecture]
    storage = seconds * max(0, ephemeral_mb - MIN_EPHEMERAL_MB) / 1024 * PRICE_EPHEMERAL_GB_S
    return compute + PRICE_REQUEST + storage


def choose(
    results: list[SizeResult], strategy: str, weight: float
) -> tuple[SizeResult | None, str]:
    """The recommended size and why; sizes with errors are never chosen, nor unmeasurable ones
    while a measurable one succeeded."""
    ok = [r for r in results if r.errors == 0 and r.invocations > 0]
    if not ok:
        return None, "no memory size ran without errors"
    measurable = [r for r in ok if r.measurable]
    candidates = measurable or ok
    if strategy == "speed":
        best = min(candidates, key=lambda r: (r.mean_ms, r.cost_per_invocation))
        return best, f"fastest: {best.mean_ms:.1f} ms mean"
    if strategy == "balanced":
        max_cost = max(r.cost_per_invocation for r in candidates) or 1.0
        max_ms = max(r.mean_ms for r in candidates) or 1.0

        def value(r: SizeResult) -> float:
            return weight * r.cost_per_invocation / max_cost + (1 - weight) * r.mean_ms / max_ms

        best = min(candidates, key=value)
        return best, f"balanced (weight {weight:g}): score {value(best):.3f}, lowest of all sizes"
    cheapest = min(r.cost_per_invocation for r in candidates)
    near = [r for r in candidates if r.cost_per_invocation <= cheapest * (1 + COST_TOLERANCE)]
    best = min(near, key=lambda r: (r.mean_ms, r.cost_per_invocation))
    reason = f"cheapest: ${best.cost_per_invocation * 1e6:.4f} per million"
    if len(near) > 1:
        reason += f" (the fastest of {len(near)} sizes within {COST_TOLERANCE:.0%} of the cheapest)"
    return best, reason


# --- running -------------------------------------------------------------------------------


def _report_fields(log: str, request_id: str) -> dict[str, str]:
    for m in _REPORT.finditer(log):
        if m.group(1) == request_id:
            fields = {}
            for part in m.group(2).split("\t"):
                key, _, value = part.partition(": ")
                if key:
                    fields[key] = value
            return fields
    return {}


def _ms(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value.split()[0])
    except ValueError:
        return None


def _error_type(result: InvokeResult) -> str | None:
    if result.function_error is None:
        return None
    if isinstance(result.payload, dict):
        return str(result.payload.get("errorType") or "Unhandled")
    return "Unhandled"


def _invoke_once(
    fn: LambdaFunction, event: object, function: str | None, timeout: float
) -> tuple[str | None, float | None, float | None, float | None]:
    """(error type, duration ms, billed ms, init ms) of one invocation."""
    try:
        result = fn.invoke(event, function=function, timeout=timeout)
    except InvokeError as exc:
        return exc.error_type or f"HTTP {exc.status}", None, None, None
    except OSError as exc:
        return f"Connection: {exc.__class__.__name__}", None, None, None
    fields = _report_fields(result.log, result.request_id)
    return (
        _error_type(result),
        _ms(fields.get("Duration")),
        _ms(fields.get("Billed Duration")),
        _ms(fields.get("Init Duration")),
    )


def measure(
    rie_args: list[str],
    memory_mb: int,
    *,
    invocations: int,
    concurrency: int,
    event: object,
    function: str | None,
    architecture: str,
    ephemeral_mb: int,
    timeout: float,
    cpus: int,
    progress: Progress,
) -> SizeResult:
    share = cpu_share(memory_mb)
    result = SizeResult(memory_mb, share, share <= cpus)
    args = [*rie_args, "--memory", str(memory_mb), "--sandbox", "lambda"]
    args += ["--max-concurrency", str(max(1, concurrency))]
    fn = LambdaFunction(args, name=function)
    fn.start()
    total = invocations + 1

    def record(outcome: tuple[str | None, float | None, float | None, float | None]) -> None:
        error, _, _, init = outcome
        result.invocations += 1
        if error is not None:
            result.errors += 1
            result.error_types[error] += 1
        if init is not None and result.init_ms is None:
            result.init_ms = init  # the cold start (or the re-init after an error)
        progress.step(memory_mb, result.invocations, total)

    try:
        # the cold invocation: its init is measured apart, its duration not counted
        record(_invoke_once(fn, event, function, timeout))
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = [
                pool.submit(_invoke_once, fn, event, function, timeout) for _ in range(invocations)
            ]
            for future in futures:
                outcome = future.result()
                record(outcome)
                duration, billed = outcome[1], outcome[2]
                if duration is not None:
                    result.durations_ms.append(duration)
                    result.billed_ms.append(
                        int(billed if billed is not None else math.ceil(duration))
                    )
    finally:
        fn.stop()
    billed = result.billed_mean
    result.cost_per_invocation = cost_per_invocation(billed, memory_mb, architecture, ephemeral_mb)
    return result


class Progress:
    """A bar on a terminal; a line per size elsewhere."""

    def __init__(self, sizes: int, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.sizes = sizes
        self.done = 0

    def step(self, memory_mb: int, n: int, total: int) -> None:
        if not self.tty:
            return
        width = 30
        frac = (self.done + n / total) / self.sizes
        bar = "#" * int(frac * width)
        self.stream.write(f"\r  [{bar:<{width}}] {memory_mb:>5} MB  {n}/{total}   ")
        self.stream.flush()

    def size_done(self, r: SizeResult) -> None:
        self.done += 1
        if self.tty:
            self.stream.write("\r" + " " * 60 + "\r")
        errors = f", {r.errors} errors" if r.errors else ""
        self.stream.write(f"  {r.memory_mb} MB: {r.mean_ms:.1f} ms mean{errors}\n")
        self.stream.flush()


# --- output --------------------------------------------------------------------------------


def table(results: list[SizeResult], chosen: SizeResult | None) -> str:
    head = (
        f"{'memory':>8} {'cpu':>5} {'p50 ms':>9} {'p90 ms':>9} {'mean ms':>9} {'init ms':>8} "
        f"{'billed':>8} {'$/million':>11}  errors"
    )
    lines = [head]
    for r in results:
        mark = "*" if r is chosen else " "
        errors = ", ".join(f"{k} x{v}" for k, v in r.error_types.items()) or "-"
        note = "" if r.measurable else "  (not measurable here: CPU share above this machine's)"
        init = f"{r.init_ms:8.1f}" if r.init_ms is not None else f"{'-':>8}"
        lines.append(
            f"{mark}{r.memory_mb:>4} MB {r.cpu_share:5.2f} {r.duration(0.5):9.1f} "
            f"{r.duration(0.9):9.1f} {r.mean_ms:9.1f} {init} {r.billed_mean:8.1f} "
            f"{r.cost_per_invocation * 1e6:11.4f}  {errors}{note}"
        )
    return "\n".join(lines)


def report(
    results: list[SizeResult],
    chosen: SizeResult | None,
    reason: str,
    *,
    strategy: str,
    weight: float,
    architecture: str,
    ephemeral_mb: int,
    invocations: int,
    concurrency: int,
    function: str | None,
    cpus: int,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "function": function,
        "strategy": strategy,
        "balanced_weight": weight,
        "architecture": architecture,
        "ephemeral_storage_mb": ephemeral_mb,
        "invocations_per_size": invocations,
        "concurrency": concurrency,
        "machine": {"cpus": cpus},
        "results": [r.as_json() for r in results],
        "recommendation": (
            None if chosen is None else {"memory_mb": chosen.memory_mb, "reason": reason}
        ),
    }


def _axis_ticks(top: float, n: int = 4) -> list[float]:
    if top <= 0:
        return [0.0]
    raw = top / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(n + 1) if i * step <= top * 1.0001 + step]


def svg_chart(results: list[SizeResult], chosen: SizeResult | None) -> str:
    """Duration (left axis) and cost (right axis) against memory, power-tuning's chart."""
    w, h, left, right, top, bottom = 760, 360, 70, 90, 30, 50
    plot_w, plot_h = w - left - right, h - top - bottom
    n = len(results)
    xs = [left + (i + 0.5) * plot_w / max(1, n) for i in range(n)]
    max_ms = max((r.mean_ms for r in results), default=0.0) or 1.0
    max_cost = max((r.cost_per_invocation for r in results), default=0.0) or 1.0
    ms_ticks = _axis_ticks(max_ms)
    cost_ticks = _axis_ticks(max_cost * 1e6)
    ms_top, cost_top = ms_ticks[-1] or 1.0, (cost_ticks[-1] or 1.0) / 1e6

    def y_ms(v: float) -> float:
        return top + plot_h * (1 - v / ms_top)

    def y_cost(v: float) -> float:
        return top + plot_h * (1 - v / cost_top)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" role="img" aria-label="duration and cost against memory">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
        'stroke="#ccc"/>',
    ]
    for t in ms_ticks:
        y = y_ms(t)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#1f77b4">{t:g}</text>'
        )
    for t in cost_ticks:
        y = y_cost(t / 1e6)
        out.append(
            f'<text x="{left + plot_w + 6}" y="{y + 4:.1f}" font-size="11" '
            f'fill="#d62728">{t:g}</text>'
        )
    for x, r in zip(xs, results, strict=True):
        label = f"{r.memory_mb} MB" + ("" if r.measurable else " †")
        weight = ' font-weight="bold"' if r is chosen else ""
        out.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle" '
            f'font-size="12"{weight}>{html.escape(label)}</text>'
        )
        if r is chosen:
            out.append(
                f'<rect x="{x - plot_w / max(1, n) / 2 + 2:.1f}" y="{top}" '
                f'width="{plot_w / max(1, n) - 4:.1f}" height="{plot_h}" fill="#2ca02c" '
                'fill-opacity="0.08"/>'
            )
    for color, ys, name in (
        ("#1f77b4", [y_ms(r.mean_ms) for r in results], "duration"),
        ("#d62728", [y_cost(r.cost_per_invocation) for r in results], "cost"),
    ):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        out.append(
            f'<polyline class="{name}" points="{points}" fill="none" stroke="{color}" '
            'stroke-width="2"/>'
        )
        for x, y, r in zip(xs, ys, results, strict=True):
            fill = "#fff" if (r.errors or not r.measurable) else color
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{color}"/>')
            if r.errors:
                out.append(
                    f'<text x="{x:.1f}" y="{y - 8:.1f}" text-anchor="middle" font-size="11" '
                    'fill="#d62728">errors</text>'
                )
    out += [
        f'<text x="{left - 50}" y="{top - 10}" font-size="12" fill="#1f77b4">duration (ms, '
        "mean)</text>",
        f'<text x="{left + plot_w + 80}" y="{top - 10}" text-anchor="end" font-size="12" '
        'fill="#d62728">cost ($ per million)</text>',
        f'<text x="{left + plot_w / 2}" y="{h - 8}" text-anchor="middle" font-size="12">'
        "memory size († not measurable here)</text>",
        "</svg>",
    ]
    return "\n".join(out)


def html_page(data: dict[str, Any], results: list[SizeResult], chosen: SizeResult | None) -> str:
    rec = data["recommendation"]
    if rec is None:
        choice = "<p id='choice'>No memory size ran without errors: no recommendation.</p>"
    else:
        choice = (
            f"<p id='choice'>Recommended: <strong>{rec['memory_mb']} MB</strong> "
            f"({html.escape(data['strategy'])}) — {html.escape(rec['reason'])}.</p>"
        )
    rows = []
    for r in results:
        j = r.as_json()
        errors = ", ".join(f"{html.escape(k)} x{v}" for k, v in r.error_types.items()) or "—"
        note = "" if r.measurable else " <em>not measurable here</em>"
        cls = ' class="chosen"' if r is chosen else ""
        init = "—" if r.init_ms is None else f"{r.init_ms:.1f}"
        rows.append(
            f"<tr{cls}><td>{r.memory_mb} MB{note}</td><td>{r.cpu_share:.2f}</td>"
            f"<td>{j['duration_ms']['p50']:.1f}</td><td>{j['duration_ms']['p90']:.1f}</td>"
            f"<td>{j['duration_ms']['mean']:.1f}</td><td>{init}</td>"
            f"<td>{j['billed_ms_mean']:.1f}</td><td>{j['cost_usd_per_invocation']:.10f}</td>"
            f"<td>{j['cost_usd_per_million']:.4f}</td><td>{r.invocations}</td>"
            f"<td>{errors}</td></tr>"
        )
    title = f"rie tune: {html.escape(data['function'] or 'function')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
tr.chosen {{ background: #e8f5e9; font-weight: bold; }}
</style></head><body>
<h1>{title}</h1>
<p>{data["architecture"]}, {data["invocations_per_size"]} invocations per size
({data["concurrency"]} at a time), strategy {html.escape(data["strategy"])}; this machine has
{data["machine"]["cpus"]} CPUs.</p>
{choice}
{svg_chart(results, chosen)}
<table id="results"><thead><tr><th>memory</th><th>CPU share</th><th>p50 ms</th><th>p90 ms</th>
<th>mean ms</th><th>init ms</th><th>billed ms</th><th>$ per invocation</th><th>$ per million</th>
<th>invocations</th><th>errors</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody></table>
</body></html>
"""


# --- command line --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rie tune",
        usage="rie tune [FUNCTION] [--config F | --template F | --task-root D --handler H | "
        "-- COMMAND...] [options]",
        description="Power tuning on this machine: run the function at each memory size under "
        "Lambda's resource model, and choose a size by cost, speed or both.",
    )
    p.add_argument("function", nargs="?", help="the function to tune (with --config/--template)")
    src = p.add_argument_group("the function")
    src.add_argument("--config", metavar="FILE")
    src.add_argument("--template", metavar="FILE")
    src.add_argument("--task-root", metavar="DIR")
    src.add_argument("--handler")
    src.add_argument("--env", action="append", default=[], metavar="K=V")
    src.add_argument("--timeout", type=float, default=60.0, help="seconds per invocation")
    src.add_argument(
        "--ephemeral-storage", type=int, default=MIN_EPHEMERAL_MB, metavar="MB", help="/tmp size"
    )
    run = p.add_argument_group("the run")
    run.add_argument(
        "--memory",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="memory sizes in MB, comma-separated (default %(default)s)",
    )
    run.add_argument("--invocations", type=int, default=20, help="per size (default 20)")
    run.add_argument("--concurrency", type=int, default=1, help="invocations at once (default 1)")
    run.add_argument("--event", metavar="FILE", help="the event, a JSON file")
    run.add_argument("--sample", metavar="NAME", help="a sample event (see `rie event list`)")
    run.add_argument("--strategy", choices=("cost", "speed", "balanced"), default="cost")
    run.add_argument(
        "--balanced-weight", type=float, default=0.5, help="0 = speed, 1 = cost (default 0.5)"
    )
    run.add_argument("--architecture", choices=tuple(PRICE_GB_S), default="x86_64")
    run.add_argument("--output", metavar="DIR", default=".", help="where tune.json/.html go")
    return p


class UsageError(Exception):
    pass


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(
            f"--memory: expected MB numbers separated by commas, got {text!r}"
        ) from None
    if not sizes or any(not 128 <= s <= 10240 for s in sizes):
        raise UsageError(f"--memory: sizes must be 128-10240 MB, got {text!r}")
    return sorted(set(sizes))


def _event(a: argparse.Namespace) -> object:
    if a.event and a.sample:
        raise UsageError("--event and --sample: give one")
    if a.event:
        try:
            with open(a.event, encoding="utf-8") as f:
                return json.load(f)
        except OSError as exc:
            raise UsageError(f"--event: {a.event}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"--event: {a.event} is not JSON: {exc}") from None
    if a.sample:
        from rie.model import samples

        try:
            return samples.build(a.sample)
        except (KeyError, ValueError) as exc:
            raise UsageError(f"--sample: {exc}") from None
    return {}


def _rie_args(a: argparse.Namespace) -> list[str]:
    """rie's own arguments for the function (the memory size and sandbox are added per size);
    checked here, so that a bad one is a usage error rather than N failed starts."""
    command = list(a.command)
    args: list[str] = []
    if a.config:
        args += ["--config", a.config]
    if a.template:
        args += ["--template", a.template]
    if a.task_root:
        args += ["--task-root", a.task_root]
    if a.handler:
        args += ["--handler", a.handler]
    for pair in a.env:
        args += ["--env", pair]
    args += ["--timeout", f"{a.timeout:g}", "--ephemeral-storage", str(a.ephemeral_storage)]
    if command:
        args += ["--", *command]
    if not (a.config or a.template or a.task_root or a.handler or command):
        raise UsageError(
            "give the function: --config, --template, --task-root/--handler or -- COMMAND"
        )
    from rie.settings.errors import ConfigError
    from rie.settings.load import load_all

    try:
        configs = load_all(args, os.environ)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    names = [c.function_name for c in configs]
    if len(configs) > 1 and a.function is None:
        raise UsageError(f"several functions ({', '.join(names)}): name the one to tune")
    if a.function is not None and (a.config or a.template) and a.function not in names:
        raise UsageError(f"no function {a.function!r} (there are: {', '.join(names)})")
    return args


def main(argv: list[str]) -> int:
    p = build_parser()
    # everything after `--` is the function's command, as for rie itself
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    try:
        a = p.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    a.command = command
    try:
        if a.invocations < 1 or a.concurrency < 1:
            raise UsageError("--invocations and --concurrency must be at least 1")
        if not 0 <= a.balanced_weight <= 1:
            raise UsageError("--balanced-weight must be between 0 and 1")
        if not MIN_EPHEMERAL_MB <= a.ephemeral_storage <= MAX_EPHEMERAL_MB:
            raise UsageError("--ephemeral-storage must be 512-10240 MB")
        sizes = _sizes(a.memory)
        event = _event(a)
        rie_args = _rie_args(a)
        os.makedirs(a.output, exist_ok=True)
    except UsageError as exc:
        print(f"rie tune: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"rie tune: --output: {a.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    cpus = os.cpu_count() or 1
    from rie.sandbox.policy import capabilities

    caps = capabilities()
    if caps.memory or caps.cpu:
        print(
            "rie tune: warning: memory sizes cannot be enforced here "
            f"({caps.memory or caps.cpu}): every size runs with this machine's resources",
            file=sys.stderr,
        )
    progress = Progress(len(sizes))
    results: list[SizeResult] = []
    started = time.monotonic()
    for size in sizes:
        try:
            r = measure(
                rie_args,
                size,
                invocations=a.invocations,
                concurrency=a.concurrency,
                event=event,
                function=a.function,
                architecture=a.architecture,
                ephemeral_mb=a.ephemeral_storage,
                timeout=a.timeout + 30,
                cpus=cpus,
                progress=progress,
            )
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"rie tune: {size} MB: rie did not start: {exc}", file=sys.stderr)
            r = SizeResult(size, cpu_share(size), cpu_share(size) <= cpus)
            r.error_types["rie did not start"] += 1
            r.errors = 1
        results.append(r)
        progress.size_done(r)
    chosen, reason = choose(results, a.strategy, a.balanced_weight)
    data = report(
        results,
        chosen,
        reason,
        strategy=a.strategy,
        weight=a.balanced_weight,
        architecture=a.architecture,
        ephemeral_mb=a.ephemeral_storage,
        invocations=a.invocations,
        concurrency=a.concurrency,
        function=a.function,
        cpus=cpus,
    )
    json_path = os.path.join(a.output, "tune.json")
    html_path = os.path.join(a.output, "tune.html")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(html_page(data, results, chosen))
    print(table(results, chosen))
    if chosen is None:
        print(f"no recommendation: {reason}")
    else:
        print(f"recommended: {chosen.memory_mb} MB ({a.strategy}): {reason}")
    print(f"wrote {json_path} and {html_path} in {time.monotonic() - started:.1f} s")
    return EXIT_OK if chosen is not None else EXIT_NONE_SUCCEEDED
