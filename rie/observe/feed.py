"""The dashboard's record of platform events: the last invocations (with their logs, events and
answers) and per-second series for charts, filled only while someone is watching.

There is no second bookkeeping: the environment already tells its function's `Metrics` of every
REPORT and the pool of every throttle. While at least one page listens, `Feed.attach` hangs a
`Recorder` on each function's `Metrics` (its `feed` attribute); when the last page leaves,
`Feed.detach` takes them off. With no page open, a REPORT costs one attribute test and nothing else.

Bounds (documented in docs/dashboard.md):
- a ring of the last `MAX_RECORDS` invocations (throttles included);
- each one's event and answer kept up to `BODY_LIMIT` bytes, its log up to `logs.LOG_LIMIT` (the last
  part, as the environment's tail keeps it), saying when they were cut;
- `BYTES_BUDGET` bytes of events, answers and logs over the whole ring: past it, the oldest
  records lose their bodies (their row stays);
- per second, for the last `WINDOW_S` seconds, per function and for all: Invocations, Errors,
  Throttles, ConcurrentExecutions (the highest sampled), cold starts and Duration p50/p99 (from at
  most `DURATION_SAMPLES` durations a second, 8 bytes each).

Pure logic: the clock is injectable, nothing here does I/O or touches the event loop.
"""

from __future__ import annotations

import array
import collections
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from rie.model.invocation import Invocation, State
from rie.observe.logs import billed_ms

MAX_RECORDS = 10_000
BODY_LIMIT = 256 * 1024
BYTES_BUDGET = 64 * 1024 * 1024
WINDOW_S = 900  # CloudWatch's "last 15 minutes"
DURATION_SAMPLES = 4096

ALL = "*"  # the series of every function together

_STATUS = {
    State.RESPONDED: "success",
    State.ERRORED: "error",
    State.TIMED_OUT: "timeout",
    State.FAILED: "failed",
}


class Watched(Protocol):
    """What the feed hangs its recorder on: a function's `Metrics`."""

    feed: Recorder | None


class Record:
    """One invocation as the dashboard lists it (or one throttled request).

    `row` is the table's row, built once when it is recorded, in the order the page reads it
    (rie/fronts/dashboard/static/dashboard.js): seq, time (epoch s), function, request id, type,
    status (success, error, timeout, failed, throttled), duration ms, billed ms, max memory MB,
    init duration ms (cold starts only), error type, environment id."""

    __slots__ = ("answer", "answer_size", "event", "event_size", "kept", "log", "log_cut", "row")

    def __init__(
        self,
        row: list[Any],
        event: bytes | None,
        event_size: int,
        answer: bytes | None = None,
        answer_size: int = 0,
        log: bytes | None = None,
        log_cut: bool = False,
    ) -> None:
        self.row = row
        self.event = event
        self.event_size = event_size
        self.answer = answer
        self.answer_size = answer_size
        self.log = log
        self.log_cut = log_cut
        self.kept = 0  # bytes of event, answer and log held (0 once dropped)

    @property
    def seq(self) -> int:
        return int(self.row[0])

    @property
    def request_id(self) -> str:
        return str(self.row[3])

    @property
    def status(self) -> str:
        return str(self.row[5])

    @property
    def error_type(self) -> str | None:
        value = self.row[10]
        return None if value is None else str(value)

    def detail(self) -> dict[str, Any]:
        """The row with its log, event and answer (as text; each says if it was cut)."""

        def text(data: bytes | None) -> str | None:
            return None if data is None else data.decode("utf-8", "replace")

        return {
            "row": self.row,
            "log": text(self.log),
            "logCut": self.log_cut,
            "event": text(self.event),
            "eventSize": self.event_size,
            "eventCut": self.event is not None and len(self.event) < self.event_size,
            "answer": text(self.answer),
            "answerSize": self.answer_size,
            "answerCut": self.answer is not None and len(self.answer) < self.answer_size,
            "dropped": self.kept == 0 and self.status != "throttled",
        }


class _Second:
    __slots__ = (
        "cold_starts",
        "concurrency",
        "durations",
        "errors",
        "invocations",
        "second",
        "throttles",
    )

    def __init__(self, second: int) -> None:
        self.second = second
        self.invocations = 0
        self.errors = 0
        self.throttles = 0
        self.cold_starts = 0
        self.concurrency = 0
        # a flat array of doubles (8 bytes a sample, not a list of float objects' 32): a second
        # holds up to DURATION_SAMPLES of them for WINDOW_S seconds
        self.durations: array.array[float] = array.array("d")

    def point(self) -> list[Any]:
        """[second, Invocations, Errors, Throttles, ConcurrentExecutions, cold starts, Duration
        p50, Duration p99] (the page's order)."""
        p50 = p99 = None
        if self.durations:
            ordered = sorted(self.durations)
            p50 = round(_rank(ordered, 0.5), 2)
            p99 = round(_rank(ordered, 0.99), 2)
        return [
            self.second,
            self.invocations,
            self.errors,
            self.throttles,
            self.concurrency,
            self.cold_starts,
            p50,
            p99,
        ]

    def add(self, other: _Second) -> None:
        self.invocations += other.invocations
        self.errors += other.errors
        self.throttles += other.throttles
        self.cold_starts += other.cold_starts
        self.durations += other.durations[: DURATION_SAMPLES - len(self.durations)]


def _rank(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Series:
    """One function's per-second figures over the last WINDOW_S seconds."""

    __slots__ = ("_dirty", "_slots", "latest")

    def __init__(self) -> None:
        self._slots: list[_Second | None] = [None] * WINDOW_S
        self._dirty: set[int] = set()
        self.latest: _Second | None = None  # the second being counted (the recorder's shortcut)

    def bucket(self, second: int) -> _Second:
        latest = self.latest
        if latest is not None and latest.second == second:
            return latest
        index = second % WINDOW_S
        slot = self._slots[index]
        if slot is None or slot.second != second:
            slot = self._slots[index] = _Second(second)
        self._dirty.add(second)
        if latest is None or second >= latest.second:
            self.latest = slot
        return slot

    def at(self, second: int) -> _Second | None:
        slot = self._slots[second % WINDOW_S]
        return slot if slot is not None and slot.second == second else None

    def seconds(self, now_s: int) -> list[int]:
        """Every second of the window that saw anything, oldest first."""
        first = now_s - WINDOW_S
        return sorted(s.second for s in self._slots if s is not None and s.second > first)

    def take_changed(self, now_s: int) -> set[int]:
        """The seconds changed since the last call: those a new bucket was made for, and always
        the latest one (it is counted into without being marked again)."""
        dirty, self._dirty = self._dirty, set()
        if self.latest is not None:
            dirty.add(self.latest.second)
        return {second for second in dirty if second > now_s - WINDOW_S}


class Recorder:
    """Hung on one function's `Metrics` while the feed is attached: the calls the environment and
    the pool make into it are the platform's events of that function."""

    __slots__ = ("_feed", "_series", "name")

    def __init__(self, feed: Feed, name: str) -> None:
        self._feed = feed
        self.name = name
        self._series = feed.series_of(name)

    def reported(
        self,
        inv: Invocation,
        env_id: int,
        duration_ms: float,
        max_memory_mb: int,
        error_type: str | None,
        log: bytes,
        log_cut: bool,
    ) -> None:
        """An invocation's REPORT: what it printed, as Lambda reports it."""
        feed = self._feed
        status = _STATUS.get(inv.state, "failed")
        outcome = inv.outcome
        answer = outcome.body if outcome is not None else b""
        if status == "error":
            error_type = _error_type(answer) or error_type
        request = inv.request
        event = request.payload
        at = feed.clock()
        init_ms = inv.init_duration_ms
        feed._seq += 1
        row = [
            feed._seq,
            at,
            self.name,
            inv.request_id,
            request.invocation_type,
            status,
            duration_ms,
            billed_ms(duration_ms),
            max_memory_mb,
            init_ms,
            error_type,
            env_id,
        ]
        feed.add(
            Record(
                row,
                event[:BODY_LIMIT],
                len(event),
                answer[:BODY_LIMIT],
                len(answer),
                log,
                log_cut,
            )
        )
        bucket = self._series.bucket(int(at))
        bucket.invocations += 1
        if status != "success":
            bucket.errors += 1
        if init_ms is not None:
            bucket.cold_starts += 1
        if len(bucket.durations) < DURATION_SAMPLES:
            bucket.durations.append(duration_ms)

    def throttled(self, inv: Invocation) -> None:
        """A request refused with 429 at the concurrency limit."""
        feed = self._feed
        event = inv.request.payload
        at = feed.clock()
        feed._seq += 1
        row = [
            feed._seq,
            at,
            self.name,
            inv.request_id,
            inv.request.invocation_type,
            "throttled",
            None,
            None,
            None,
            None,
            "TooManyRequestsException",
            None,
        ]
        feed.add(Record(row, event[:BODY_LIMIT], len(event)))
        self._series.bucket(int(at)).throttles += 1


def _error_type(body: bytes) -> str | None:
    """A function error's own type, from its answer (`{"errorType": ...}`): the runtime's header
    may say only `Runtime.Unknown` or `Unhandled`."""
    if len(body) > BODY_LIMIT or not body.startswith(b"{"):
        return None
    try:
        doc = json.loads(body)  # (json, not orjson: this module is on rie's start-up path)
    except ValueError:
        return None
    value = doc.get("errorType") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and value else None


class Feed:
    """The ring, the series and the list of what is new since the last push."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        max_records: int = MAX_RECORDS,
        bytes_budget: int = BYTES_BUDGET,
    ) -> None:
        self.clock = clock
        self._max = max_records
        self._budget = bytes_budget
        self._ring: collections.deque[Record] = collections.deque()
        self._by_seq: dict[int, Record] = {}
        self._heavy: collections.deque[Record] = collections.deque()  # records holding bytes
        self.kept_bytes = 0
        self._seq = 0
        self._new: list[Record] = []
        self._series: dict[str, Series] = {}  # per function
        # every function together: its counts are the functions' summed when read (nothing is
        # counted twice per invocation); only its concurrency is sampled on its own
        self._all = Series()
        self._attached: list[Watched] = []

    # --- subscription ---------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return bool(self._attached)

    def attach(self, functions: Iterable[tuple[str, Watched]]) -> None:
        """Start recording (the first page opened)."""
        if self._attached:
            return
        for name, metrics in functions:
            metrics.feed = Recorder(self, name)
            self._attached.append(metrics)

    def detach(self) -> None:
        """Stop recording (the last page closed): the functions' events cost nothing again."""
        for metrics in self._attached:
            metrics.feed = None
        self._attached.clear()
        self._new.clear()  # a page that opens next gets them in its snapshot

    # --- recording ------------------------------------------------------------------------

    def series_of(self, name: str) -> Series:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = Series()
        return series

    def add(self, record: Record) -> None:
        ring = self._ring
        if len(ring) >= self._max:
            old = ring.popleft()
            del self._by_seq[old.row[0]]
            # records holding bytes are in the ring's order: the oldest, if there, is first
            heavy = self._heavy
            if heavy and heavy[0] is old:
                heavy.popleft()
            self._drop(old)
        ring.append(record)
        self._by_seq[record.row[0]] = record
        self._new.append(record)
        kept = len(record.event or b"") + len(record.answer or b"") + len(record.log or b"")
        if kept:
            record.kept = kept
            self.kept_bytes += kept
            self._heavy.append(record)
            while self.kept_bytes > self._budget and self._heavy:
                self._drop(self._heavy.popleft())

    def _drop(self, record: Record) -> None:
        """Let go of a record's bodies (its row stays while it is in the ring)."""
        if record.kept:
            self.kept_bytes -= record.kept
            record.kept = 0
            record.event = record.answer = record.log = None

    def concurrency(self, name: str, running: int, now: float | None = None) -> None:
        """A sample of a function's (or, with ALL, every function's) concurrent executions: the
        series keeps each second's highest."""
        series = self._all if name == ALL else self.series_of(name)
        bucket = series.bucket(int(self.clock() if now is None else now))
        bucket.concurrency = max(bucket.concurrency, running)

    # --- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self) -> Iterator[Record]:
        return iter(self._ring)

    def get(self, seq: int) -> Record | None:
        return self._by_seq.get(seq)

    def take_new(self) -> list[Record]:
        """What was recorded since the last call (oldest first)."""
        new, self._new = self._new, []
        return new

    def _all_point(self, second: int) -> list[Any]:
        total = _Second(second)
        for series in self._series.values():
            bucket = series.at(second)
            if bucket is not None:
                total.add(bucket)
        sampled = self._all.at(second)
        if sampled is not None:
            total.concurrency = sampled.concurrency
        return total.point()

    def _collect(
        self, seconds: dict[str, list[int]], all_seconds: list[int]
    ) -> dict[str, list[list[Any]]]:
        """The points of these seconds of each function, and of all of them (the union)."""
        out: dict[str, list[list[Any]]] = {}
        every = set(all_seconds)
        for name, wanted in seconds.items():
            series = self._series[name]
            points = [b.point() for b in map(series.at, wanted) if b is not None]
            every.update(wanted)
            if points:
                out[name] = points
        if every:
            out[ALL] = [self._all_point(second) for second in sorted(every)]
        return out

    def points(self, now: float | None = None) -> dict[str, list[list[Any]]]:
        """Every series over the whole window (for a page that just opened)."""
        now_s = int(self.clock() if now is None else now)
        seconds = {name: series.seconds(now_s) for name, series in self._series.items()}
        return self._collect(seconds, self._all.seconds(now_s))

    def changed_points(self, now: float | None = None) -> dict[str, list[list[Any]]]:
        """The seconds of each series changed since the last call (for a push)."""
        now_s = int(self.clock() if now is None else now)
        seconds = {
            name: sorted(series.take_changed(now_s)) for name, series in self._series.items()
        }
        return self._collect(seconds, sorted(self._all.take_changed(now_s)))
