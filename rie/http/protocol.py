"""A small HTTP/1.1 server protocol for the APIs an environment serves its own processes.

Owns the wire: request heads, body framing (`Content-Length`, chunked with trailers), limits checked
before anything is buffered, `Expect: 100-continue`, keep-alive and pipelining, and what happens to a
body that is refused (read and dropped, so the client can read its answer) or cut short. It knows
nothing of Lambda: requests are handed to `Route`s found in a `Router` by path.

Invariants: requests on a connection are answered one at a time, in order; a request whose head
cannot be parsed is answered 400 with a JSON body and the connection is closed; no input makes the
protocol raise into the event loop.

It serves every one of Lambda's wire protocols (the Invoke API, and each environment's Runtime,
Extensions, Telemetry and Logs APIs): each is a `Router` whose `Dialect` says how strict the parse
is and in what shape the wire's own errors (a malformed head, a timeout, a truncated body) are
rendered. It exists (rather than aiohttp's server) because aiohttp drops request trailers, which a
streamed response uses to report a late error, because its per-request objects (a task, a request,
a stream reader, a response with a header multidict, a writer) were a quarter of the emulator's
CPU per invocation, and because its import was most of the start-up: here a request costs one
parse, one dictionary lookup and one write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import select
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol, cast

from rie.model.errors import RieError, RouteNotFound, TruncatedHTTPRequest

log = logging.getLogger("rie")

HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT_S = 10.0
KEEPALIVE_TIMEOUT_S = 75.0
LINGER_S = 2.0  # how long a closing connection drops what the client still sends
DEFAULT_BODY_LIMIT = 6 * 1024 * 1024 + 100
# a refused body is read and dropped (so the client can finish sending and read the answer) up to
# this size; past it the connection is closed instead
DISCARD_LIMIT = 64 * 1024 * 1024
REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


_STATUS_LINES: dict[int, str] = {}  # "HTTP/1.1 200 OK\r\n" by status: one per answer


def status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {reason(status)}\r\n"
        if len(_STATUS_LINES) < 128:  # a function may answer with any status
            _STATUS_LINES[status] = line
    return line


def reason(status: int) -> str:
    """The reason phrase of `status` (a front answers with whatever status its function gives)."""
    phrase = REASONS.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        if len(REASONS) < 128:
            REASONS[status] = phrase
    return phrase


class BadRequest(Exception):
    """A request that cannot be parsed: answered 400 (or `status`), then the connection is
    closed."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class WireError(RieError):
    """An error of the wire itself, in the shape of the Runtime API's errors."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]
        self.error_type = error_type  # type: ignore[misc]


def _wire_error(status: int, message: str, error_type: str) -> RieError:
    return WireError(status, message, error_type)


# the header fields of a request in order, names and values as sent (values decoded as UTF-8)
RawHeaders = tuple[tuple[str, str], ...]
# what a parsed head leaves to be copied into each Request made from the same bytes
_Head = tuple[str, str, dict[str, str], bool, "int | None", str, str, RawHeaders]
# a head's header fields alone (all but its request line): lower-cased fields, length, fields as sent
_Fields = tuple[dict[str, str], "int | None", RawHeaders]


@dataclass(slots=True)
class Dialect:
    """How strict a server's parse is, and how the wire's own errors are rendered.

    The default is the Runtime API's: a runtime is a trusted local client. The Invoke API's is
    stricter, as a public HTTP server (callers are curl, SDKs and fuzzers)."""

    # renders the wire's errors: (status, message, Runtime API error type) -> the error to send
    error: Callable[[int, str, str], RieError] = _wire_error
    line_limit: int = HEAD_LIMIT  # the longest request line or header line
    max_headers: int = 1000
    need_host: bool = False  # HTTP/1.1 requests must name their Host (RFC 9112, 3.2)
    # a connection opened and silent past the head time gets 408 (rather than a quiet close)
    greet_with_408: bool = False
    # a client that half-closes while its request is being answered still gets the answer
    # (the Runtime API lets go of a parked `next` instead: its runtime is gone)
    answer_half_closed: bool = False
    # requests keep their header fields as sent too (`Request.raw`): repeated fields apart, names
    # in their case (what an HTTP front passes on to its function)
    raw_headers: bool = False
    # heads parsed already, by their bytes: a runtime's `next` is the same every time, and so
    # is a client's request in a loop (bounded: emptied when full)
    heads: dict[bytes, _Head] = field(default_factory=dict)
    # the same for the header fields alone, for heads whose request line changes every time (the
    # runtime's `response` names its request id; a front's path its parameters): only the request
    # line is parsed then
    fields: dict[bytes, _Fields] = field(default_factory=dict)


RUNTIME_DIALECT = Dialect()
HEAD_CACHE_SIZE = 256
HEAD_CACHE_BYTES = 2048  # longer heads carry per-request values (signatures, dates): not kept
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# a control character other than a tab, or a CR or LF that is not part of a CRLF line end
_BAD_BYTE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")
_HEX = re.compile(r"[0-9A-Fa-f]{1,15}")
_names: dict[str, str] = {}  # header names seen (checked): their lower-case form


class BodySink(Protocol):
    """Where a request body goes when it is passed on as it arrives instead of being kept."""

    @property
    def limit(self) -> int:
        """The most bytes the body may have (may change while it arrives)."""
        ...

    def add(self, data: bytes) -> None: ...

    def cut_short(self) -> None:
        """The connection ended before the body was complete."""
        ...


@dataclass(slots=True)
class Request:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-case names; trailers are added here when they arrive
    keep_alive: bool
    length: int | None  # None: chunked
    version: str = "HTTP/1.1"
    query: str = ""  # after the `?`, undecoded
    raw: RawHeaders = ()  # with Dialect.raw_headers: the header fields in order, as sent
    limit: int = DEFAULT_BODY_LIMIT  # a route may change it in `check`
    body: bytearray = field(default_factory=bytearray)
    received: int = 0
    sink: BodySink | None = None  # set by a route in `check`: the body is passed on, not kept
    discard: bool = False  # already answered (refused): the rest of the body is read and dropped
    route: Route | None = None
    context: object = None  # whatever the route keeps between `check` and `handle`


class Route(Protocol):
    """The application side of one path (or path prefix).

    `check` runs when the head has arrived, before any of the body is read: it validates the
    method, ids and state, may raise `req.limit` or set `req.sink`, and returns the error to refuse
    the request with (the body is then dropped), or None. `handle` runs once the body is complete
    and must answer, with `conn.send(...)` now or later after `conn.park(...)`. `too_large` gives
    the error for a body over `req.limit` (it may also act on it, e.g. fail an invocation).
    """

    def check(self, conn: Connection, req: Request) -> RieError | None: ...

    def handle(self, conn: Connection, req: Request) -> None: ...

    def too_large(self, req: Request, limit: int) -> RieError: ...


class Router:
    """Routes by exact path, then by the longest registered prefix."""

    __slots__ = ("_default", "_exact", "_prefixes", "dialect")

    def __init__(self, dialect: Dialect = RUNTIME_DIALECT) -> None:
        self._exact: dict[str, Route] = {}
        self._prefixes: list[tuple[str, Route]] = []
        self._default: Route | None = None
        self.dialect = dialect

    def set_default(self, route: Route) -> None:
        """`route` serves every request no other route does (else: 404 Not Found)."""
        self._default = route

    def add(self, path: str, route: Route) -> None:
        """`route` serves exactly `path`."""
        self._exact[path] = route

    def add_prefix(self, prefix: str, route: Route) -> None:
        """`route` serves every path starting with `prefix` (the longest prefix wins)."""
        self._prefixes.append((prefix, route))
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)

    def find(self, path: str) -> Route | None:
        route = self._exact.get(path)
        if route is not None:
            return route
        for prefix, candidate in self._prefixes:
            if path.startswith(prefix):
                return candidate
        return self._default


def parse_head(head: bytes, dialect: Dialect = RUNTIME_DIALECT) -> Request:
    heads = dialect.heads
    known = heads.get(head)
    if known is not None:
        method, path, headers, keep_alive, length, version, query, raw = known
        return Request(method, path, headers.copy(), keep_alive, length, version, query, raw)
    line_end = head.find(b"\r\n")
    if line_end < 0 or len(head) > HEAD_CACHE_BYTES:
        return _parse_head(head, dialect)
    block = head[line_end:]
    fields = dialect.fields.get(block)
    if fields is not None:
        # these header fields passed a whole parse in this dialect: only the line is new
        return _with_fields(head[:line_end], fields, dialect)
    req = _parse_head(head, dialect)
    if len(dialect.fields) >= HEAD_CACHE_SIZE:
        dialect.fields.clear()
    dialect.fields[block] = (req.headers.copy(), req.length, req.raw)
    if len(heads) >= HEAD_CACHE_SIZE:
        heads.clear()
    heads[head] = (
        req.method,
        req.path,
        req.headers.copy(),
        req.keep_alive,
        req.length,
        req.version,
        req.query,
        req.raw,
    )
    return req


def _request_line(request_line: str, dialect: Dialect) -> tuple[str, str, str]:
    """Method, target and version of a request line, or the BadRequest it deserves."""
    line_limit = dialect.line_limit
    if len(request_line) > line_limit:
        raise BadRequest(f"the request line is over {line_limit} bytes", 431)
    try:
        method, target, version = request_line.split(" ")
    except ValueError:
        raise BadRequest("malformed request line") from None
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        raise BadRequest("unsupported HTTP version")
    if not target or _TOKEN.fullmatch(method) is None:
        raise BadRequest("malformed request line")
    return method, target, version


def _with_fields(line: bytes, fields: _Fields, dialect: Dialect) -> Request:
    """A request from its request line and header fields parsed before: the checks and the
    outcome of `_parse_head`, in its order, for what the line alone decides."""
    request_line = line.decode("latin-1")
    if _BAD_BYTE.search(request_line) is not None:
        raise BadRequest("a control character in the request head")
    method, target, version = _request_line(request_line, dialect)
    known, length, raw = fields
    headers = known.copy()
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        keep_alive = "close" not in connection
        if dialect.need_host and "host" not in headers:
            raise BadRequest("no Host header")
    else:
        keep_alive = "keep-alive" in connection
    path, _, query = target.partition("?")
    return Request(method, path, headers, keep_alive, length, version, query, raw)


def _parse_head(head: bytes, dialect: Dialect) -> Request:
    text = head.decode("latin-1")
    if _BAD_BYTE.search(text) is not None:
        raise BadRequest("a control character in the request head")
    request_line, *header_lines = text.split("\r\n")
    if len(header_lines) > dialect.max_headers:
        raise BadRequest(f"more than {dialect.max_headers} header fields", 431)
    method, target, version = _request_line(request_line, dialect)
    line_limit = dialect.line_limit
    headers: dict[str, str] = {}
    names = _names
    raw: list[tuple[str, str]] | None = [] if dialect.raw_headers else None
    for line in header_lines:
        name, sep, value = line.partition(":")
        key = names.get(name)
        if key is None:
            if not sep or _TOKEN.fullmatch(name) is None:
                raise BadRequest("malformed header line")
            key = name.lower()
            if len(names) < 512:  # a bounded cache: a client inventing names pays the check
                names[name] = key
        if len(line) > line_limit:
            raise BadRequest(f"a header line is over {line_limit} bytes", 431)
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if raw is not None:
            if not value.isascii():
                value = value.encode("latin-1").decode("utf-8", "replace")
            raw.append((name, value))
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        keep_alive = "close" not in connection
        if dialect.need_host and "host" not in headers:
            raise BadRequest("no Host header")
    else:
        keep_alive = "keep-alive" in connection
    length: int | None = 0
    declared = headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        # `+5`, `-1`, `²` (a digit to str.isdigit, not to int) and duplicates (`5, 5`) alike
        raise BadRequest("invalid Content-Length")
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if declared is not None:
            # two framings: whichever a proxy in front believed, the other would smuggle
            raise BadRequest("Content-Length together with Transfer-Encoding")
        if encoding.lower() != "chunked":
            raise BadRequest("unsupported Transfer-Encoding")
        length = None
    elif declared is not None:
        length = int(declared)
    path, _, query = target.partition("?")
    return Request(
        method, path, headers, keep_alive, length, version, query, () if raw is None else tuple(raw)
    )


def error_body(message: str, error_type: str = "BadRequest") -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


class Connection(asyncio.Protocol):
    """One client connection: parses requests one at a time and answers them in order."""

    def __init__(self, router: Router, on_lost: Callable[[Connection], None]) -> None:
        self._router = router
        self._exact = router._exact
        self._dialect = router.dialect
        self._streaming = False  # a chunked answer has begun (see begin_stream)
        self._poller: select.poll | None = None  # see peer_closed
        # told when the client reads slower than it is written to (True) and has caught up
        # (False): a streamed answer holds its producer back with it
        self.on_backlog: Callable[[bool], None] | None = None
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._req: Request | None = None  # the request whose body is being read
        self._chunk_left = -1  # chunked bodies: bytes left in this chunk; -1 a size line is next
        self._in_trailers = False
        self._parked: Request | None = None  # a request whose answer will come later
        self._on_gone: Callable[[], None] | None = None
        self._eof = False
        self._closing = False
        self._requests = 0  # heads parsed so far: the sweep tells a new wait from an old one
        self._quiet: tuple[int, bool, float] | None = None  # (requests, head begun, since)
        self.context: object = None  # whatever a route keeps for the life of the connection

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # answered and closing: dropped (see _close)
        self._buf += data
        self._advance()

    def pause_writing(self) -> None:
        if self.on_backlog is not None:
            self.on_backlog(True)

    def resume_writing(self) -> None:
        if self.on_backlog is not None:
            self.on_backlog(False)

    def eof_received(self) -> bool:
        self._eof = True
        if self._closing:
            return False  # the client is done too: close now
        if self._parked is not None:
            if self._dialect.answer_half_closed:
                return True  # answered, then closed (see send)
            # a client that hangs up while its request waits for an answer is gone (a closed
            # socket and a half-closed one look alike from here): it must not be answered
            self._unpark_gone()
            return False
        self._advance()
        # keep the write half open while a request body is being read (to answer a truncation)
        return self._req is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(self)
        self._transport = None
        self._closing = True
        self._unpark_gone()
        req, self._req = self._req, None
        if req is not None and req.sink is not None:
            req.sink.cut_short()

    # --- for routes ------------------------------------------------------------------------

    def extra_info(self, name: str) -> object:
        """The transport's `name` (`peername`, `sockname`...), None once it is gone."""
        transport = self._transport
        return None if transport is None else transport.get_extra_info(name)

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._closing

    def hold(self, hold: bool) -> None:
        """Stop reading this connection (True) or read it again (False): a body's sink whose
        consumer is behind holds its producer back through the socket."""
        transport = self._transport
        if transport is None or self._closing:
            return
        if hold:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def park(self, req: Request, on_gone: Callable[[], None]) -> None:
        """Answer `req` later (a long poll): nothing more is read from this connection until
        `send`; `on_gone` runs instead if the client hangs up first."""
        self._parked = req
        self._on_gone = on_gone

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str | None = "application/json",
        close: bool = False,
        headers: str = "",
        encoding: str = "latin-1",
        head_only: bool = False,
    ) -> None:
        """Answer the current (or parked) request; `headers` holds more `Name: value\\r\\n` lines
        (and the Content-Type line when `content_type` is None). `encoding` is the head's (a
        front passes its function's UTF-8 header values on as UTF-8); `head_only` leaves the body
        out but says its length (the answer to a HEAD).

        The answer is rendered before anything changes: if it cannot be (a header value that is
        not Latin-1 raises UnicodeEncodeError), the connection is as it was and may still be
        answered."""
        parked = self._parked
        if parked is not None and not parked.keep_alive:
            close = True
        # content_type None: the Content-Type line is among `headers`
        ct = "" if content_type is None else f"Content-Type: {content_type}\r\n"
        # a 204 has no body, and says nothing of its length (RFC 9110, 8.6)
        length = "" if status == 204 else f"Content-Length: {len(body)}\r\n"
        line = _STATUS_LINES.get(status) or status_line(status)
        head = f"{line}{ct}{length}{headers}"
        if close:
            head += "Connection: close\r\n"
        if head_only:
            self._write(head.encode(encoding) + b"\r\n")
        elif len(body) < 65536:
            self._write(head.encode(encoding) + b"\r\n" + body)  # one write, one segment
        else:
            self._write(head.encode(encoding) + b"\r\n", body)  # no copy of a large body
        if parked is not None:
            self._parked = self._on_gone = None
            self._after_parked(close)
        elif close:
            self._close()

    def _after_parked(self, close: bool) -> None:
        if close:
            self._close()
        elif self._buf:
            # requests pipelined behind the parked one: parsed on the next turn of the loop,
            # never from inside whatever is answering the parked request
            asyncio.get_running_loop().call_soon(self._advance)
        elif self._eof:
            self._close()  # the client half-closed: this was its last answer

    def begin_stream(self, status: int, headers: str, encoding: str = "latin-1") -> None:
        """Start a chunked answer to the parked request (`headers` and `encoding` as in `send`,
        the Content-Type line included); `write_chunk` and `end_stream` follow."""
        close = "" if self._parked is None or self._parked.keep_alive else "Connection: close\r\n"
        head = (f"{status_line(status)}{headers}Transfer-Encoding: chunked\r\n{close}\r\n").encode(
            encoding
        )  # rendered first: if it cannot be, nothing has begun
        self._streaming = True
        self._write(head)

    def write_chunk(self, data: bytes) -> None:
        if data:
            self._write(b"%x\r\n" % len(data), data, b"\r\n")

    def end_stream(self) -> None:
        """End the chunked answer begun by `begin_stream`."""
        self._write(b"0\r\n\r\n")
        self._streaming = False
        self.on_backlog = None
        parked = self._parked
        self._parked = self._on_gone = None
        self._after_parked(parked is None or not parked.keep_alive)

    def send_error(self, req: Request, error: RieError, close: bool = False) -> None:
        self.send_rendered(error, close or not req.keep_alive)

    def send_rendered(self, error: RieError, close: bool) -> None:
        """Answer the current (or parked) request with `error`, its headers included."""
        headers = error.headers()
        extra = "".join(
            f"{name}: {value}\r\n" for name, value in headers.items() if name != "Content-Type"
        )
        content_type = headers.get("Content-Type", "application/json")
        self.send(error.status, error.body(), content_type, close=close, headers=extra)

    def _wire_error(self, status: int, message: str, error_type: str) -> None:
        """An error of the wire itself (in the router's shape); the connection then closes."""
        self.send_rendered(self._dialect.error(status, message, error_type), close=True)

    def peer_closed(self) -> bool:
        """Whether the client has hung up, even if the loop has not read its end of input yet
        (one poll of the socket): a long poll about to be answered with what cannot be given
        twice (an invocation) asks first, as the hang-up and the answer may cross."""
        transport = self._transport
        if self._eof or self._closing or transport is None:
            return True
        poller = self._poller
        if poller is None:
            sock = transport.get_extra_info("socket")
            if sock is None:
                return False
            poller = self._poller = select.poll()
            poller.register(sock.fileno(), select.POLLRDHUP)
        return bool(poller.poll(0))

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close_when_sent(self) -> None:
        """Close once what was written is sent (the server is shutting down)."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    # --- parsing ---------------------------------------------------------------------------

    def _unpark_gone(self) -> None:
        on_gone = self._on_gone
        self._parked = self._on_gone = None
        if on_gone is not None:
            on_gone()

    def _advance(self) -> None:
        """Parse as far as the buffer allows, answering each complete request in turn."""
        try:
            while not self._closing and self._parked is None:
                if self._req is None:
                    end = self._buf.find(b"\r\n\r\n", 0, HEAD_LIMIT + 4)
                    if end < 0:
                        if len(self._buf) > HEAD_LIMIT:
                            message = "Request header too large"
                            self._wire_error(431, message, "BadRequest")
                        elif self._eof:
                            if self._buf.strip():
                                raise BadRequest("incomplete request head")
                            self._close()
                        return
                    head = bytes(self._buf[:end])
                    del self._buf[: end + 4]
                    if not self._begin(parse_head(head, self._dialect)):
                        continue
                if not self._read_body():
                    return
        except BadRequest as exc:
            self._unpark_gone()
            self._wire_error(exc.status, f"Malformed HTTP request: {exc}", "BadRequest")
        except Exception:
            # never into the event loop ("Fatal error on transport"), never unanswered
            log.exception("unexpected failure parsing a request")
            self._unpark_gone()
            self._internal_error()

    def _begin(self, req: Request) -> bool:
        """Route and check a request from its head; False when the connection had to be closed."""
        self._requests += 1
        route = self._exact.get(req.path)  # Router.find, inlined: once per request
        if route is None:
            route = self._router.find(req.path)
        req.route = route
        error: RieError | None
        if route is None:
            error = self._dialect.error(
                404, RouteNotFound.default_message, RouteNotFound.error_type
            )
        else:
            error = route.check(self, req)
            # a sink may hold the body to less than the request's own limit (a stream going to
            # a buffered caller): a declared length over either is refused before any of it
            # is read, and without a `100 Continue` first
            limit = req.limit if req.sink is None else min(req.limit, req.sink.limit)
            if error is None and req.length is not None and req.length > limit:
                error = route.too_large(req, limit)
        if error is not None:
            self._refuse(req, error)
            if self._closing:
                return False
        elif (
            req.length != 0
            and req.version == "HTTP/1.1"
            and req.headers.get("expect", "").lower() == "100-continue"
        ):
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._req = req
        self._chunk_left, self._in_trailers = -1, False
        return True

    def _refuse(self, req: Request, error: RieError) -> None:
        """Answer before the body is read; drop the body as it comes, or close if it is huge."""
        # a chunked body is dropped as it comes, up to the limit (see _take); one whose client
        # waits for `100 Continue` will not come at all: the connection closes instead
        close = (
            not req.keep_alive
            or (req.length is not None and req.length > DISCARD_LIMIT)
            or (req.received == 0 and req.headers.get("expect", "").lower() == "100-continue")
        )
        req.discard = True
        req.sink = None
        self.send_rendered(error, close)

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
            route = req.route
            assert route is not None
            try:
                route.handle(self, req)
            except RieError as error:
                self.send_error(req, error)
            except Exception:
                self._failed(req)
        return True

    def _failed(self, req: Request) -> None:
        """A route raised something unexpected: 500 (a container error), and the connection
        closes."""
        log.exception("unexpected failure answering %s %s", req.method, req.path)
        self._unpark_gone()
        self._internal_error()

    def _internal_error(self) -> None:
        if self._streaming:
            self.abort()  # an answer has begun: nothing else can be said on this connection
            return
        self._wire_error(500, "Internal Server Error", "InternalServerError")

    def _read_chunked(self, req: Request) -> bool:
        buf = self._buf
        while not self._closing:
            if self._in_trailers:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > HEAD_LIMIT:
                        raise BadRequest("trailers too large")
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
                        raise BadRequest("malformed chunk size")
                    return False
                size_text = bytes(buf[:end]).split(b";", 1)[0].decode("latin-1")
                del buf[: end + 2]
                if _HEX.fullmatch(size_text) is None:  # int() would take `0x1`, `+1`, `1_0`
                    raise BadRequest("malformed chunk size")
                size = int(size_text, 16)
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
                if self._closing:
                    return False
                if buf[self._chunk_left : self._chunk_left + 2] != b"\r\n":
                    raise BadRequest("malformed chunk")
                del buf[: self._chunk_left + 2]
                self._chunk_left = -1
        return False

    def _take(self, req: Request, data: bytes) -> None:
        req.received += len(data)
        if req.discard:
            if req.received > DISCARD_LIMIT:
                self._close()
            return
        sink = req.sink
        limit = req.limit if sink is None else sink.limit
        if req.received > limit:
            assert req.route is not None
            self._refuse(req, req.route.too_large(req, limit))
            return
        if sink is not None:
            sink.add(data)
        else:
            req.body += data

    def _truncated(self, req: Request) -> None:
        self._req = None
        if req.sink is not None:
            req.sink.cut_short()
        if req.discard:
            self._close()  # it was answered already
        else:
            message = TruncatedHTTPRequest.default_message
            self._wire_error(400, message, TruncatedHTTPRequest.error_type)

    # --- time limits -----------------------------------------------------------------------

    def sweep(self, now: float, head_timeout_s: float, keepalive_timeout_s: float) -> None:
        """Called about every `Server.tick` seconds: close a connection whose request head is
        overdue (408) or that has been idle between requests for too long (closed quietly).

        A request being answered (a parked long poll: a runtime waiting in `next`) or whose body
        is arriving is never cut. Time is measured from the first sweep that saw the wait, so a
        limit is kept to within two ticks, and the hot path pays for none of this."""
        if self._parked is not None or self._req is not None or self._closing:
            self._quiet = None
            return
        begun = bool(self._buf)
        quiet = self._quiet
        if quiet is None or quiet[0] != self._requests or quiet[1] != begun:
            self._quiet = (self._requests, begun, now)
            return
        waited = now - quiet[2]
        if begun:
            if waited >= head_timeout_s:
                message = f"Request head not received within {head_timeout_s:g} seconds"
                self._wire_error(408, message, "RequestTimeout")
        elif self._requests == 0:
            if waited >= head_timeout_s:
                if self._dialect.greet_with_408:
                    message = f"Request head not received within {head_timeout_s:g} seconds"
                    self._wire_error(408, message, "RequestTimeout")
                else:
                    self._close()  # opened, never spoke
        elif waited >= keepalive_timeout_s:
            log.debug("closing a keep-alive connection idle for %.1f s", waited)
            self._close()

    # --- writing ---------------------------------------------------------------------------

    def _write(self, *data: bytes) -> None:
        # nothing after the last answer: its write half may be shut already (see _close)
        transport = self._transport
        if not self._closing and transport is not None and not transport.is_closing():
            if len(data) == 1:
                transport.write(data[0])
            else:
                transport.writelines(data)

    def _close(self) -> None:
        """Close after the last answer. The write half goes first and what the client still
        sends is read and dropped for a moment: closing a socket with unread input sends a
        reset, which can destroy the answer before the client has read it."""
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._eof or not transport.can_write_eof():
            transport.close()
            return
        self._buf.clear()
        transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_S, transport.close)


class Server:
    """One listening socket serving a router, and its live connections.

    A request head must arrive within `head_timeout_s` of the connection opening or of its
    first byte; a connection idle between requests is closed after `keepalive_timeout_s`."""

    def __init__(
        self,
        router: Router,
        head_timeout_s: float = HEAD_TIMEOUT_S,
        keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
    ) -> None:
        self.router = router
        self.head_timeout_s = head_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        # one timer per server rather than one per request
        self.tick = min(1.0, max(0.05, min(head_timeout_s, keepalive_timeout_s) / 4))
        self._connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.sweeps = 0
        self.host = ""
        self.port = 0

    def _connection(self) -> Connection:
        conn = Connection(self.router, self._connections.discard)
        self._connections.add(conn)
        return conn

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self._connections):
            conn.sweep(now, self.head_timeout_s, self.keepalive_timeout_s)
        self.sweeps += 1
        self._sweeper = loop.call_later(self.tick, self._sweep)

    async def start(self, host: str, port: int, fallback: bool = True) -> None:
        """Listen on host:port; with `fallback`, on a free port if that one is taken."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._connection, host, port, reuse_address=True
            )
        except OSError:
            if port == 0 or not fallback:
                raise
            log.warning("%s:%d is in use, using a free port instead", host, port)
            self._server = await loop.create_server(self._connection, host, 0)
        name = self._server.sockets[0].getsockname()
        self.host, self.port = str(name[0]), int(name[1])
        self._sweeper = loop.call_later(self.tick, self._sweep)

    def stop_listening(self) -> None:
        """Accept no new connection; those open go on."""
        if self._server is not None:
            self._server.close()

    async def shutdown(self, within_s: float) -> None:
        """Close every connection once what was written to it is sent (within `within_s`;
        then they are cut), and stop listening."""
        self.stop_listening()
        for conn in list(self._connections):
            conn.close_when_sent()
        deadline = asyncio.get_running_loop().time() + within_s
        while self._connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await self.close()

    @property
    def address(self) -> str:
        """host:port as bound, as a URL authority (an IPv6 host in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()
