"""Telemetry API and Logs API: platform event records, subscriptions, batching and delivery.

The environment emits each platform event once (`Telemetry.emit`), with the same figures it writes
in its REPORT line; every subscription gets its own copy, in order, through a buffer that honours
its `maxItems` / `maxBytes` / `timeoutMs`, and a delivery task that POSTs a JSON array (HTTP) or
writes newline-separated JSON (TCP) to its destination on loopback. A subscription's deliveries
are sequential, so batches arrive in the order the events happened; `flush` delivers what is
buffered (before a SHUTDOWN event, and when the environment stops).

The record builders are pure functions; only `Subscription` does I/O, and only on 127.0.0.1:
`sandbox.localdomain` (the sandbox's own name on Lambda) is delivered to loopback here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rie.model.errors import RieError

log = logging.getLogger("rie")

SCHEMA_VERSIONS = ("2022-07-01", "2022-12-13", "2025-01-29")
# the Logs API's own versions: optional, 2020-08-15 by default; 2021-03-18 adds platform.runtimeDone
LOGS_SCHEMA_VERSIONS = ("2020-08-15", "2021-03-18")
TYPES = ("platform", "function", "extension")
# the hosts a destination may name; all are delivered to 127.0.0.1. `0.0.0.0` is there because
# AWS's sample extensions, under AWS_SAM_LOCAL, listen on 0.0.0.0 and subscribe with that address
LOOPBACK_HOSTS = frozenset({"sandbox.localdomain", "sandbox", "localhost", "127.0.0.1", "0.0.0.0"})
# platform.initStart's fields that came after the 2022-07-01 schema (its reference lists only
# initializationType, phase, runtimeVersion and runtimeVersionArn)
_INIT_START_LATER = ("functionName", "functionVersion", "instanceId", "instanceMaxMemory")
_BUFFERING = {  # (minimum, maximum, Telemetry API default, Logs API default)
    "maxItems": (1000, 10000, 1000, 10000),
    "maxBytes": (262144, 1048576, 262144, 262144),
    "timeoutMs": (25, 30000, 1000, 1000),
}
# what a subscriber may hold unread before records are dropped (and reported as such)
_QUEUE_LIMIT_ITEMS = 10000
_DELIVERY_TIMEOUT_S = 5.0
_RETRY_DELAYS_S = (0.05, 0.25)  # a batch is tried three times before it is dropped

Event = dict[str, Any]


class ValidationError(RieError):
    status = 400
    error_type = "ValidationError"


class LogsValidationError(ValidationError):
    """The Logs API's name for the same error (AWS's Logs API reference shows it)."""

    error_type = "Logs.ValidationError"


def iso_time(epoch: float | None = None) -> str:
    """`2026-11-26T03:04:05.678Z`: the timestamps of every telemetry event."""
    t = time.time() if epoch is None else epoch
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def event(kind: str, record: object, epoch: float | None = None) -> Event:
    return {"time": iso_time(epoch), "type": kind, "record": record}


# --- platform records (pure) ----------------------------------------------------------------


def init_start(
    init_type: str, function_name: str, version: str, instance_id: str, memory_mb: int
) -> Event:
    return event(
        "platform.initStart",
        {
            "initializationType": init_type,
            "phase": "init",
            "runtimeVersion": "pyrie",
            "runtimeVersionArn": "arn:aws:lambda:::runtime:pyrie",
            "functionName": function_name,
            "functionVersion": version,
            "instanceId": instance_id,
            "instanceMaxMemory": memory_mb,
        },
    )


def _span(name: str, start_epoch: float, duration_ms: float) -> dict[str, object]:
    return {"name": name, "start": iso_time(start_epoch), "durationMs": round(duration_ms, 3)}


def init_runtime_done(
    init_type: str, status: str, start_epoch: float, duration_ms: float, error_type: str | None
) -> Event:
    record: dict[str, object] = {
        "initializationType": init_type,
        "phase": "init",
        "status": status,
        "spans": [_span("runtimeInit", start_epoch, duration_ms)],
    }
    if error_type:
        record["errorType"] = error_type
    return event("platform.initRuntimeDone", record)


def init_report(init_type: str, status: str, duration_ms: float, error_type: str | None) -> Event:
    record: dict[str, object] = {
        "initializationType": init_type,
        "phase": "init",
        "status": status,
        "metrics": {"durationMs": round(duration_ms, 3)},
    }
    if error_type:
        record["errorType"] = error_type
    return event("platform.initReport", record)


def _tracing(trace_id: str) -> dict[str, str]:
    return {"type": "X-Amzn-Trace-Id", "value": trace_id}


def start(request_id: str, version: str, trace_id: str) -> Event:
    record = {"requestId": request_id, "version": version, "tracing": _tracing(trace_id)}
    return event("platform.start", record)


def runtime_done(
    request_id: str,
    status: str,
    dispatched_epoch: float,
    duration_ms: float,
    produced_bytes: int,
    error_type: str | None,
    trace_id: str,
) -> Event:
    record: dict[str, object] = {
        "requestId": request_id,
        "status": status,
        "metrics": {"durationMs": round(duration_ms, 3), "producedBytes": produced_bytes},
        "tracing": _tracing(trace_id),
        "spans": [
            _span("responseLatency", dispatched_epoch, duration_ms),
            _span("responseDuration", dispatched_epoch + duration_ms / 1000, 0.0),
        ],
    }
    if error_type:
        record["errorType"] = error_type
    return event("platform.runtimeDone", record)


def report(
    request_id: str,
    status: str,
    duration_ms: float,
    billed_ms: int,
    memory_mb: int,
    max_memory_mb: int,
    init_duration_ms: float | None,
    error_type: str | None,
    trace_id: str,
) -> Event:
    metrics: dict[str, object] = {
        "durationMs": round(duration_ms, 3),
        "billedDurationMs": billed_ms,
        "memorySizeMB": memory_mb,
        "maxMemoryUsedMB": max_memory_mb,
    }
    if init_duration_ms is not None:
        metrics["initDurationMs"] = round(init_duration_ms, 3)
    record: dict[str, object] = {
        "requestId": request_id,
        "status": status,
        "metrics": metrics,
        "tracing": _tracing(trace_id),
    }
    if error_type:
        record["errorType"] = error_type
    return event("platform.report", record)


def extension(name: str, state: str, events: Iterable[str], error_type: str | None = None) -> Event:
    record: dict[str, object] = {"name": name, "state": state, "events": sorted(events)}
    if error_type:
        record["errorType"] = error_type
    return event("platform.extension", record)


def telemetry_subscription(name: str, types: Iterable[str]) -> Event:
    return event(
        "platform.telemetrySubscription",
        {"name": name, "state": "Subscribed", "types": list(types)},
    )


def logs_dropped(reason: str, records: int, size: int) -> Event:
    return event(
        "platform.logsDropped",
        {"reason": reason, "droppedRecords": records, "droppedBytes": size},
    )


def log_line(kind: str, line: str, json_format: bool) -> Event:
    """A `function` or `extension` record: the line, or its object when the log format is JSON."""
    record: object = line
    if json_format and line.startswith("{"):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
    return event(kind, record)


def status_of(state_name: str) -> str:
    """An invocation's final state (rie.model.invocation.State values) as telemetry's status."""
    return {
        "ResponseSent": "success",
        "InvocationErrorResponse": "error",
        "Timeout": "timeout",
    }.get(state_name, "failure")


# --- the Logs API's view of the same events -------------------------------------------------


def for_logs_api(ev: Event, schema: str = "2020-08-15") -> list[Event]:
    """The Logs API's records for one event (its older, smaller schema), possibly none.
    `platform.runtimeDone` is sent only under its schema 2021-03-18, with `requestId` and a
    `status` of success, failure or timeout."""
    kind, record = ev["type"], ev["record"]
    if kind == "platform.runtimeDone":
        if schema != "2021-03-18":
            return []
        status = record["status"] if record["status"] in ("success", "timeout") else "failure"
        return [{**ev, "record": {"requestId": record["requestId"], "status": status}}]
    if kind in ("function", "extension"):
        text = record if isinstance(record, str) else json.dumps(record)
        return [{"time": ev["time"], "type": kind, "record": text}]
    if kind == "platform.start":
        return [{**ev, "record": {"requestId": record["requestId"], "version": record["version"]}}]
    if kind == "platform.report":
        end = {
            "time": ev["time"],
            "type": "platform.end",
            "record": {"requestId": record["requestId"]},
        }
        rep = {"requestId": record["requestId"], "metrics": record["metrics"]}
        return [end, {**ev, "record": rep}]
    if kind in ("platform.extension", "platform.logsDropped"):
        return [ev]
    if kind == "platform.telemetrySubscription":
        return [{**ev, "type": "platform.logsSubscription"}]
    return []


def _for_schema(ev: Event, schema: str) -> Event:
    """2022-07-01's `platform.initStart` lacks the function's fields added later; its other
    records are the same (its reference shows `tracing` and `spans` in start and runtimeDone)."""
    if schema != "2022-07-01" or ev["type"] != "platform.initStart":
        return ev
    record = {k: v for k, v in ev["record"].items() if k not in _INIT_START_LATER}
    return {**ev, "record": record}


# --- subscriptions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Destination:
    protocol: str  # HTTP or TCP
    host: str
    port: int
    path: str


@dataclass(frozen=True, slots=True)
class Request:
    """A validated subscription request."""

    types: tuple[str, ...]
    destination: Destination
    max_items: int
    max_bytes: int
    timeout_ms: int
    schema: str  # a Telemetry API version, or the Logs API's (one of LOGS_SCHEMA_VERSIONS)
    logs_api: bool = False


def parse_subscription(body: bytes, logs_api: bool = False) -> Request:
    """Validate a `PUT /telemetry` (or `/logs`) body; 400 ValidationError (the Logs API's
    `Logs.ValidationError`) with the reason."""
    try:
        return _parse_subscription(body, logs_api)
    except ValidationError as exc:
        if logs_api:
            raise LogsValidationError(exc.message) from None
        raise


def _parse_subscription(body: bytes, logs_api: bool) -> Request:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # nested too deep for the parser is not JSON here
        raise ValidationError("request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ValidationError("request body must be a JSON object")
    versions: tuple[str, ...]
    if logs_api:
        schema = doc.get("schemaVersion", LOGS_SCHEMA_VERSIONS[0])
        versions = LOGS_SCHEMA_VERSIONS
    else:
        schema = doc.get("schemaVersion")
        versions = SCHEMA_VERSIONS
    if schema not in versions:
        raise ValidationError(
            f"schemaVersion: must be one of {', '.join(versions)}, got {schema!r}"
        )
    types = doc.get("types")
    if (
        not isinstance(types, list)
        or not types
        or any(t not in TYPES for t in types)
        or len(set(types)) != len(types)
    ):
        raise ValidationError(f"types: a non-empty list of {', '.join(TYPES)}")
    buffering = doc.get("buffering", {})
    if not isinstance(buffering, dict):
        raise ValidationError("buffering: must be an object")
    limits: dict[str, int] = {}
    for key, (low, high, telemetry_default, logs_default) in _BUFFERING.items():
        value = buffering.get(key, logs_default if logs_api else telemetry_default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValidationError(f"buffering.{key}: an integer from {low} to {high}")
        limits[key] = value
    return Request(
        tuple(types),
        parse_destination(doc.get("destination")),
        limits["maxItems"],
        limits["maxBytes"],
        limits["timeoutMs"],
        schema,
        logs_api,
    )


def parse_destination(dest: object) -> Destination:
    if not isinstance(dest, dict):
        raise ValidationError("destination: an object with protocol and URI")
    protocol = dest.get("protocol")
    uri = dest.get("URI")
    if protocol not in ("HTTP", "TCP"):
        raise ValidationError("destination.protocol: HTTP or TCP")
    if not isinstance(uri, str) or not uri:
        raise ValidationError("destination.URI: required")
    expected = "http" if protocol == "HTTP" else "tcp"
    try:
        parts = urlsplit(uri if "://" in uri else f"tcp://{uri}")
        port, hostname = parts.port, parts.hostname
    except ValueError:  # an unclosed `[`, a port that is no number: no address at all
        raise ValidationError(
            f"destination.URI: expected {expected}://sandbox.localdomain:PORT"
        ) from None
    if parts.scheme != expected or not hostname or port is None:
        raise ValidationError(f"destination.URI: expected {expected}://sandbox.localdomain:PORT")
    if hostname not in LOOPBACK_HOSTS:
        # deliveries never leave the machine: the sandbox's own host is loopback here
        raise ValidationError(
            "destination.URI: the host must be sandbox.localdomain (this environment's own host)"
        )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Destination(protocol, "127.0.0.1", port, path)


@dataclass(eq=False)
class Subscription:
    """One extension's subscription: a buffer of events and the task that delivers them."""

    name: str  # the extension's name
    request: Request
    json_logs: bool = False
    _queue: list[tuple[Event, int]] = field(default_factory=list)
    _queued_bytes: int = 0
    _first_at: float | None = None  # monotonic time of the oldest buffered event
    _wake: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    _progress: asyncio.Event | None = None  # set after each delivery (for `flush`)
    _dropped: tuple[int, int] = (0, 0)
    _writer: asyncio.StreamWriter | None = None
    _reader: asyncio.StreamReader | None = None
    # items ever buffered / taken into a batch / delivered or given up; a flush forces
    # deliveries until `_taken` reaches `_force_until`, the count buffered when it was asked
    _added: int = 0
    _taken: int = 0
    _done: int = 0
    _force_until: int = 0
    closed: bool = False
    delivered_batches: int = 0
    failed_attempts: int = 0

    def wants(self, kind: str) -> bool:
        head = kind.split(".", 1)[0]
        return head in self.request.types

    def add(self, ev: Event) -> None:
        if self.closed:
            return
        if self.request.logs_api:
            items = for_logs_api(ev, self.request.schema)
        else:
            items = [_for_schema(ev, self.request.schema)]
        for item in items:
            if len(self._queue) >= _QUEUE_LIMIT_ITEMS:
                records, size = self._dropped
                self._dropped = (records + 1, size + len(json.dumps(item["record"])))
                continue
            size = len(json.dumps(item, separators=(",", ":")))
            self._queue.append((item, size))
            self._queued_bytes += size
            self._added += 1
        if self._first_at is None and self._queue:
            self._first_at = time.monotonic()
        self._ensure_task()
        assert self._wake is not None
        self._wake.set()

    def _ensure_task(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._progress = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _take_batch(self) -> list[Event]:
        """The oldest events that fit `maxItems` and `maxBytes` (at least one)."""
        batch: list[Event] = []
        size = 2
        while self._queue and len(batch) < self.request.max_items:
            item, item_size = self._queue[0]
            if batch and size + item_size + 1 > self.request.max_bytes:
                break
            self._queue.pop(0)
            self._queued_bytes -= item_size
            batch.append(item)
            size += item_size + 1
        self._taken += len(batch)
        self._first_at = time.monotonic() if self._queue else None
        return batch

    def _due(self, now: float) -> bool:
        r = self.request
        if not self._queue:
            return False
        if len(self._queue) >= r.max_items or self._queued_bytes >= r.max_bytes:
            return True
        return self._first_at is not None and now - self._first_at >= r.timeout_ms / 1000

    async def _run(self) -> None:
        assert self._wake is not None and self._progress is not None
        while True:
            now = time.monotonic()
            if self._queue and (self._taken < self._force_until or self._due(now)):
                batch = self._take_batch()
                await self._send(batch)
                self._done += len(batch)
                self._progress.set()
                continue
            if self._dropped != (0, 0):
                records, size = self._dropped
                self._dropped = (0, 0)
                flushing_all = self._force_until >= self._added
                self.add(logs_dropped("Consumer seems to have fallen behind", records, size))
                if flushing_all:  # the notice of a loss goes out with the records flushed
                    self._force_until = self._added
                continue
            if not self._queue and self.closed:
                return
            self._wake.clear()
            wait = None
            if self._first_at is not None:
                wait = max(0.0, self.request.timeout_ms / 1000 - (now - self._first_at))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # meets a wake-up, and this loop would then never end
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def flush(self, timeout_s: float = 2.0) -> None:
        """Deliver what is buffered now, whatever the buffering limits say. Records that arrive
        meanwhile wait for their own limits: a receiver that logs a line for each delivery, and
        is subscribed to its own lines (AWS's Python samples are), would otherwise be flushed
        without end."""
        if self._task is None or self._wake is None or self._progress is None:
            return
        if self._done >= self._added:
            return
        self._force_until = max(self._force_until, self._added)
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._done < self._force_until:
            self._progress.clear()
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                async with asyncio.timeout(left):
                    await self._progress.wait()
            except TimeoutError:
                return

    async def close(self, timeout_s: float = 2.0) -> None:
        await self.flush(timeout_s)
        self.closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._close_connection()

    async def _send(self, batch: list[Event]) -> None:
        dest = self.request.destination
        if dest.protocol == "HTTP":
            data = json.dumps(batch, separators=(",", ":")).encode()
        else:
            data = b"".join(
                json.dumps(item, separators=(",", ":")).encode() + b"\n" for item in batch
            )
        for delay in (*_RETRY_DELAYS_S, None):
            try:
                async with asyncio.timeout(_DELIVERY_TIMEOUT_S):
                    if dest.protocol == "HTTP":
                        await self._post(dest, data)
                    else:
                        await self._write_tcp(dest, data)
                self.delivered_batches += 1
                return
            except (TimeoutError, OSError, ValueError) as exc:
                self._close_connection()
                self.failed_attempts += 1
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
                # as on Lambda, a batch that cannot be delivered after a few tries is dropped;
                # here the loss is told in the log rather than hidden
                log.warning(
                    "telemetry: %s: delivery of %d events to %s:%d failed: %s",
                    self.name,
                    len(batch),
                    dest.host,
                    dest.port,
                    exc or type(exc).__name__,
                )

    async def _connect(
        self, dest: Destination
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._writer is None or self._writer.is_closing() or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(dest.host, dest.port)
        return self._reader, self._writer

    async def _write_tcp(self, dest: Destination, data: bytes) -> None:
        _, writer = await self._connect(dest)
        writer.write(data)
        await writer.drain()

    async def _post(self, dest: Destination, body: bytes) -> None:
        """One HTTP/1.1 POST on a kept-alive loopback connection (a second try on a new one if
        the server had closed it)."""
        for attempt in (0, 1):
            reader, writer = await self._connect(dest)
            head = (
                f"POST {dest.path} HTTP/1.1\r\nHost: sandbox.localdomain:{dest.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            try:
                writer.write(head.encode("latin-1") + body)
                await writer.drain()
                status, close = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self._close_connection()
                if attempt:
                    raise
                continue
            if close:
                self._close_connection()
            if status >= 300:
                log.warning("telemetry: %s: the destination answered %d", self.name, status)
            return

    def _close_connection(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and whether the server closes the connection; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        close = True
    return int(status), close


class Telemetry:
    """One environment's subscriptions; `emit` is the one place platform events go through."""

    def __init__(self, json_logs: bool = False) -> None:
        self.json_logs = json_logs
        self.subscriptions: dict[str, Subscription] = {}  # by extension id (one per API)
        self._line_rest: dict[str, bytes] = {}  # an unfinished line per source
        # events of the init phase, kept until it ends: an extension subscribes during init
        # and still gets the phase's events from its start (initStart, start-up lines)
        self.backlog: list[Event] | None = []

    @property
    def active(self) -> bool:
        return bool(self.subscriptions) or self.backlog is not None

    def end_init(self) -> None:
        self.backlog = None

    def subscribe(self, key: str, name: str, request: Request) -> Subscription:
        old = self.subscriptions.pop(key, None)
        if old is not None:
            old.closed = True
        sub = Subscription(name, request, self.json_logs)
        self.subscriptions[key] = sub
        for ev in self.backlog or ():
            if sub.wants(ev["type"]):
                sub.add(ev)
        return sub

    def emit(self, ev: Event) -> None:
        if self.backlog is not None:
            self.backlog.append(ev)
        for sub in self.subscriptions.values():
            if sub.wants(ev["type"]):
                sub.add(ev)

    def output(self, kind: str, data: bytes, final: bool = False) -> None:
        """Log output of the runtime (`function`) or an extension (`extension`): one record per
        whole line; a line cut by a read waits for its end."""
        if self.backlog is None and not any(sub.wants(kind) for sub in self.subscriptions.values()):
            return
        data = self._line_rest.pop(kind, b"") + data
        *lines, rest = data.split(b"\n")
        if rest:
            if final:
                lines.append(rest)
            else:
                self._line_rest[kind] = rest
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip("\r")
            if text:
                self.emit(log_line(kind, text, self.json_logs))

    def end_of_output(self) -> None:
        for kind in list(self._line_rest):
            self.output(kind, b"", final=True)

    async def flush(self, timeout_s: float = 2.0) -> None:
        self.end_of_output()
        await asyncio.gather(*(s.flush(timeout_s) for s in self.subscriptions.values()))

    async def close(self, timeout_s: float = 2.0) -> None:
        self.end_of_output()
        subs = list(self.subscriptions.values())
        self.subscriptions.clear()
        await asyncio.gather(*(s.close(timeout_s) for s in subs))
