"""The floor emulator: the least a Runtime API + Invoke API server in Python can cost.

asyncio `Protocol`s on uvloop when it is installed (plain asyncio otherwise; `LOOP_NAME` says which),
a hand-written HTTP/1.1 parser that knows Content-Length, chunked bodies and `Expect: 100-continue`,
and nothing else: no framework, no logging, no timeouts, no validation beyond what routing needs.

`Core` holds the only state: invocations waiting for a runtime, runtimes parked in `next`, and
invocations handed out. It is used in two ways:
- in the benchmark process, `Core.feed(n)` answers the next `n` `next` calls itself and records when
  each `next` arrives: the spacing of those arrivals is the runtime client's cost per invocation;
- as a process (`python -m benchmarks.floor_server`, same flags as `rie`), the Invoke API submits
  invocations and it spawns up to `--max-concurrency` runtime processes on demand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable

try:
    import uvloop

    LOOP_NAME = "uvloop"
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]
    LOOP_NAME = "asyncio"

NEXT_PATH = b"/2018-06-01/runtime/invocation/next"
INVOCATION_PREFIX = b"/2018-06-01/runtime/invocation/"
INIT_ERROR_PATH = b"/2018-06-01/runtime/init/error"
INVOKE_PREFIX = b"/2015-03-31/functions/"
ARN = b"arn:aws:lambda:us-east-1:012345678912:function:test_function"
ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
    b'{"status":"OK"}\n'
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BAD_ID_BODY = b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}'
BAD_REQUEST_ID = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    % len(_BAD_ID_BODY)
    + _BAD_ID_BODY
)


def run_loop(main: Callable[[], object]) -> object:
    """asyncio.run with uvloop when available."""
    if uvloop is not None:
        return uvloop.run(main())  # type: ignore[arg-type]
    return asyncio.run(main())  # type: ignore[arg-type]


class Invocation:
    __slots__ = ("body", "content_type", "future", "request_id")

    def __init__(
        self,
        request_id: bytes,
        body: bytes,
        content_type: bytes,
        future: asyncio.Future[tuple[bool, bytes]] | None,
    ) -> None:
        self.request_id = request_id
        self.body = body
        self.content_type = content_type
        self.future = future


class Core:
    def __init__(self, spawn: Callable[[], None] | None = None, max_environments: int = 1) -> None:
        self.pending: deque[Invocation] = deque()
        self.parked: deque[RuntimeApiProtocol] = deque()
        self.active: dict[bytes, Invocation] = {}
        self.counter = 0
        self.spawn = spawn
        self.max_environments = max_environments
        self.environments = 0
        self.starting = 0
        # feed mode (benchmark process): answer `next` from a budget and time the arrivals
        self.feed_left = 0
        self.feed_body = b"{}"
        self.feed_times: list[int] = []
        self.feed_done: asyncio.Future[list[int]] | None = None
        self.first_next: asyncio.Future[int] | None = None
        self.last_result_ns = 0

    def _new_id(self) -> bytes:
        self.counter += 1
        return b"%08d-0000-4000-8000-000000000000" % self.counter

    # --- Invoke API side -------------------------------------------------------------------
    def submit(
        self, body: bytes, content_type: bytes = b"application/json"
    ) -> asyncio.Future[tuple[bool, bytes]]:
        future: asyncio.Future[tuple[bool, bytes]] = asyncio.get_running_loop().create_future()
        inv = Invocation(self._new_id(), body, content_type, future)
        while self.parked:
            runtime = self.parked.popleft()
            if not runtime.closed:
                self._hand_out(runtime, inv)
                return future
        self.pending.append(inv)
        if (
            self.spawn is not None
            and len(self.pending) > self.starting
            and self.environments < self.max_environments
        ):
            self.environments += 1
            self.starting += 1
            self.spawn()
        return future

    # --- benchmark feed mode ---------------------------------------------------------------
    def feed(self, count: int, body: bytes = b"{}") -> asyncio.Future[list[int]]:
        """Answer the next `count` `next` calls with `body`; the future gets the `count + 1` arrival times (ns)."""
        loop = asyncio.get_running_loop()
        self.feed_left, self.feed_body, self.feed_times = count, body, []
        self.feed_done = loop.create_future()
        if self.parked:
            runtime = self.parked.popleft()
            self.on_next(runtime)
        return self.feed_done

    # --- Runtime API side ------------------------------------------------------------------
    def on_next(self, runtime: RuntimeApiProtocol) -> None:
        if not runtime.seen_next:
            runtime.seen_next = True
            if self.starting:
                self.starting -= 1
            if self.first_next is not None and not self.first_next.done():
                self.first_next.set_result(time.perf_counter_ns())
        if self.feed_done is not None:
            now = time.perf_counter_ns()
            self.feed_times.append(now)
            if self.feed_left > 0:
                self.feed_left -= 1
                self._hand_out(
                    runtime, Invocation(self._new_id(), self.feed_body, b"application/json", None)
                )
                return
            done, self.feed_done = self.feed_done, None
            self.parked.append(runtime)
            if not done.done():
                done.set_result(self.feed_times)
            return
        if self.pending:
            self._hand_out(runtime, self.pending.popleft())
        else:
            self.parked.append(runtime)

    def _hand_out(self, runtime: RuntimeApiProtocol, inv: Invocation) -> None:
        self.active[inv.request_id] = inv
        deadline = b"%d" % (int(time.time() * 1000) + 300_000)
        runtime.transport.write(
            b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: "
            + inv.request_id
            + b"\r\nLambda-Runtime-Deadline-Ms: "
            + deadline
            + b"\r\nLambda-Runtime-Invoked-Function-Arn: "
            + ARN
            + b"\r\nLambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0"
            + b"\r\nContent-Type: "
            + inv.content_type
            + b"\r\nContent-Length: "
            + b"%d" % len(inv.body)
            + b"\r\n\r\n"
        )
        runtime.transport.write(inv.body)

    def on_result(self, request_id: bytes, body: bytes, is_error: bool) -> bool:
        self.last_result_ns = time.perf_counter_ns()
        inv = self.active.pop(request_id, None)
        if inv is None:
            return False
        if inv.future is not None and not inv.future.done():
            inv.future.set_result((is_error, body))
        return True

    def on_init_error(self, body: bytes) -> None:
        if self.pending:
            inv = self.pending.popleft()
            if inv.future is not None and not inv.future.done():
                inv.future.set_result((True, body))


class HttpProtocol(asyncio.Protocol):
    """Splits a byte stream into requests (method, path, headers, body) and calls `on_request`."""

    transport: asyncio.Transport

    def __init__(self) -> None:
        self.buf = bytearray()
        self.closed = False
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.parse()

    def parse(self) -> None:
        buf = self.buf
        while not self.busy:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).split(b"\r\n")
            method, path, _ = head[0].split(b" ", 2)
            headers: dict[bytes, bytes] = {}
            for line in head[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            start = end + 4
            length = headers.get(b"content-length")
            if length is not None:
                n = int(length)
                if len(buf) - start < n:
                    if headers.get(b"expect", b"").lower() == b"100-continue" and not getattr(
                        self, "_continued", False
                    ):
                        self._continued = True
                        self.transport.write(CONTINUE)
                    return
                body = bytes(buf[start : start + n])
                del buf[: start + n]
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                if headers.get(b"expect", b"").lower() == b"100-continue" and not getattr(
                    self, "_continued", False
                ):
                    self._continued = True
                    self.transport.write(CONTINUE)
                parsed = _dechunk(buf, start)
                if parsed is None:
                    return
                body, consumed = parsed
                del buf[:consumed]
            else:
                body = b""
                del buf[:start]
            self._continued = False
            self.on_request(method, path, headers, body)

    def on_request(
        self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        raise NotImplementedError


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    parts = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n", pos)  # trailers, if any, end with an empty line
            while end >= 0 and end != pos:
                pos = end + 2
                end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            return b"".join(parts), end + 2
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


class RuntimeApiProtocol(HttpProtocol):
    def __init__(self, core: Core) -> None:
        super().__init__()
        self.core = core
        self.seen_next = False

    def on_request(
        self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        if path == NEXT_PATH:
            self.core.on_next(self)
        elif path.startswith(INVOCATION_PREFIX):
            request_id, _, kind = path[len(INVOCATION_PREFIX) :].partition(b"/")
            if self.core.on_result(request_id, body, kind == b"error"):
                self.transport.write(ACCEPTED)
            else:
                self.transport.write(BAD_REQUEST_ID)
        elif path == INIT_ERROR_PATH:
            self.core.on_init_error(body)
            self.transport.write(ACCEPTED)
        else:
            self.transport.write(NOT_FOUND)


class InvokeApiProtocol(HttpProtocol):
    def __init__(self, core: Core) -> None:
        super().__init__()
        self.core = core

    def on_request(
        self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        if not path.startswith(INVOKE_PREFIX):
            self.transport.write(NOT_FOUND)
            return
        self.busy = True  # one request at a time per connection: hold parsing until answered
        future = self.core.submit(body, headers.get(b"content-type", b"application/json"))
        future.add_done_callback(self._answer)

    def _answer(self, future: asyncio.Future[tuple[bool, bytes]]) -> None:
        is_error, body = future.result()
        if not self.closed:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + (b"X-Amz-Function-Error: Unhandled\r\n" if is_error else b"")
                + b"Content-Length: "
                + b"%d" % len(body)
                + b"\r\n\r\n"
            )
            self.transport.write(body)
        self.busy = False
        if self.buf:
            self.parse()


async def start_runtime_api(core: Core, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: RuntimeApiProtocol(core), host, port)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.floor_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runtime-interface-emulator-address", default="127.0.0.1:8080")
    parser.add_argument("--runtime-api-address", default="127.0.0.1:0")
    parser.add_argument("--task-root", default=os.getcwd())
    parser.add_argument("--handler", default="")
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("command", nargs="*")
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("a runtime command is required after --")
    children: list[subprocess.Popen[bytes]] = []

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        core = Core(max_environments=args.max_concurrency)
        rapi = await start_runtime_api(core, *_split(args.runtime_api_address))
        rhost, rport = rapi.sockets[0].getsockname()[:2]
        env = dict(os.environ)
        env.update(
            AWS_LAMBDA_RUNTIME_API=f"{rhost}:{rport}",
            _HANDLER=args.handler,
            LAMBDA_TASK_ROOT=args.task_root,
            AWS_LAMBDA_FUNCTION_NAME="test_function",
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="3008",
        )

        def spawn() -> None:
            children.append(
                subprocess.Popen(args.command, cwd=args.task_root, env=env, start_new_session=True)
            )

        core.spawn = spawn
        ihost, iport = _split(args.runtime_interface_emulator_address)
        iapi = await loop.create_server(lambda: InvokeApiProtocol(core), ihost, iport)
        ihost, iport = iapi.sockets[0].getsockname()[:2]
        print(
            f"floor emulator ({LOOP_NAME}): Invoke API listening on http://{ihost}:{iport}",
            flush=True,
        )
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        await stop

    try:
        run_loop(serve)
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        for child in children:
            child.wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
