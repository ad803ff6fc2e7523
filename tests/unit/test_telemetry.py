"""Telemetry records, subscription validation, batching and delivery (rie/observe/telemetry.py), against
real loopback HTTP and TCP receivers."""

from __future__ import annotations

import asyncio
import json

import pytest

from rie.observe import telemetry as t

GOOD = {
    "schemaVersion": "2022-12-13",
    "types": ["platform", "function"],
    "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
    "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/in?x=1"},
}


def body(**changes: object) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def test_a_good_subscription() -> None:
    req = t.parse_subscription(body())
    assert req.destination == t.Destination("HTTP", "127.0.0.1", 4243, "/in?x=1")
    assert (req.max_items, req.max_bytes, req.timeout_ms, req.schema) == (
        1000,
        262144,
        25,
        "2022-12-13",
    )
    tcp = t.parse_subscription(body(destination={"protocol": "TCP", "URI": "tcp://sandbox:9000"}))
    assert tcp.destination.protocol == "TCP" and tcp.destination.port == 9000
    for schema in t.SCHEMA_VERSIONS:
        assert t.parse_subscription(body(schemaVersion=schema)).schema == schema
    defaults = t.parse_subscription(body(buffering=None))
    assert (defaults.max_items, defaults.max_bytes, defaults.timeout_ms) == (1000, 262144, 1000)
    logs = t.parse_subscription(body(schemaVersion=None, buffering=None), logs_api=True)
    assert logs.logs_api and logs.schema == "2020-08-15" and logs.max_items == 10000
    newer = t.parse_subscription(body(schemaVersion="2021-03-18"), logs_api=True)
    assert newer.schema == "2021-03-18"


def test_logs_api_errors_are_logs_validation_errors() -> None:
    # AWS's Logs API reference: 400 {"errorType": "Logs.ValidationError", "errorMessage": ...}
    for bad in (body(schemaVersion="2022-12-13"), body(types=[]), b"{"):
        with pytest.raises(t.ValidationError) as info:
            t.parse_subscription(bad, logs_api=True)
        assert info.value.status == 400
        assert json.loads(info.value.body())["errorType"] == "Logs.ValidationError"


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b"[]",
        body(schemaVersion="2021-01-01"),
        body(schemaVersion=None),
        body(types=[]),
        body(types=["platform", "platform"]),
        body(types=["metrics"]),
        body(buffering={"maxItems": 999}),
        body(buffering={"maxItems": 10001}),
        body(buffering={"maxBytes": 1048577}),
        body(buffering={"timeoutMs": 24}),
        body(buffering={"timeoutMs": 30001}),
        body(buffering={"timeoutMs": "100"}),
        body(buffering={"timeoutMs": True}),
        body(destination={"protocol": "UDP", "URI": "udp://sandbox:1"}),
        body(destination={"protocol": "HTTP"}),
        body(destination={"protocol": "HTTP", "URI": "http://sandbox.localdomain/no-port"}),
        body(destination={"protocol": "HTTP", "URI": "tcp://sandbox.localdomain:1"}),
        body(destination={"protocol": "HTTP", "URI": "http://example.com:80/"}),
        body(destination={"protocol": "HTTP", "URI": "http://10.0.0.1:80/"}),
    ],
)
def test_bad_subscriptions_are_400_validation_errors(bad: bytes) -> None:
    with pytest.raises(t.ValidationError) as info:
        t.parse_subscription(bad)
    assert info.value.status == 400
    assert json.loads(info.value.body())["errorType"] == "ValidationError"


def test_records() -> None:
    ev = t.report("r1", "success", 12.3456, 13, 128, 40, 99.5, None, "Root=1-a")
    assert ev["type"] == "platform.report"
    assert ev["time"].endswith("Z") and "T" in ev["time"]
    assert ev["record"]["metrics"] == {
        "durationMs": 12.346,
        "billedDurationMs": 13,
        "memorySizeMB": 128,
        "maxMemoryUsedMB": 40,
        "initDurationMs": 99.5,
    }
    done = t.runtime_done("r1", "error", 0.0, 5.0, 10, "ValueError", "Root=1-a")
    assert done["record"]["errorType"] == "ValueError"
    assert [s["name"] for s in done["record"]["spans"]] == ["responseLatency", "responseDuration"]
    assert t.status_of("Timeout") == "timeout" and t.status_of("Failed") == "failure"
    assert t.log_line("function", '{"level":"INFO"}', True)["record"] == {"level": "INFO"}
    assert t.log_line("function", '{"level":"INFO"}', False)["record"] == '{"level":"INFO"}'
    assert t.log_line("function", "{not json", True)["record"] == "{not json"


def test_logs_api_view_and_oldest_schema() -> None:
    start = t.start("r1", "$LATEST", "Root=1-a")
    assert t.for_logs_api(start)[0]["record"] == {"requestId": "r1", "version": "$LATEST"}
    rep = t.report("r1", "success", 1.0, 1, 128, 1, None, None, "Root=1-a")
    assert [e["type"] for e in t.for_logs_api(rep)] == ["platform.end", "platform.report"]
    # platform.runtimeDone only under the Logs API's schema 2021-03-18, with its three statuses
    assert t.for_logs_api(t.runtime_done("r1", "success", 0.0, 1.0, 1, None, "x")) == []
    for status, logs_status in (
        ("success", "success"),
        ("error", "failure"),
        ("timeout", "timeout"),
    ):
        done = t.runtime_done("r1", status, 0.0, 1.0, 1, None, "x")
        [got] = t.for_logs_api(done, "2021-03-18")
        assert got["type"] == "platform.runtimeDone" and got["time"] == done["time"]
        assert got["record"] == {"requestId": "r1", "status": logs_status}
    ext = t.extension("e", "Ready", ["SHUTDOWN", "INVOKE"])
    assert t.for_logs_api(ext) == [ext]
    [sub] = t.for_logs_api(t.telemetry_subscription("e", ["platform"]))
    assert sub["type"] == "platform.logsSubscription"
    assert sub["record"] == {"name": "e", "state": "Subscribed", "types": ["platform"]}
    assert t.for_logs_api(t.log_line("function", '{"a":1}', True))[0]["record"] == '{"a": 1}'
    # 2022-07-01: runtimeDone keeps its spans and tracing (that schema's reference shows them);
    # initStart has only the four fields that schema lists
    done = t.runtime_done("r1", "success", 0.0, 1.0, 1, None, "x")
    assert t._for_schema(done, "2022-07-01") == done
    init = t.init_start("on-demand", "fn", "$LATEST", "i-1", 128)
    assert set(t._for_schema(init, "2022-07-01")["record"]) == {
        "initializationType",
        "phase",
        "runtimeVersion",
        "runtimeVersionArn",
    }
    assert t._for_schema(init, "2022-12-13") == init


@pytest.mark.parametrize(
    "uri",
    [
        # the destinations AWS's sample extensions subscribe with: python-example-logs-api-
        # extension (`sandbox`), the telemetry samples (`sandbox.localdomain`, and `0.0.0.0`
        # when AWS_SAM_LOCAL is set), without a path
        "http://sandbox:4243",
        "http://sandbox.localdomain:4243",
        "http://0.0.0.0:4243",
        "http://localhost:4243/",
        "http://127.0.0.1:4243/",
    ],
)
def test_the_sample_extensions_destinations_reach_loopback(uri: str) -> None:
    dest = {"protocol": "HTTP", "URI": uri}
    req = t.parse_subscription(body(destination=dest, schemaVersion="2022-07-01"))
    assert req.destination == t.Destination("HTTP", "127.0.0.1", 4243, "/")


def test_output_becomes_whole_lines() -> None:
    tel = t.Telemetry()
    got: list[object] = []
    tel.emit = lambda ev: got.append(ev["record"])  # type: ignore[method-assign]
    tel.output("function", b"one\ntw")
    tel.output("function", b"o\n\nthree")
    assert got == ["one", "two"]
    tel.end_of_output()
    assert got == ["one", "two", "three"]


async def _http_receiver() -> tuple[asyncio.Server, list[list[dict]], int]:  # type: ignore[type-arg]
    batches: list[list[dict]] = []  # type: ignore[type-arg]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            batches.append(json.loads(await reader.readexactly(length)))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, batches, server.sockets[0].getsockname()[1]


def _request(port: int, protocol: str = "HTTP", **buffering: int) -> t.Request:
    scheme = "http" if protocol == "HTTP" else "tcp"
    doc = {**GOOD, "buffering": {"timeoutMs": 25, **buffering}}
    doc["destination"] = {"protocol": protocol, "URI": f"{scheme}://sandbox.localdomain:{port}/"}
    return t.parse_subscription(json.dumps(doc).encode())


def test_http_delivery_batches_by_max_items_in_order() -> None:
    async def run() -> list[list[dict]]:  # type: ignore[type-arg]
        server, batches, port = await _http_receiver()
        sub = t.Subscription("ext", _request(port, maxItems=1000, timeoutMs=30000))
        for i in range(2500):
            sub.add(t.log_line("function", f"line {i}", False))
        # two full batches go at once; the rest waits for its timeout, or a flush
        for _ in range(500):
            if len(batches) >= 2:
                break
            await asyncio.sleep(0.01)
        assert [len(b) for b in batches] == [1000, 1000]
        await sub.close()
        server.close()
        return batches

    batches = asyncio.run(run())
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [ev["record"] for b in batches for ev in b] == [f"line {i}" for i in range(2500)]


def test_http_delivery_honours_max_bytes_and_timeout() -> None:
    async def run() -> list[list[dict]]:  # type: ignore[type-arg]
        server, batches, port = await _http_receiver()
        sub = t.Subscription("ext", _request(port, maxBytes=262144, timeoutMs=25))
        big = "x" * 100_000
        for _ in range(3):
            sub.add(t.log_line("function", big, False))
        for _ in range(500):
            if sum(len(b) for b in batches) == 3:
                break
            await asyncio.sleep(0.01)
        await sub.close()
        server.close()
        return batches

    batches = asyncio.run(run())
    assert sum(len(b) for b in batches) == 3
    assert all(len(json.dumps(b)) <= 262144 for b in batches)


def test_tcp_delivery_is_newline_separated_json() -> None:
    async def run() -> list[bytes]:
        lines: list[bytes] = []
        got = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            async for line in reader:
                lines.append(line)
                if len(lines) == 3:
                    got.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sub = t.Subscription("ext", _request(port, "TCP"))
        for i in range(3):
            sub.add(t.log_line("function", f"l{i}", False))
        await asyncio.wait_for(got.wait(), 10)
        await sub.close()
        server.close()
        return lines

    lines = asyncio.run(run())
    assert [json.loads(x)["record"] for x in lines] == ["l0", "l1", "l2"]
    assert all(x.endswith(b"\n") for x in lines)


def test_a_receiver_that_is_not_listening_loses_the_batch_not_the_emulator() -> None:
    async def run() -> int:
        server, _, port = await _http_receiver()
        server.close()
        await server.wait_closed()
        sub = t.Subscription("ext", _request(port))
        sub.add(t.log_line("function", "lost", False))
        await sub.flush(5)
        await sub.close()
        return sub.delivered_batches

    assert asyncio.run(run()) == 0


def test_events_of_init_reach_a_later_subscription() -> None:
    async def run() -> list[list[dict]]:  # type: ignore[type-arg]
        server, batches, port = await _http_receiver()
        tel = t.Telemetry()
        tel.emit(t.init_start("on-demand", "fn", "$LATEST", "i", 128))
        tel.output("function", b"starting up\n")
        tel.subscribe("k", "ext", _request(port))
        tel.end_init()
        tel.emit(t.start("r1", "$LATEST", "x"))
        await tel.close(5)
        server.close()
        return batches

    kinds = [ev["type"] for b in asyncio.run(run()) for ev in b]
    assert kinds == ["platform.initStart", "function", "platform.start"]


def test_a_subscriber_that_falls_behind_gets_logs_dropped() -> None:
    async def run() -> tuple[list[list[dict]], int]:  # type: ignore[type-arg]
        batches: list[list[dict]] = []  # type: ignore[type-arg]
        release = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                batches.append(json.loads(await reader.readexactly(length)))
                await release.wait()  # the first answer waits until the test has flooded it
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sub = t.Subscription("ext", _request(port, maxItems=1000, timeoutMs=25))
        sub.add(t.log_line("function", "first", False))
        for _ in range(500):
            if batches:
                break
            await asyncio.sleep(0.01)
        total = 1
        for i in range(12000):
            sub.add(t.log_line("function", f"flood {i}", False))
            total += 1
        release.set()
        await sub.close(10)
        server.close()
        return batches, total

    batches, total = asyncio.run(run())
    events = [ev for b in batches for ev in b]
    dropped = [ev["record"] for ev in events if ev["type"] == "platform.logsDropped"]
    assert len(dropped) == 1 and dropped[0]["droppedRecords"] == 2000
    assert dropped[0]["droppedBytes"] > 0
    delivered = [ev for ev in events if ev["type"] == "function"]
    assert len(delivered) + dropped[0]["droppedRecords"] == total


def test_a_batch_is_retried_when_the_receiver_comes_late() -> None:
    async def run() -> list[list[dict]]:  # type: ignore[type-arg]
        # the port is free until the receiver starts, after the first attempt failed
        server, batches, port = await _http_receiver()
        server.close()
        await server.wait_closed()
        sub = t.Subscription("ext", _request(port))
        sub.add(t.log_line("function", "kept", False))
        for _ in range(1000):  # the first attempt is refused: nobody listens yet
            if sub.failed_attempts:
                break
            await asyncio.sleep(0.005)
        assert sub.failed_attempts == 1

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            batches.append(json.loads(await reader.readexactly(length)))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

        late = await asyncio.start_server(handle, "127.0.0.1", port)
        await sub.close(5)
        late.close()
        return batches

    batches = asyncio.run(run())
    assert [ev["record"] for b in batches for ev in b] == ["kept"]


def test_a_flush_delivers_what_was_buffered_not_what_its_deliveries_cause() -> None:
    """A receiver that logs a line per delivery and is subscribed to its own lines (AWS's
    Python samples: http.server logs each request) adds a record with every batch. A flush
    (before SHUTDOWN) delivers what was buffered when it was asked, then returns; the new lines
    wait for their own buffering limits instead of being flushed without end."""

    async def run() -> tuple[int, int, int]:
        server, batches, port = await _http_receiver()
        sub = t.Subscription("ext", _request(port, timeoutMs=30000))
        ext = t.log_line("extension", '127.0.0.1 - - "POST / HTTP/1.1" 200 -', False)
        sent = sub._send

        async def send_and_log(batch: list[t.Event]) -> None:
            await sent(batch)
            sub.add(ext)  # the line the receiver writes for this delivery

        sub._send = send_and_log  # type: ignore[method-assign]
        for i in range(3):
            sub.add(t.log_line("function", f"line {i}", False))
        await asyncio.wait_for(sub.flush(timeout_s=10), 5)
        flushed, waiting = len(batches), len(sub._queue)
        await sub.close(timeout_s=5)
        server.close()
        return flushed, waiting, len(batches)

    flushed, waiting, total = asyncio.run(run())
    assert flushed == 1 and waiting == 1  # the 3 lines went; the receiver's own line waits
    assert total <= 3  # close flushes what is there, and stops as well
