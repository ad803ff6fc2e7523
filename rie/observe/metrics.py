"""Counters for `/metrics` (Prometheus text format) and the summary printed at shutdown.

Recording is a few additions per invocation; percentiles come from a bounded reservoir so memory
stays flat however long the emulator runs.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rie.model.invocation import Invocation, State
from rie.observe.logs import billed_ms

if TYPE_CHECKING:
    from rie.observe.feed import Recorder

# list price, x86, us-east-1
PRICE_PER_GB_SECOND = 0.0000166667
PRICE_PER_REQUEST = 0.20 / 1_000_000
_BUCKETS_S = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)
_RESERVOIR = 10_000

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, str]  # sample name, labels, value as written
Family = tuple[str, str, str, list[Sample]]  # metric name, type, help, samples

_OUTCOME = {
    State.RESPONDED: "success",
    State.ERRORED: "function_error",
    State.TIMED_OUT: "timeout",
    State.FAILED: "platform_error",
}


class Histogram:
    def __init__(self, bounds: tuple[float, ...] = _BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def family(self, name: str, help_text: str) -> Family:
        samples: list[Sample] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            samples.append((f"{name}_bucket", (("le", f"{bound:g}"),), str(running)))
        samples.append((f"{name}_bucket", (("le", "+Inf"),), str(self.n)))
        samples.append((f"{name}_sum", (), f"{self.total:.6f}"))
        samples.append((f"{name}_count", (), str(self.n)))
        return name, "histogram", help_text, samples


class Metrics:
    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (invocation type, outcome)
        self.throttles = 0
        self.cold_starts = 0
        self.provisioned_inits = 0
        self.event_retries = 0
        self.event_failures = 0
        self.duration = Histogram()
        self.init_duration = Histogram()
        self.billed_ms_total = 0
        self.extension_ms_total = 0.0  # time extensions kept environments after the response
        self._sample: list[float] = []
        self._seen = 0
        self._random = random.Random(0)
        self.gauges: dict[str, Callable[[], float]] = {}
        # answers of the HTTP front, by (format, status); the Invoke API's are not counted here
        self.http_answers: Counter[tuple[str, int]] = Counter()
        # the dashboard's recorder (rie/observe/feed.py), hung here only while a page is open
        self.feed: Recorder | None = None

    # --- recording -------------------------------------------------------------------------

    def init_done(self, init_ms: float, provisioned: bool) -> None:
        if provisioned:
            self.provisioned_inits += 1
        else:
            self.cold_starts += 1
        self.init_duration.observe(init_ms / 1000)

    def throttled(self, inv: Invocation) -> None:
        """`inv` was refused with 429 at the concurrency limit."""
        self.throttles += 1
        if self.feed is not None:
            self.feed.throttled(inv)

    def invocation_done(self, inv: Invocation, duration_ms: float | None = None) -> None:
        """`duration_ms`: REPORT's Duration when it differs from the runtime's own (the time
        INVOKE-subscribed extensions took after the response is billed too)."""
        self.outcomes[(inv.request.invocation_type, _OUTCOME.get(inv.state, "other"))] += 1
        ms = inv.duration_ms if duration_ms is None else duration_ms
        if duration_ms is not None:
            self.extension_ms_total += max(0.0, duration_ms - inv.duration_ms)
        self.duration.observe(ms / 1000)
        self.billed_ms_total += billed_ms(ms)
        self._seen += 1
        if len(self._sample) < _RESERVOIR:
            self._sample.append(ms)
        else:
            slot = self._random.randrange(self._seen)
            if slot < _RESERVOIR:
                self._sample[slot] = ms

    # --- reading ---------------------------------------------------------------------------

    @property
    def invocations(self) -> int:
        return sum(self.outcomes.values())

    @property
    def errors(self) -> int:
        return sum(n for (_, outcome), n in self.outcomes.items() if outcome != "success")

    def percentile(self, q: float) -> float:
        if not self._sample:
            return 0.0
        ordered = sorted(self._sample)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    @property
    def gb_seconds(self) -> float:
        return self.billed_ms_total / 1000 * self.memory_mb / 1024

    @property
    def cost_usd(self) -> float:
        return self.gb_seconds * PRICE_PER_GB_SECOND + self.invocations * PRICE_PER_REQUEST

    def families(self) -> list[Family]:
        """Every metric as (name, type, help, samples), samples as (name, labels, value)."""
        out: list[Family] = [
            (
                "rie_invocations_total",
                "counter",
                "Invocations answered, by invocation type and outcome.",
                [
                    ("rie_invocations_total", (("type", kind), ("outcome", outcome)), str(n))
                    for (kind, outcome), n in sorted(self.outcomes.items())
                ],
            )
        ]
        counters = [
            ("rie_errors_total", "Invocations that ended in an error of any kind.", self.errors),
            (
                "rie_throttles_total",
                "Invocations refused with 429 at the concurrency limit.",
                self.throttles,
            ),
            ("rie_cold_starts_total", "Inits done on demand.", self.cold_starts),
            (
                "rie_provisioned_inits_total",
                "Inits done ahead of time for provisioned concurrency.",
                self.provisioned_inits,
            ),
            (
                "rie_event_retries_total",
                "Event invocations retried after a function error.",
                self.event_retries,
            ),
            (
                "rie_event_failures_total",
                "Event invocations given up on (on-failure records written).",
                self.event_failures,
            ),
            ("rie_billed_milliseconds_total", "Billed duration, summed.", self.billed_ms_total),
            (
                "rie_extension_milliseconds_total",
                "Time INVOKE-subscribed extensions worked after the runtime's response (billed).",
                round(self.extension_ms_total, 3),
            ),
        ]
        for name, help_text, value in counters:
            out.append((name, "counter", help_text, [(name, (), str(value))]))
        if self.http_answers:
            name = "rie_http_requests_total"
            out.append(
                (
                    name,
                    "counter",
                    "Requests answered by the HTTP front, by format and status.",
                    [
                        (name, (("front", "http"), ("format", fmt), ("code", str(code))), str(n))
                        for (fmt, code), n in sorted(self.http_answers.items())
                    ],
                )
            )
        for name, read in sorted(self.gauges.items()):
            out.append((name, "gauge", "", [(name, (), f"{read():g}")]))
        out.append(
            self.duration.family("rie_invocation_duration_seconds", "Duration as REPORT gives it.")
        )
        out.append(
            self.init_duration.family(
                "rie_init_duration_seconds", "Init Duration: process start to its first next."
            )
        )
        return out

    def render(self) -> str:
        return render([("", self)])

    def summary(self, function_name: str = "") -> str:
        whose = f" [{function_name}]" if function_name else ""
        return (
            f"rie summary{whose}: {self.invocations} invocations, {self.errors} errors, "
            f"{self.throttles} throttled, {self.cold_starts} cold starts, "
            f"duration p50 {self.percentile(0.5):.2f} ms p99 {self.percentile(0.99):.2f} ms, "
            f"{self.gb_seconds:.6f} GB-s billed, about ${self.cost_usd:.8f} at Lambda's list price"
        )


def render(by_function: Sequence[tuple[str, Metrics]], unrouted: Metrics | None = None) -> str:
    """The Prometheus text of several functions' metrics: one HELP/TYPE per metric name, each
    sample labelled with its function (`function="NAME"`; no label for an empty name). `unrouted`
    holds the HTTP front's answers to requests it gave to no function: they belong to none, so
    they are a family of their own, `rie_http_unrouted_total`, without a function label."""
    merged: dict[str, tuple[str, str, list[str]]] = {}
    if unrouted is not None and unrouted.http_answers:
        merged["rie_http_unrouted_total"] = (
            "counter",
            "Requests the HTTP front could give to no function, by format and status.",
            [
                f'rie_http_unrouted_total{{front="http",format="{fmt}",code="{code}"}} {n}'
                for (fmt, code), n in sorted(unrouted.http_answers.items())
            ],
        )
    for function_name, metrics in by_function:
        extra: Labels = (("function", function_name),) if function_name else ()
        for name, kind, help_text, samples in metrics.families():
            lines = merged.setdefault(name, (kind, help_text, []))[2]
            for sample_name, labels, value in samples:
                all_labels = extra + labels
                text = ",".join(f'{k}="{v}"' for k, v in all_labels)
                lines.append(
                    f"{sample_name}{{{text}}} {value}" if text else f"{sample_name} {value}"
                )
    out: list[str] = []
    for name, (kind, help_text, lines) in merged.items():
        if help_text:
            out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out += lines
    return "\n".join(out) + "\n"
