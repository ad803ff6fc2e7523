"""The Lambda Runtime API, served to one environment's runtime on its own loopback endpoint.

This side carries two of the three HTTP exchanges of every invocation, and it needs what a general
framework does not give: HTTP trailers (a streamed response reports a late error in them), a body
limit checked before anything is buffered, and an answer to a body cut short by a half-close. So it
is a small HTTP/1.1 protocol of its own, for the handful of requests runtimes make: keep-alive,
pipelining, `Content-Length` and chunked bodies, `Expect: 100-continue`.

Each request is validated first (path, method, request id, size), then makes exactly one state
transition, then is answered. Every environment has its own endpoint, so a runtime can only ever
see and answer its own environment's invocations.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from .environment import Environment
from .errors import (
    RESPONSE_SIZE_LIMIT,
    InternalServerError,
    InvalidFunctionResponseMode,
    RequestEntityTooLarge,
    RieError,
    RouteMethodNotAllowed,
    RouteNotFound,
    TruncatedHTTPRequest,
)
from .invocation import Invocation, State

log = logging.getLogger("rie")

BASE = "/2018-06-01"
PATH_NEXT = BASE + "/runtime/invocation/next"
PATH_INVOCATION = BASE + "/runtime/invocation/"  # + {id}/response or {id}/error
PATH_INIT_ERROR = BASE + "/runtime/init/error"

H_REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
H_DEADLINE = "Lambda-Runtime-Deadline-Ms"
H_ARN = "Lambda-Runtime-Invoked-Function-Arn"
H_TRACE = "Lambda-Runtime-Trace-Id"
H_CLIENT_CONTEXT = "Lambda-Runtime-Client-Context"
H_COGNITO = "Lambda-Runtime-Cognito-Identity"
H_TENANT = "Lambda-Runtime-Aws-Tenant-Id"
H_ERROR_TYPE = "lambda-runtime-function-error-type"
H_ERROR_BODY = "lambda-runtime-function-error-body"
H_RESPONSE_MODE = "lambda-runtime-function-response-mode"
ERROR_CAUSE_TYPE = "application/vnd.aws.lambda.error.cause+json"

# the Extensions, Telemetry and Logs APIs (rie/extensions.py, imported only when one is called,
# so that a function without extensions pays nothing for them)
EXTENSION_PREFIXES = ("/2020-01-01/extension/", "/2022-07-01/telemetry", "/2020-08-15/logs")
STREAM_LIMIT = 200 * 1024 * 1024  # what Lambda allows a streamed response
_HEAD_LIMIT = 64 * 1024
# a refused body is read and dropped (so the client can finish sending and read the answer) up to
# this size; past it the connection is closed instead
_DISCARD_LIMIT = 64 * 1024 * 1024
_ERROR_TYPE_RE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
_ERROR_KEYS = ("errorMessage", "errorType", "stackTrace")
_ACCEPTED = b'{"status":"OK"}'
_REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


def sanitize_error_type(value: str | None) -> str:
    if value and _ERROR_TYPE_RE.fullmatch(value):
        return value
    return "Function.Unknown" if value and value.startswith("Function.") else "Runtime.Unknown"


def shape_error_body(body: bytes, content_type: str | None, error_type: str) -> bytes:
    """What the caller will see for a runtime's error post.

    An error-cause document keeps only the fields Lambda keeps; any other body goes on as it is;
    a missing body is built from the error-type header, as Lambda does.
    """
    if not body.strip():
        return json.dumps({"errorMessage": "", "errorType": error_type}).encode()
    if content_type is not None and content_type.split(";")[0].strip() == ERROR_CAUSE_TYPE:
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        if isinstance(doc, dict):
            return json.dumps({k: doc[k] for k in _ERROR_KEYS if k in doc}).encode()
    return body


class _BadRequest(Exception):
    """A request that cannot be parsed: answered 400, then the connection is closed."""


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; trailers are added here when they arrive
    keep_alive: bool
    length: int | None  # None: chunked
    limit: int
    body: bytearray = field(default_factory=bytearray)
    received: int = 0
    stream: _StreamCollector | None = None  # a streamed response body is passed on, not kept
    discard: bool = False  # already answered (refused): the rest of the body is read and dropped


def _parse_head(head: bytes) -> _Request:
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        raise _BadRequest("malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise _BadRequest("unsupported HTTP version")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest("malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    length: int | None = 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        length = None
    elif "content-length" in headers:
        declared = headers["content-length"]
        if not declared.isdigit():
            raise _BadRequest("invalid Content-Length")
        length = int(declared)
    return _Request(
        method, target.split("?", 1)[0], headers, keep_alive, length, RESPONSE_SIZE_LIMIT
    )


class RuntimeApiProtocol(asyncio.Protocol):
    """One runtime connection: parses requests one at a time and answers them in order."""

    def __init__(self, env: Environment, on_lost: Callable[[RuntimeApiProtocol], None]) -> None:
        self.env = env
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._req: _Request | None = None  # the request whose body is being read
        self._chunk_left = -1  # chunked bodies: bytes left in this chunk; -1 a size line is next
        self._in_trailers = False
        self._waiting: bool | None = None  # a `next` is waiting: whether to keep the connection
        self._cancel_wait: Callable[[], None] | None = None  # an extension's waiting `next`
        self._eof = False
        self._closing = False

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._advance()

    def eof_received(self) -> bool:
        self._eof = True
        if self._waiting is not None:
            # a runtime that hangs up while waiting in `next` is gone (a closed socket and a
            # half-closed one look alike from here): it must not be handed an invocation
            self._stop_waiting()
            return False
        self._advance()
        # keep the write half open while a request body is being read (to answer a truncation)
        return self._req is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(self)
        self._transport = None
        self._closing = True
        if self._waiting is not None:
            self._stop_waiting()  # a `next` whose caller hung up stops waiting
        req, self._req = self._req, None
        if req is not None and req.stream is not None:
            self._stream_cut_short(req.stream)

    def _stop_waiting(self) -> None:
        cancel, self._cancel_wait = self._cancel_wait, None
        if cancel is not None:
            cancel()
        else:
            self.env.cancel_next(self._deliver)
        self._waiting = None

    # --- parsing ---------------------------------------------------------------------------

    def _advance(self) -> None:
        """Parse as far as the buffer allows, answering each complete request in turn."""
        try:
            while not self._closing and self._waiting is None:
                if self._req is None:
                    end = self._buf.find(b"\r\n\r\n", 0, _HEAD_LIMIT + 4)
                    if end < 0:
                        if len(self._buf) > _HEAD_LIMIT:
                            self._send(
                                431,
                                b'{"errorMessage":"Request header too large","errorType":"BadRequest"}',
                                close=True,
                            )
                        elif self._eof:
                            if self._buf.strip():
                                raise _BadRequest("incomplete request head")
                            self._close()
                        return
                    head = bytes(self._buf[:end])
                    del self._buf[: end + 4]
                    req = _parse_head(head)
                    if not self._begin(req):
                        continue
                if not self._read_body():
                    return
        except _BadRequest as exc:
            body = json.dumps({"errorMessage": str(exc), "errorType": "BadRequest"}).encode()
            self._send(400, body, close=True)

    def _begin(self, req: _Request) -> bool:
        """Validate a request from its head; False when the connection had to be closed."""
        error = self._validate(req)
        if error is None and req.length is not None and req.length > req.limit:
            error = RequestEntityTooLarge()
            self._on_oversized(req, req.limit)
        if error is not None:
            self._refuse(req, error)
            if self._closing:
                return False
        elif req.headers.get("expect", "").lower() == "100-continue":
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._req = req
        self._chunk_left, self._in_trailers = -1, False
        return True

    def _refuse(self, req: _Request, error: RieError) -> None:
        """Answer before the body is read; drop the body as it comes, or close if it is huge."""
        # a chunked body is dropped as it comes, up to the limit (see _take)
        close = not req.keep_alive or (req.length is not None and req.length > _DISCARD_LIMIT)
        req.discard = True
        req.stream = None
        self._send(error.status, error.body(), close=close)

    def _read_body(self) -> bool:
        """Take what the buffer holds of the current body; True once it is complete."""
        req = self._req
        assert req is not None
        if req.length is not None:
            take = min(len(self._buf), req.length - req.received)
            if take:
                self._take(req, bytes(self._buf[:take]))
                del self._buf[:take]
            if self._closing:
                return False
            if req.received < req.length:
                if self._eof:
                    self._truncated(req)
                return False
        elif not self._read_chunked(req):
            if self._eof and not self._closing:
                self._truncated(req)
            return False
        self._req = None
        if req.discard:
            if not req.keep_alive:
                self._close()
        else:
            self._dispatch(req)
        return True

    def _read_chunked(self, req: _Request) -> bool:
        buf = self._buf
        while not self._closing:
            if self._in_trailers:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > _HEAD_LIMIT:
                        raise _BadRequest("trailers too large")
                    return False
                line = bytes(buf[:end]).decode("latin-1")
                del buf[: end + 2]
                if not line:
                    return True
                name, _, value = line.partition(":")
                req.headers[name.strip().lower()] = value.strip()
            elif self._chunk_left < 0:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise _BadRequest("malformed chunk size")
                    return False
                size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise _BadRequest("malformed chunk size") from None
                if size == 0:
                    self._in_trailers = True
                    continue
                self._chunk_left = size
            else:
                if len(buf) < self._chunk_left + 2:
                    take = min(len(buf), self._chunk_left)
                    if take:
                        self._take(req, bytes(buf[:take]))
                        del buf[:take]
                        self._chunk_left -= take
                    return False
                self._take(req, bytes(buf[: self._chunk_left]))
                if buf[self._chunk_left : self._chunk_left + 2] != b"\r\n":
                    raise _BadRequest("malformed chunk")
                del buf[: self._chunk_left + 2]
                self._chunk_left = -1
        return False

    def _take(self, req: _Request, data: bytes) -> None:
        req.received += len(data)
        if req.discard:
            if req.received > _DISCARD_LIMIT:
                self._close()
            return
        # a stream read by a buffered caller can be no larger than a buffered response
        buffered = req.stream is None or req.stream.inv.on_chunk is None
        limit = RESPONSE_SIZE_LIMIT if buffered else req.limit
        if req.received > limit:
            self._on_oversized(req, limit)
            self._refuse(req, RequestEntityTooLarge())
            return
        if req.stream is not None:
            req.stream.add(data)
        else:
            req.body += data

    def _truncated(self, req: _Request) -> None:
        self._req = None
        if req.stream is not None:
            self._stream_cut_short(req.stream)
        if req.discard:
            self._close()  # it was answered already
        else:
            self._send(400, TruncatedHTTPRequest().body(), close=True)

    # --- requests --------------------------------------------------------------------------

    def _validate(self, req: _Request) -> RieError | None:
        """Route and check a request before its body is read; set up a streamed body."""
        path, method = req.path, req.method
        try:
            if path.startswith(EXTENSION_PREFIXES):
                return None  # the Extensions, Telemetry and Logs APIs check their own calls
            if path == PATH_NEXT:
                return (
                    None
                    if method == "GET"
                    else RouteMethodNotAllowed(f"Method {method} not allowed")
                )
            if path == "/ping":
                return (
                    None
                    if method == "GET"
                    else RouteMethodNotAllowed(f"Method {method} not allowed")
                )
            if path == PATH_INIT_ERROR:
                return (
                    None
                    if method == "POST"
                    else RouteMethodNotAllowed(f"Method {method} not allowed")
                )
            if path.startswith(PATH_INVOCATION):
                request_id, _, action = path[len(PATH_INVOCATION) :].partition("/")
                if action not in ("response", "error"):
                    return RouteNotFound()
                if method != "POST":
                    return RouteMethodNotAllowed(f"Method {method} not allowed")
                if action == "error":
                    self.env.lookup(request_id, State.ERRORED)
                    return None
                inv = self.env.lookup(request_id, State.RESPONDED)
                mode = req.headers.get(H_RESPONSE_MODE)
                if mode is not None:
                    if mode != "streaming":
                        return InvalidFunctionResponseMode()
                    inv.start_stream()
                    inv.stream_content_type = req.headers.get("content-type")
                    req.limit = STREAM_LIMIT
                    req.stream = _StreamCollector(inv)
                return None
            return RouteNotFound()
        except RieError as error:
            return error

    def _dispatch(self, req: _Request) -> None:
        path = req.path
        try:
            if path == PATH_NEXT:
                self._waiting = req.keep_alive
                inv = self.env.request_next(self._deliver)
                if inv is not None:
                    self._deliver(inv)
                return
            if path == "/ping":
                self._send(200, b"pong", content_type="text/plain", close=not req.keep_alive)
                return
            if path.startswith(EXTENSION_PREFIXES):
                self._extension_call(req)
                return
            body = bytes(req.body)
            error_type = sanitize_error_type(req.headers.get(H_ERROR_TYPE))
            if path == PATH_INIT_ERROR:
                self.env.init_error(
                    error_type, shape_error_body(body, req.headers.get("content-type"), error_type)
                )
            else:
                request_id, _, action = path[len(PATH_INVOCATION) :].partition("/")
                if req.stream is not None:
                    self._end_stream(req, req.stream)
                elif action == "response":
                    self.env.lookup(request_id, State.RESPONDED).respond(body)
                else:
                    inv = self.env.lookup(request_id, State.ERRORED)
                    inv.error(
                        shape_error_body(body, req.headers.get("content-type"), error_type),
                        error_type,
                    )
        except RieError as error:
            self._send(error.status, error.body(), close=not req.keep_alive)
            return
        except Exception:
            log.exception("Runtime API: unexpected failure on %s %s", req.method, path)
            self._send(500, InternalServerError().body(), close=True)
            return
        self._send(202, _ACCEPTED, close=not req.keep_alive)

    def _extension_call(self, req: _Request) -> None:
        """An Extensions / Telemetry / Logs API call; `event/next` is answered when its event
        comes, holding this connection like the runtime's `next`."""
        answered = False
        keep_alive = req.keep_alive

        def reply(status: int, headers: Mapping[str, str], body: bytes) -> None:
            nonlocal answered
            answered = True
            waiting = self._waiting is not None
            self._waiting, self._cancel_wait = None, None
            if self._transport is None:
                return
            if status == 0:  # the extension is being stopped: no answer
                self._close()
                return
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            self._send(status, body, close=not keep_alive, extra_headers=extra)
            if waiting and keep_alive and self._buf:
                asyncio.get_running_loop().call_soon(self._advance)

        cancel = self.env.extension_api().handle(
            req.method, req.path, req.headers, bytes(req.body), reply
        )
        if not answered:
            self._waiting = keep_alive
            self._cancel_wait = cancel

    def _deliver(self, inv: Invocation) -> None:
        """Answer the waiting `next` with its invocation."""
        keep_alive, self._waiting = self._waiting, None
        if self._transport is None:
            return
        r = inv.request
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {r.content_type}\r\nContent-Length: {len(r.payload)}\r\n"
            f"{H_REQUEST_ID}: {inv.request_id}\r\n{H_DEADLINE}: {inv.deadline_ms}\r\n"
            f"{H_ARN}: {r.invoked_function_arn}\r\n{H_TRACE}: {r.trace_id}\r\n"
        )
        if r.client_context is not None:
            head += f"{H_CLIENT_CONTEXT}: {r.client_context}\r\n"
        if r.cognito_identity is not None:
            head += f"{H_COGNITO}: {r.cognito_identity}\r\n"
        if r.tenant_id is not None:
            head += f"{H_TENANT}: {r.tenant_id}\r\n"
        if not keep_alive:
            head += "Connection: close\r\n"
        self._write(head.encode("latin-1") + b"\r\n" + r.payload)
        if not keep_alive:
            self._close()
        elif self._buf:
            # requests pipelined behind the `next`: parsed on the next turn of the loop, never
            # from inside the environment that is handing out this invocation
            asyncio.get_running_loop().call_soon(self._advance)

    # --- streamed responses ----------------------------------------------------------------

    def _end_stream(self, req: _Request, collector: _StreamCollector) -> None:
        inv = collector.inv
        if inv.state is not State.STREAMING:
            return  # ended meanwhile (timeout): the runtime's late trailers change nothing
        error_type = req.headers.get(H_ERROR_TYPE)
        if error_type is not None:
            error_type = sanitize_error_type(error_type)
            try:
                body = base64.b64decode(req.headers.get(H_ERROR_BODY, ""), validate=True)
            except (binascii.Error, ValueError):
                body = b""
            inv.fail_stream(shape_error_body(body, None, error_type), error_type)
        else:
            inv.end_stream(collector.body())

    def _stream_cut_short(self, collector: _StreamCollector) -> None:
        inv = collector.inv
        if inv.state is State.STREAMING:
            message = "Runtime closed the response stream before it was complete"
            body = json.dumps(
                {"errorMessage": message, "errorType": "Runtime.TruncatedResponse"}
            ).encode()
            inv.fail_stream(body, "Runtime.TruncatedResponse")

    def _on_oversized(self, req: _Request, limit: int) -> None:
        """A response over the limit: the caller gets Function.ResponseSizeTooLarge at once."""
        if not req.path.startswith(PATH_INVOCATION) or not req.path.endswith("/response"):
            return
        request_id = req.path[len(PATH_INVOCATION) :].partition("/")[0]
        inv = self.env.running.get(request_id)
        if inv is None or inv.state not in (State.RUNNING, State.STREAMING):
            return
        message = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
        body = json.dumps(
            {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
        ).encode()
        inv.fail("Function.ResponseSizeTooLarge", body=body)

    # --- writing ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        close: bool = False,
        extra_headers: str = "",
    ) -> None:
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra_headers}"
        if close:
            head += "Connection: close\r\n"
        self._write(head.encode("latin-1") + b"\r\n" + body)
        if close:
            self._close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()


class _StreamCollector:
    """Passes a streamed response on to a streaming caller, or gathers it for a buffered one."""

    __slots__ = ("_chunks", "inv")

    def __init__(self, inv: Invocation) -> None:
        self.inv = inv
        self._chunks: list[bytes] = []

    def add(self, data: bytes) -> None:
        if self.inv.on_chunk is not None:
            self.inv.stream_chunk(data)
        else:
            self._chunks.append(data)

    def body(self) -> bytes:
        return b"".join(self._chunks)


class RuntimeEndpoint:
    """One environment's Runtime API server and its live connections."""

    def __init__(self, env: Environment) -> None:
        self._env = env
        self._connections: set[RuntimeApiProtocol] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def _connection(self) -> RuntimeApiProtocol:
        protocol = RuntimeApiProtocol(self._env, self._connections.discard)
        self._connections.add(protocol)
        return protocol

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._connection, host, port, reuse_address=True
            )
        except OSError:
            if port == 0:
                raise
            log.warning("Runtime API: %s:%d is in use, using a free port instead", host, port)
            self._server = await loop.create_server(self._connection, host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for protocol in list(self._connections):
            protocol.abort()  # its runtime is gone with its process group
        if self._server is not None:
            await self._server.wait_closed()


async def bind(env: Environment, host: str, port: int) -> RuntimeEndpoint:
    endpoint = RuntimeEndpoint(env)
    await endpoint.start(host, port)
    return endpoint
